"""The channel-dependency graph on real architectures, and what it refuses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from greedy_compress import build_eval_scores
from greedy_compress.errors import GraphTraceError
from greedy_compress.graph import Segment, build_graph
from tests.pruning_models import make_inputs, make_model, single_thread

pytestmark = pytest.mark.usefixtures(single_thread.__name__)


def test_resnet_residual_adds_tie_the_producers_of_each_stage():
    graph = build_graph(make_model("resnet"), make_inputs(1))
    stage = graph.output_group("layer2.0.conv2")
    assert stage.producers == ["layer2.0.conv2", "layer2.0.downsample.0"]
    assert stage.carriers == ["layer2.0.bn2", "layer2.0.downsample.1"]
    assert stage.consumers == ["layer3.0.conv1", "layer3.0.downsample.0"]
    assert stage.blocked is None
    # the identity shortcut ties the stem to the first block's second conv
    assert graph.output_group("stem.0") is graph.output_group("layer1.0.conv2")
    assert graph.output_group("fc").blocked == "the model's output"


def test_vgg_flatten_makes_each_channel_a_block_of_linear_features():
    graph = build_graph(make_model("vgg"), make_inputs(1))
    last = graph.output_group("features.10")
    assert last.consumers == ["classifier.1"]
    assert graph.modules["classifier.1"].inputs == (Segment(last.id, 8, 16),)  # 4x4 map


def test_mobilenet_depthwise_convs_carry_the_expansion_channels():
    graph = build_graph(make_model("mobilenet_v2"), make_inputs(1))
    expand = graph.output_group("features.3.block.0")
    assert "features.3.block.3" in expand.carriers  # depthwise
    assert expand.consumers == ["features.3.block.6"]
    assert graph.modules["features.3.block.3"].role == "depthwise"


def test_densenet_concatenation_lays_groups_side_by_side():
    graph = build_graph(make_model("densenet"), make_inputs(1))
    inputs = graph.modules["block1.1.conv"].inputs
    stem, first = graph.output_group("stem"), graph.output_group("block1.0.conv")
    assert [(s.group, s.size) for s in inputs] == [(stem.id, 4), (first.id, 4)]
    assert "block1.1.norm" in stem.carriers and "block1.1.norm" in first.carriers
    assert set(first.consumers) == {"block1.1.conv", "transition.2"}


class _MixesChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cumsum(self.conv(x), dim=1))


def test_operations_the_graph_does_not_model_block_their_channels_with_the_reason():
    graph = build_graph(_MixesChannels(), torch.zeros(1, 1, 6, 6))
    reason = graph.output_group("conv").blocked
    assert reason is not None and "cumsum" in reason


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.twice = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.twice(self.twice(self.conv(x)))


def test_a_module_called_twice_is_left_alone():
    graph = build_graph(_Shared(), torch.zeros(1, 1, 6, 6))
    assert graph.block_reason("twice") == "called more than once per forward pass"
    assert graph.output_group("conv") is None or graph.output_group("conv").blocked


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = _Branchy()
        self.head = nn.Linear(4 * 36, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if out.sum() > 0:  # data-dependent control flow: fx cannot trace this
            return out
        return -out


def test_untraceable_model_error_names_the_module_and_svd_still_works():
    model = _DataDependent().eval()
    with pytest.raises(GraphTraceError, match=r"module 'body' \(_Branchy\)"):
        build_graph(model, torch.zeros(1, 1, 8, 8))
    torch.manual_seed(0)
    inputs = torch.randn(4, 1, 8, 8)

    def evaluator(net: nn.Module) -> float:
        with torch.no_grad():
            return -float(net(inputs).abs().mean())

    scores = build_eval_scores(
        model,
        evaluator,
        scheme="weight_svd",
        candidates=[0.5],
        example_input=inputs[:1],
        progress=False,
    )
    assert set(scores.layers) == {"body.conv", "head"}


def test_grouped_convs_split_their_channels_into_equal_parts_paired_across_the_conv():
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 6, 3, groups=2), nn.Conv2d(6, 4, 1))
    graph = build_graph(net, torch.zeros(1, 1, 8, 8))
    before, after = graph.output_group("0"), graph.output_group("1")
    assert (before.blocked, before.parts, after.parts) == (None, 2, 2)
    assert before.part_group == after.part_group  # conv group g reads part g, writes part g
    assert graph.modules["1"].groups == 2


class _Reduces(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 if dim != 1 else 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=self.dim).flatten(1))


def test_reductions_carry_channels_only_over_spatial_dims():
    spatial = build_graph(_Reduces((2, 3)), torch.zeros(4, 1, 4, 4))
    assert spatial.output_group("conv").blocked is None
    assert spatial.output_group("conv").consumers == ["head"]
    # a mean over the 4 channels of a 4x4x4 map keeps shape (4, 4, ...) but mixes channels
    channels = build_graph(_Reduces(1), torch.zeros(4, 1, 4, 4))
    assert channels.output_group("conv").blocked is not None
