"""The 21 architecture families at ImageNet size (3x224x224 inputs, 1000 classes, random
weights), built from the reference blocks: :data:`FAMILIES` maps each family to a
constructor of its usual member (ResNet-18 and -50, ResNeXt-50 32x4d, Wide-ResNet-50-2,
VGG-11-BN, AlexNet, SqueezeNet 1.0, DenseNet-121, GoogLeNet, Inception-v3, MobileNetV2,
MobileNetV3-Large, MNASNet 1.0, ShuffleNetV2 x1.0, EfficientNet-B0, RegNetX/Y-400MF,
ConvNeXt-T, ViT-B/16, Swin-T, MaxViT-T). Parameter counts equal torchvision's, except
GoogLeNet (5x5 convs in its third branch as in the paper, where torchvision has 3x3)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from greedy_compress.demo.models.classic import alexnet, squeezenet1_0, vgg11_bn
from greedy_compress.demo.models.convnext import TinyConvNeXt
from greedy_compress.demo.models.densenet import DenseBlock
from greedy_compress.demo.models.googlenet import GOOGLENET, GoogLeNet, InceptionV3
from greedy_compress.demo.models.layers import conv_bn
from greedy_compress.demo.models.maxvit import maxvit_t
from greedy_compress.demo.models.mobile import (
    efficientnet_b0,
    mnasnet1_0,
    mobilenet_v2,
    mobilenet_v3_large,
)
from greedy_compress.demo.models.regnet import TinyRegNet
from greedy_compress.demo.models.resnet import resnet18, resnet50, resnext50_32x4d, wide_resnet50_2
from greedy_compress.demo.models.shufflenet import ShuffleUnit
from greedy_compress.demo.models.swin import TinySwin
from greedy_compress.demo.models.vit import TinyViT

__all__ = [
    "FAMILIES",
    "convnext_tiny",
    "densenet121",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "shufflenet_v2_x1_0",
    "swin_t",
    "vit_b_16",
]


class _Pooled(nn.Sequential):
    """A feature extractor, a global average and a Linear (the plain CNN heads)."""

    def __init__(self, features: list[nn.Module], channels: int, num_classes: int) -> None:
        super().__init__(
            *features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
        )


def densenet121(num_classes: int = 1000) -> nn.Module:
    """DenseNet-121 (growth 32, bottlenecks of 128, blocks of 6, 12, 24 and 16 layers).

    Example:
        >>> sum(p.numel() for p in densenet121().parameters())
        7978856
    """
    layers: list[nn.Module] = [*conv_bn(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    channels = 64
    for index, count in enumerate((6, 12, 24, 16)):
        layers.append(DenseBlock(channels, 32, count, bottleneck=128))
        channels += 32 * count
        if index < 3:
            layers += [nn.BatchNorm2d(channels), nn.ReLU()]
            layers += [nn.Conv2d(channels, channels // 2, 1, bias=False), nn.AvgPool2d(2)]
            channels //= 2
    return _Pooled([*layers, nn.BatchNorm2d(channels), nn.ReLU()], channels, num_classes)


def shufflenet_v2_x1_0(num_classes: int = 1000) -> nn.Module:
    """ShuffleNetV2 x1.0 (stages of 4, 8 and 4 units, 116 / 232 / 464 channels).

    Example:
        >>> sum(p.numel() for p in shufflenet_v2_x1_0().parameters())
        2278604
    """
    layers: list[nn.Module] = [*conv_bn(3, 24, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    channels = 24
    for width, count in ((116, 4), (232, 8), (464, 4)):
        layers += [
            ShuffleUnit(channels if i == 0 else width, width, 2 - min(i, 1)) for i in range(count)
        ]
        channels = width
    layers += [*conv_bn(channels, 1024, 1), nn.ReLU()]
    return _Pooled(layers, 1024, num_classes)


def _regnet(widths: tuple[int, ...], depths: tuple[int, ...], group: int, se: bool) -> nn.Module:
    blocks = [
        (w, 2 if i == 0 else 1) for w, d in zip(widths, depths, strict=True) for i in range(d)
    ]
    return TinyRegNet(3, 1000, 32, blocks, group_width=group, se=se, stem_stride=2)


def regnet_x_400mf() -> nn.Module:
    """RegNetX-400MF (no squeeze-excitation, group width 16).

    Example:
        >>> sum(p.numel() for p in regnet_x_400mf().parameters())
        5495976
    """
    return _regnet((32, 64, 160, 400), (1, 2, 7, 12), 16, se=False)


def regnet_y_400mf() -> nn.Module:
    """RegNetY-400MF (squeeze-excitation, group width 8).

    Example:
        >>> sum(p.numel() for p in regnet_y_400mf().parameters())
        4344144
    """
    return _regnet((48, 104, 208, 440), (1, 3, 6, 6), 8, se=True)


def convnext_tiny(num_classes: int = 1000) -> nn.Module:
    """ConvNeXt-T (28.6 M parameters, 4.5 GMACs)."""
    return TinyConvNeXt(3, num_classes, (96, 192, 384, 768), (3, 3, 9, 3), stem=4)


def vit_b_16(num_classes: int = 1000) -> nn.Module:
    """ViT-B/16 with ``nn.MultiheadAttention`` (86.6 M parameters, 17.6 GMACs)."""
    return TinyViT(3, num_classes, 224, 16, 768, 12, 12, 3072)


def swin_t(num_classes: int = 1000) -> nn.Module:
    """Swin-T (28.3 M parameters, 4.5 GMACs)."""
    return TinySwin(3, num_classes, 224, 4, 96, (2, 2, 6, 2), (3, 6, 12, 24), 7, mlp_ratio=4)


FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnext50_32x4d": resnext50_32x4d,
    "wide_resnet50_2": wide_resnet50_2,
    "vgg11_bn": vgg11_bn,
    "alexnet": alexnet,
    "squeezenet1_0": squeezenet1_0,
    "densenet121": densenet121,
    "googlenet": lambda: GoogLeNet(GOOGLENET),
    "inception_v3": InceptionV3,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_large": mobilenet_v3_large,
    "mnasnet1_0": mnasnet1_0,
    "shufflenet_v2_x1_0": shufflenet_v2_x1_0,
    "efficientnet_b0": efficientnet_b0,
    "regnet_x_400mf": regnet_x_400mf,
    "regnet_y_400mf": regnet_y_400mf,
    "convnext_tiny": convnext_tiny,
    "vit_b_16": vit_b_16,
    "swin_t": swin_t,
    "maxvit_t": maxvit_t,
}
"""Each family's ImageNet-size constructor, by torchvision's model name.

Example:
    >>> len(FAMILIES)
    21
    >>> FAMILIES["regnet_y_400mf"]()(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
"""
