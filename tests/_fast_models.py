"""Small models of the main architecture families, for the suffix-only evaluation tests.

Each has BatchNorm (with non-trivial running statistics) and in-place activations, the
things that could make cached activations differ from a whole-model forward.
"""

from __future__ import annotations

import torch
from torch import nn

from greedy_compress.demo.models import TinyMobileNetV2, TinyResNet, TinyVGG


def _conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
    return [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]


class TorchvisionBlock(nn.Module):
    """torchvision's BasicBlock: the shortcut is computed after the main branch (so it is
    cut between them), added with ``+=``, and one ReLU module is called twice."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, c_out, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv_bn(c_out, c_out)
        self.downsample = nn.Sequential(*_conv_bn(c_in, c_out, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.downsample(x)
        out += identity  # fx records this as an out-of-place add
        return self.relu(out)


class TorchvisionStyle(nn.Module):
    """Two torchvision-style blocks and a linear head."""

    def __init__(self, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.layer1 = TorchvisionBlock(1, width, 1)
        self.layer2 = TorchvisionBlock(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class BranchNet(nn.Module):
    """A branch computed before the compressed conv is added to *in place* after it
    (``a.add_(b)``), so the value cut before ``conv1`` is written by a suffix op unless the
    fast path protects it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.conv0, self.bn0 = _conv_bn(8, 8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        a = self.bn0(self.conv0(x))
        b = self.conv1(x)
        return self.head(self.relu(a.add_(b)).flatten(1))


class DataDependent(nn.Module):
    """Python control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if x.sum() > 0:
            x = x * 2
        return self.head(x.flatten(1))


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


MODELS = {
    "resnet": lambda: TinyResNet(in_channels=1, width=4, blocks=1),
    # flatten into a two-layer head, in-place ReLUs, dropout
    "vgg": lambda: TinyVGG(in_channels=1, widths=(8, 16), image_size=8, hidden=32),
    # depthwise convs, inverted residual adds, ReLU6(inplace)
    "mobilenet": lambda: TinyMobileNetV2(
        in_channels=1, width=8, blocks=((8, 1), (16, 2), (16, 1)), expand=2, last=16
    ),
    "torchvision": TorchvisionStyle,
    "branch": BranchNet,
}


def make_model(kind: str, seed: int = 0) -> nn.Module:
    """A seeded model of ``kind`` (a key of :data:`MODELS`) in eval mode."""
    torch.manual_seed(seed)
    return randomize_batchnorm(MODELS[kind](), seed)


def make_data(n: int = 48, batch_size: int = 16, seed: int = 0):
    """A fixed loader of random 1x8x8 images and labels, as a list of batches."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return [
        (images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, n, batch_size)
    ]
