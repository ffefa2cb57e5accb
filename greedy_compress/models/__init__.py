"""Reference models in plain torch, for the demo, tests and benchmarks."""

from __future__ import annotations

from greedy_compress.models.digits_cnn import DigitsCNN
from greedy_compress.models.resnet import BasicBlock, TinyResNet

__all__ = ["BasicBlock", "DigitsCNN", "TinyResNet"]
