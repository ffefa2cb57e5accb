"""Reference models in plain torch, for the demo, tests and benchmarks.

Besides the demo CNN, one small network per architecture family: ResNet (and ResNet-50's
architecture), VGG, MobileNetV2, DenseNet, ConvNeXt, ViT, Swin, EfficientNet, ShuffleNetV2,
Inception and RegNet. :data:`REFERENCE_BLOCKS` builds each family's small network by name.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from greedy_compress.demo.models.convnext import ConvNeXtBlock, TinyConvNeXt
from greedy_compress.demo.models.densenet import DenseBlock, TinyDenseNet
from greedy_compress.demo.models.digits_cnn import DigitsCNN
from greedy_compress.demo.models.efficientnet import MBConv, TinyEfficientNet
from greedy_compress.demo.models.inception import InceptionBlock, TinyInception
from greedy_compress.demo.models.mobilenet import InvertedResidual, TinyMobileNetV2
from greedy_compress.demo.models.regnet import RegNetBlock, TinyRegNet
from greedy_compress.demo.models.resnet import BasicBlock, Bottleneck, ResNet, TinyResNet, resnet50
from greedy_compress.demo.models.shufflenet import ShuffleUnit, TinyShuffleNet
from greedy_compress.demo.models.swin import SwinBlock, TinySwin, WindowAttention
from greedy_compress.demo.models.vgg import TinyVGG
from greedy_compress.demo.models.vit import EncoderBlock, SelfAttention, TinyViT

__all__ = [
    "REFERENCE_BLOCKS",
    "BasicBlock",
    "Bottleneck",
    "ConvNeXtBlock",
    "DenseBlock",
    "DigitsCNN",
    "EncoderBlock",
    "InceptionBlock",
    "InvertedResidual",
    "MBConv",
    "RegNetBlock",
    "ResNet",
    "SelfAttention",
    "ShuffleUnit",
    "SwinBlock",
    "TinyConvNeXt",
    "TinyDenseNet",
    "TinyEfficientNet",
    "TinyInception",
    "TinyMobileNetV2",
    "TinyRegNet",
    "TinyResNet",
    "TinyShuffleNet",
    "TinySwin",
    "TinyVGG",
    "TinyViT",
    "WindowAttention",
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
}
"""Each reference block in a small network on (batch, 1, 16, 16) inputs, by name.

Example:
    >>> sorted(REFERENCE_BLOCKS)[:3]
    ['convnext', 'densenet', 'inception']
"""
