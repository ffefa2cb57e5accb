"""Tiny ResNet-, VGG-, MobileNetV2- and DenseNet-style models for the pruning tests, with
randomised BatchNorm statistics so that BatchNorm slicing errors would show."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from greedy_compress.demo.models import TinyDenseNet, TinyMobileNetV2, TinyResNet, TinyVGG

INPUT_SHAPE = (4, 1, 16, 16)


def _randomise_norms(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


FACTORIES = {
    "resnet": lambda: TinyResNet(in_channels=1, width=4, blocks=1),
    "vgg": lambda: TinyVGG(in_channels=1, widths=(4, 8), image_size=16, hidden=16),
    "mobilenet_v2": lambda: TinyMobileNetV2(
        in_channels=1, width=4, blocks=((4, 1), (8, 2), (8, 1)), expand=2, last=16
    ),
    "densenet": lambda: TinyDenseNet(in_channels=1, stem=4, growth=4, layers=2),
}


def make_model(key: str) -> nn.Module:
    """A freshly seeded model of family ``key``, in eval mode."""
    torch.manual_seed(0)
    return _randomise_norms(FACTORIES[key]())


def make_inputs(count: int = 4, seed: int = 1) -> torch.Tensor:
    """Seeded random inputs of the test models' shape."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((count, *INPUT_SHAPE[1:]), generator=generator)


@pytest.fixture(autouse=False)
def single_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waiting on a shared, loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
