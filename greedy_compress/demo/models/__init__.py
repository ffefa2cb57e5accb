"""Reference models in plain torch, for the demo, tests and benchmarks."""

from __future__ import annotations

from greedy_compress.demo.models.densenet import DenseBlock, TinyDenseNet
from greedy_compress.demo.models.digits_cnn import DigitsCNN
from greedy_compress.demo.models.mobilenet import InvertedResidual, TinyMobileNetV2
from greedy_compress.demo.models.resnet import BasicBlock, TinyResNet
from greedy_compress.demo.models.vgg import TinyVGG

__all__ = [
    "BasicBlock",
    "DenseBlock",
    "DigitsCNN",
    "InvertedResidual",
    "TinyDenseNet",
    "TinyMobileNetV2",
    "TinyResNet",
    "TinyVGG",
]
