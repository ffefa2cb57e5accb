"""MACs of attention, counted on every path torch takes: hand counts of a ViT encoder block
(``nn.MultiheadAttention``, fused kernel in eval mode), the same block written by hand (SDPA),
``nn.TransformerEncoderLayer`` and a Swin-style windowed-attention block, in train and eval
mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from greedy_compress.demo.models import EncoderBlock, SwinBlock
from greedy_compress.model.attention_flops import ATTENTION_FLOPS
from greedy_compress.model.cost import count_macs

BATCH, TOKENS, DIM, HEADS, MLP = 2, 10, 16, 4, 24


def _train_mode_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of the unfused (train-mode) forward, with the same counter."""
    module.train()
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=ATTENTION_FLOPS) as c:
        module(*inputs)
    module.eval()
    return c.get_total_flops() // 2


def _vit_block_by_hand(batch: int, tokens: int, dim: int, mlp: int) -> int:
    projections = batch * tokens * (3 * dim * dim + dim * dim)  # in_proj (q, k, v) and out_proj
    attention = 2 * batch * tokens * tokens * dim  # Q K^T and P V over all heads
    return projections + attention + batch * tokens * 2 * dim * mlp


@pytest.mark.parametrize("attention", ["torch", "hand"])
def test_vit_block_macs_match_the_hand_count_in_train_and_eval_mode(attention):
    torch.manual_seed(0)
    block = EncoderBlock(DIM, HEADS, MLP, attention=attention).eval()
    x = torch.randn(BATCH, TOKENS, DIM)
    expected = _vit_block_by_hand(BATCH, TOKENS, DIM, MLP)
    assert count_macs(block, x) == expected  # eval: fused kernel for nn.MultiheadAttention
    assert _train_mode_macs(block, x) == expected


def test_without_the_attention_formulas_the_fused_kernel_counts_nothing():
    # The guard: torch's own counter misses nn.MultiheadAttention's eval-mode kernel.
    block = EncoderBlock(DIM, HEADS, MLP).eval()
    x = torch.randn(BATCH, TOKENS, DIM)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        block(x)
    assert counter.get_total_flops() // 2 == BATCH * TOKENS * 2 * DIM * MLP  # the MLP only


def test_encoder_layer_fused_kernel_matches_the_hand_count():
    layer = nn.TransformerEncoderLayer(DIM, HEADS, MLP, dropout=0.0, batch_first=True).eval()
    x = torch.randn(BATCH, TOKENS, DIM)
    expected = _vit_block_by_hand(BATCH, TOKENS, DIM, MLP)
    assert count_macs(layer, x) == expected
    assert _train_mode_macs(layer, x) == expected


def test_cross_attention_counts_query_and_key_lengths_apart():
    mha = nn.MultiheadAttention(DIM, HEADS, batch_first=True).eval()
    query, memory = torch.randn(BATCH, TOKENS, DIM), torch.randn(BATCH, 7, DIM)
    expected = BATCH * (TOKENS * 2 * DIM * DIM + 7 * 2 * DIM * DIM + 2 * TOKENS * 7 * DIM)
    assert count_macs(mha, query, memory, memory) == expected
    assert _train_mode_macs(mha, query, memory, memory) == expected


@pytest.mark.parametrize("shift", [0, 2])
def test_windowed_attention_block_macs_match_the_hand_count(shift):
    torch.manual_seed(0)
    resolution, window, dim, heads = 8, 4, 8, 2
    block = SwinBlock(dim, heads, resolution, window, shift=shift).eval()
    x = torch.randn(BATCH, resolution, resolution, dim)
    tokens = BATCH * resolution * resolution
    windows, per_window = BATCH * (resolution // window) ** 2, window * window
    projections = tokens * (3 * dim * dim + dim * dim)  # qkv and proj
    attention = 2 * windows * per_window * per_window * dim  # within each window only
    mlp = tokens * 2 * dim * (2 * dim)
    expected = projections + attention + mlp
    assert count_macs(block, x) == expected
    assert _train_mode_macs(block, x) == expected


def test_sdpa_with_more_query_heads_than_key_heads():
    q, kv = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 6, 8)
    module = _Sdpa()
    assert count_macs(module, q, kv, kv) == 4 * 5 * 6 * (8 + 8)


class _Sdpa(nn.Module):
    def forward(self, q, k, v):
        return nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
