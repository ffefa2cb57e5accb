"""The channel graph through token layouts and attention: what it ties, splits, carries and
rewrites, and that pruned attention computes exactly what the original computes with the
removed heads or neurons zeroed (planted truth)."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import fx, nn

from greedy_compress import apply_selection, count_macs, manual_selection
from greedy_compress.demo.models import REFERENCE_BLOCKS, TinyViT
from greedy_compress.graph import build_graph, group_replacements
from greedy_compress.model.attention import Attention
from greedy_compress.model.swap import swapped
from greedy_compress.schemes import SNP, ChannelPruning, FilterPruning, HeadPruning

SHAPE = (1, 1, 16, 16)
X = torch.randn(4, *SHAPE[1:], generator=torch.Generator().manual_seed(0))
DATA = [(torch.randn(16, *SHAPE[1:], generator=torch.Generator().manual_seed(1)), None)]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _model(key: str) -> nn.Module:
    torch.manual_seed(0)
    return REFERENCE_BLOCKS[key]().eval()


def test_convnext_permute_layer_norm_linears_and_layer_scale_share_one_group():
    graph = build_graph(_model("convnext"), torch.zeros(SHAPE))
    stream = graph.output_group("features.0")
    assert stream.blocked is None
    assert {"features.1", "features.2.norm", "features.2.gamma"} <= set(stream.carriers)
    assert "features.2.pwconv1" in stream.consumers  # a Linear on (B, H, W, C)
    assert "features.2.pwconv2" in stream.producers  # tied by the residual add
    assert graph.modules["features.2.gamma"].role == "param"


def test_vit_class_token_and_position_embedding_are_pruned_with_the_tokens_features():
    model = _model("vit")
    graph = build_graph(model, torch.zeros(SHAPE))
    stream = graph.output_group("patch_embed")
    assert {"cls_token", "pos_embedding"} <= set(stream.carriers)
    assert "blocks.0.self_attention.q_proj" in stream.consumers  # inside MultiheadAttention
    new = group_replacements(model, graph, stream, list(range(0, 16, 2)))
    assert new["cls_token"].shape == (1, 1, 8) and new["pos_embedding"].shape == (1, 17, 8)
    assert isinstance(new["blocks.0.self_attention"], Attention)  # lifted in place of MHA
    with swapped(model, new), torch.no_grad():
        assert model(X).shape == (4, 10)


class _Chunks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(4, 4, 1)
        self.right = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat([self.left(a), self.right(b[:, 2:])], dim=1)


class _ChunksNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.block = _Chunks()
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.conv(x)).mean((2, 3)))


class _OwnChunks(_ChunksNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # the chunk in the model's forward
        a, b = self.conv(x).chunk(2, dim=1)
        out = torch.cat([self.block.left(a), self.block.right(b[:, 2:])], dim=1)
        return self.head(out.mean((2, 3)))


def test_chunks_and_slices_split_a_group_into_pieces_each_pruned_by_its_reader():
    model = _ChunksNet().eval()
    example = torch.zeros(1, 1, 8, 8)
    graph = build_graph(model, example)
    left, right = graph.input_group("block.left"), graph.input_group("block.right")
    assert left.id != right.id and left.size == 4 and right.size == 2
    assert [s.group for s in graph.modules["conv"].outputs][::2] == [left.id, right.id]
    scheme = ChannelPruning(data=[torch.randn(8, 1, 8, 8)], num_reconstruction_samples=8)
    selection = manual_selection(
        model,
        {"block.left": 0.5, "block.right": 0.5},
        scheme=scheme,
        example_input=example,
        ratio_of="rank",
    )
    small = apply_selection(model, selection, scheme=scheme, example_input=example)
    # conv keeps 2 + 2 unread + 1: the chunk became a split by [2, 3], the slice [:, 2:]
    assert small.conv.out_channels == 5 and small.block.left.in_channels == 2
    assert small.block.right.in_channels == 1
    assert "split" in small.block.code
    assert count_macs(small, example) / count_macs(model, example) == pytest.approx(
        selection.predicted_ratio
    )
    reasons = FilterPruning().group_for(graph, "conv")[1]
    assert "split into 3 parts" in reasons


def test_a_chunk_in_the_models_own_forward_is_refused_with_the_reason():
    scheme = ChannelPruning(data=[torch.randn(8, 1, 8, 8)], num_reconstruction_samples=8)
    scheme.prepare(_OwnChunks().eval(), example_input=torch.zeros(1, 1, 8, 8))
    skipped = scheme.skipped_layers()
    assert "splits the channels into [4, 4]" in skipped["block.left"]
    assert "model's own forward" in skipped["block.left"]
    assert "model's own forward cannot be rewritten" in skipped["block.right"]


def test_channel_shuffle_is_refused_with_the_reason():
    scheme = FilterPruning()
    model = _model("shufflenet")
    scheme.prepare(model, example_input=torch.zeros(SHAPE))
    assert "channel shuffle" in scheme.skipped_layers()["units.0.right.5"]
    assert "units.0.right.0" in scheme.prunable_layers()  # inside the branch: prunable


def test_swin_fused_qkv_is_split_into_query_key_and_value_and_its_bias_table_follows_heads():
    graph = build_graph(_model("swin"), torch.zeros(SHAPE))
    outputs = [s.group for s in graph.modules["stages.0.attn.qkv"].outputs]
    assert len(outputs) == 3 and outputs[0] == outputs[1] != outputs[2]  # q and k tied
    query_key, value = graph.groups[outputs[0]], graph.groups[outputs[2]]
    assert query_key.parts == value.parts == 2 and query_key.part_group == value.part_group
    heads = graph.groups[query_key.part_group]
    assert "stages.0.attn.relative_position_bias_table" in heads.carriers
    assert graph.stacked_with(query_key.id) == [value.id]  # (B, N, 3, heads, head_dim)
    assert "split into 3 parts" in FilterPruning().group_for(graph, "stages.0.attn.qkv")[1]
    reason = ChannelPruning(data=DATA).group_for(graph, "stages.0.attn.proj")[1]
    assert "fused qkv" in reason and "snp" in reason


class _OwnReshape(nn.Module):
    """A reshape to constant sizes in the model's own forward: it cannot be rewritten."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.o = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = self.q(x).view(x.shape[0], x.shape[1], 2, 4)
        return self.o(heads.reshape(x.shape[0], x.shape[1], 8))


def test_constant_sizes_are_rewritten_in_a_module_and_refused_in_the_models_own_forward():
    scheme = FilterPruning()
    scheme.prepare(_OwnReshape(), example_input=torch.zeros(2, 5, 8))
    assert "cannot be rewritten" in scheme.skipped_layers()["q"]
    model = _model("vit_hand")  # view(B, N, self.num_heads, self.head_dim), reshape(B, N, C)
    selection = manual_selection(
        model,
        {"blocks.0.self_attention.q": 0.5, "blocks.0.self_attention.v": 0.5},
        scheme="filter_pruning_l2",
        input_shape=SHAPE,
        ratio_of="rank",
    )
    small = apply_selection(model, selection)
    attention = small.blocks[0].self_attention
    assert isinstance(attention, fx.GraphModule) and attention.q.out_features == 8
    assert "scale = 0.35355" in attention.code  # SDPA keeps the original 1/sqrt(head_dim)
    with torch.inference_mode():
        assert small(X).shape == (4, 10)


def _zero_rows(linear: nn.Linear, rows: list[int]) -> None:
    with torch.no_grad():
        linear.weight[rows] = 0
        if linear.bias is not None:
            linear.bias[rows] = 0


def _masked_vit(model: nn.Module, block: int, removed_qk: list[int], removed_v: list[int]):
    """The original with query/key pairs and value neurons zeroed (k rows, v rows)."""
    masked = copy.deepcopy(model)
    attention = masked.blocks[block].self_attention
    if isinstance(attention, nn.MultiheadAttention):
        embed = attention.embed_dim
        with torch.no_grad():
            for offset, rows in ((embed, removed_qk), (2 * embed, removed_v)):
                index = [offset + r for r in rows]
                attention.in_proj_weight[index] = 0
                attention.in_proj_bias[index] = 0
    else:
        _zero_rows(attention.k, removed_qk)
        _zero_rows(attention.v, removed_v)
    return masked


@pytest.mark.parametrize("attention", ["torch", "hand"])
def test_head_pruning_computes_the_original_with_those_heads_silenced(attention):
    model = TinyViT(in_channels=1, num_heads=4, attention=attention).eval()
    scheme = HeadPruning()
    selection = manual_selection(
        model, {"blocks.0.self_attention": 0.5}, scheme=scheme, input_shape=SHAPE, ratio_of="rank"
    )
    small = apply_selection(model, selection)
    scheme.prepare(model, example_input=torch.zeros(SHAPE))
    order = scheme.factorize_in(model, "blocks.0.self_attention").order
    gone = sorted(order[2:])  # 4 heads of 4 channels, 2 kept
    channels = [h * 4 + j for h in gone for j in range(4)]
    masked = _masked_vit(model, 0, [], channels)  # a silenced head adds nothing to o's input
    with torch.no_grad():
        torch.testing.assert_close(small(X), masked(X), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(small(X), model(X), atol=1e-4)  # the test can fail
    if attention == "torch":
        assert small.blocks[0].self_attention.num_heads == 2
    else:  # the hand-written module's own code, with its new head count
        code = small.blocks[0].self_attention.code
        assert re.search(r"\.view\(\(?getitem, getitem_1, 2, 4\)", code)


@pytest.mark.parametrize("attention", ["torch", "hand"])
def test_snp_computes_the_original_with_those_neurons_zeroed(attention):
    model = TinyViT(in_channels=1, num_heads=2, attention=attention).eval()
    scheme = SNP(data=DATA)
    selection = manual_selection(
        model, {"blocks.1.self_attention": 0.5}, scheme=scheme, input_shape=SHAPE, ratio_of="rank"
    )
    small = apply_selection(model, selection, scheme=scheme)
    new = small.blocks[1].self_attention
    kept_qk = _kept(new, "k_proj" if attention == "torch" else "k")
    kept_v = _kept(new, "v_proj" if attention == "torch" else "v")
    assert len(kept_qk) == len(kept_v) == 8  # 4 of 8 per head, in both heads
    assert sorted(c // 8 for c in kept_qk) == [0] * 4 + [1] * 4  # head boundaries respected
    masked = _masked_vit(
        model,
        1,
        [c for c in range(16) if c not in kept_qk],
        [c for c in range(16) if c not in kept_v],
    )
    with torch.no_grad():
        torch.testing.assert_close(small(X), masked(X), atol=1e-5, rtol=1e-5)


def _kept(attention: nn.Module, name: str) -> list[int]:
    from greedy_compress.graph import ORIGINAL_OUTPUTS

    return list(getattr(getattr(attention, name), ORIGINAL_OUTPUTS))


def test_snp_keeps_the_query_key_pairs_that_carry_the_attention_scores():
    torch.manual_seed(0)
    model = TinyViT(in_channels=1, num_heads=2, attention="hand").eval()
    attention = model.blocks[0].self_attention
    strong = [1, 6, 9, 14]  # two per head
    with torch.no_grad():
        for linear in (attention.q, attention.k):
            linear.weight.mul_(0.01)
            linear.weight[strong] *= 300.0
    scheme = SNP(data=DATA)
    selection = manual_selection(
        model, {"blocks.0.self_attention": 0.25}, scheme=scheme, input_shape=SHAPE, ratio_of="rank"
    )
    small = apply_selection(model, selection, scheme=scheme)
    assert _kept(small.blocks[0].self_attention, "q") == strong


def test_grouped_convs_keep_the_same_channels_per_group():
    model = _model("regnet")
    selection = manual_selection(
        model,
        {"blocks.1.body.0": 0.5},
        scheme="filter_pruning_l2",
        input_shape=SHAPE,
        ratio_of="rank",
    )
    small = apply_selection(model, selection)
    grouped = small.blocks[1].body[3]
    assert (grouped.in_channels, grouped.out_channels, grouped.groups) == (8, 16, 4)


class _SqueezeUnit(nn.Module):
    """Linear features of width 1 dropped by a reshape: they cannot be followed."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.out = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, 4)
        return self.out(self.fc(x).reshape(x.shape[0], 3))


def test_size_one_dims_of_a_reshape_move_nothing_but_a_dropped_channel_dim_is_refused():
    from greedy_compress.graph.dependency import Segment
    from greedy_compress.graph.values import Value, reshaped

    # MaxViT's grid partition of a 2x2 map: (B, C, 2, 1, 2, 1) -> permute -> (B, 4, 1, C)
    moved = reshaped(Value.along((Segment(0, 8),), 5), (2, 2, 2, 1, 1, 8), (2, 4, 1, 8))
    assert isinstance(moved, Value) and moved.dims == (3,)
    assert reshaped(Value.along((Segment(0, 1),), 2), (2, 3, 1), (2, 3)) == (
        "drops a channel dimension of size 1"
    )
    graph = build_graph(_SqueezeUnit(), torch.zeros(2, 3, 4))
    assert "drops a channel dimension of size 1" in graph.output_group("fc").blocked
