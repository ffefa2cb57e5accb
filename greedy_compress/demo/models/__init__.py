"""Reference models in plain torch, for the demo, tests and benchmarks.

Besides the demo CNN, one small network per architecture family: ResNet (and ResNet-50's
architecture), VGG, MobileNetV2, DenseNet, ConvNeXt, ViT, Swin, EfficientNet, ShuffleNetV2,
Inception and RegNet; ResNeXt, Wide-ResNet, VGG-11-BN, AlexNet, SqueezeNet, GoogLeNet,
Inception-v3, MobileNetV3, MnasNet, RegNetX and MaxViT. :data:`REFERENCE_BLOCKS` builds each
family's small network by name; :data:`~greedy_compress.demo.models.families.FAMILIES` the
21 families at ImageNet size.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from greedy_compress.demo.models.classic import VGG, AlexNet, Fire, SqueezeNet
from greedy_compress.demo.models.convnext import ConvNeXtBlock, TinyConvNeXt
from greedy_compress.demo.models.densenet import DenseBlock, TinyDenseNet
from greedy_compress.demo.models.digits_cnn import DigitsCNN
from greedy_compress.demo.models.efficientnet import MBConv, TinyEfficientNet
from greedy_compress.demo.models.families import FAMILIES
from greedy_compress.demo.models.googlenet import TinyGoogLeNet, TinyInceptionV3
from greedy_compress.demo.models.inception import InceptionBlock, TinyInception
from greedy_compress.demo.models.maxvit import MaxViT, MaxViTBlock, TinyMaxViT, maxvit_t
from greedy_compress.demo.models.mobile import MBBlock, TinyMnasNet, TinyMobileNetV3
from greedy_compress.demo.models.mobilenet import InvertedResidual, TinyMobileNetV2
from greedy_compress.demo.models.regnet import RegNetBlock, TinyRegNet
from greedy_compress.demo.models.resnet import BasicBlock, Bottleneck, ResNet, TinyResNet, resnet50
from greedy_compress.demo.models.shufflenet import ShuffleUnit, TinyShuffleNet
from greedy_compress.demo.models.swin import SwinBlock, TinySwin, WindowAttention
from greedy_compress.demo.models.vgg import TinyVGG
from greedy_compress.demo.models.vit import EncoderBlock, SelfAttention, TinyViT

__all__ = [
    "FAMILIES",
    "REFERENCE_BLOCKS",
    "VGG",
    "AlexNet",
    "BasicBlock",
    "Bottleneck",
    "ConvNeXtBlock",
    "DenseBlock",
    "DigitsCNN",
    "EncoderBlock",
    "Fire",
    "InceptionBlock",
    "InvertedResidual",
    "MBBlock",
    "MBConv",
    "MaxViT",
    "MaxViTBlock",
    "RegNetBlock",
    "ResNet",
    "SelfAttention",
    "ShuffleUnit",
    "SqueezeNet",
    "SwinBlock",
    "TinyConvNeXt",
    "TinyDenseNet",
    "TinyEfficientNet",
    "TinyGoogLeNet",
    "TinyInception",
    "TinyInceptionV3",
    "TinyMaxViT",
    "TinyMnasNet",
    "TinyMobileNetV2",
    "TinyMobileNetV3",
    "TinyRegNet",
    "TinyResNet",
    "TinyShuffleNet",
    "TinySwin",
    "TinyVGG",
    "TinyViT",
    "WindowAttention",
    "maxvit_t",
    "resnet50",
]

REFERENCE_BLOCKS: dict[str, Callable[[], nn.Module]] = {
    "convnext": lambda: TinyConvNeXt(in_channels=1),
    "vit": lambda: TinyViT(in_channels=1),
    "vit_hand": lambda: TinyViT(in_channels=1, attention="hand"),
    "swin": lambda: TinySwin(in_channels=1),
    "mbconv_se": lambda: TinyEfficientNet(in_channels=1),
    "shufflenet": lambda: TinyShuffleNet(in_channels=1),
    "inception": lambda: TinyInception(in_channels=1),
    "densenet": lambda: TinyDenseNet(in_channels=1, stem=8, growth=4, layers=2),
    "regnet": lambda: TinyRegNet(in_channels=1),
    "maxvit": lambda: TinyMaxViT(in_channels=1),
    "resnext": lambda: ResNet((1, 1, 1, 1), 10, 1, width=8, groups=4, base=16),
    "wide_resnet": lambda: ResNet((1, 1, 1, 1), 10, 1, width=8, base=128),
    "vgg11_bn": lambda: VGG([8, "M", 16, "M", 16, 16, "M"], 1, 10, pool=1, hidden=16),
    "alexnet": lambda: AlexNet(1, 10, (8, 16, 16, 16, 16), (3, 3, 3, 3, 3), 1, 2, 16),
    "squeezenet": lambda: SqueezeNet(1, 10, 8, 3, [(2, 4), (2, 4), "M", (4, 8)]),
    "googlenet": lambda: TinyGoogLeNet(in_channels=1),
    "inception_v3": lambda: TinyInceptionV3(in_channels=1),
    "mobilenet_v3": lambda: TinyMobileNetV3(in_channels=1),
    "mnasnet": lambda: TinyMnasNet(in_channels=1),
    "regnet_x": lambda: TinyRegNet(in_channels=1, se=False),
}
"""Each reference block in a small network on (batch, 1, 16, 16) inputs, by name.

Example:
    >>> sorted(REFERENCE_BLOCKS)[:3]
    ['convnext', 'densenet', 'inception']
"""
