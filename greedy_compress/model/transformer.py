"""Traceable stand-ins for torch's transformer modules, sharing their weights.

``nn.TransformerEncoderLayer`` and ``nn.TransformerEncoder`` branch on tensor properties for
their fused fast paths, so ``torch.fx`` keeps them whole and sees nothing inside. These
classes compute the same regular path in plain torch, with the same child names
(``self_attn`` becoming an :class:`~greedy_compress.model.attention.Attention`), so the
channel graph can look inside and name what it prunes as the original model does. They are
never put into a user's model: the graph works on a view made of them
(:mod:`greedy_compress.graph.unpack`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from greedy_compress.model.attention import Attention

__all__ = ["Encoder", "EncoderLayer", "traceable_equivalent"]


class EncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer``'s regular path (post- or pre-norm), traceable."""

    linear1: nn.Module
    linear2: nn.Module
    norm1: nn.Module
    norm2: nn.Module
    dropout: nn.Module
    dropout1: nn.Module
    dropout2: nn.Module
    activation_function: Callable[[torch.Tensor], torch.Tensor]

    def __init__(self, layer: nn.TransformerEncoderLayer) -> None:
        super().__init__()
        for name, child in layer.named_children():
            setattr(self, name, child)
        self.self_attn = Attention.from_multihead(layer.self_attn)
        self.norm_first = layer.norm_first
        if not isinstance(layer.activation, nn.Module):
            self.activation_function = layer.activation

    def _activation(self, x: torch.Tensor) -> torch.Tensor:
        if "activation" in self._modules:
            return self._modules["activation"](x)  # type: ignore[misc]
        return self.activation_function(x)

    def _sa_block(self, x: Any, mask: Any, padding: Any, is_causal: bool) -> torch.Tensor:
        x = self.self_attn(
            x,
            x,
            x,
            attn_mask=mask,
            key_padding_mask=padding,
            need_weights=False,
            is_causal=is_causal,
        )[0]
        return self.dropout1(x)

    def _ff_block(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout2(self.linear2(self.dropout(self._activation(self.linear1(x)))))

    def forward(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))


class Encoder(nn.Module):
    """``nn.TransformerEncoder``: its layers in turn, then its norm (no nested tensors)."""

    def __init__(self, encoder: nn.TransformerEncoder) -> None:
        super().__init__()
        self.layers = nn.ModuleList(traceable_equivalent(layer) for layer in encoder.layers)
        self.norm = encoder.norm

    def forward(
        self,
        src: torch.Tensor,
        mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool | None = None,
    ) -> torch.Tensor:
        output = src
        for layer in self.layers:
            output = layer(
                output,
                src_mask=mask,
                src_key_padding_mask=src_key_padding_mask,
                is_causal=bool(is_causal),
            )
        return self.norm(output) if self.norm is not None else output


def traceable_equivalent(module: nn.Module) -> nn.Module:
    """The traceable stand-in of a torch attention or transformer module (sharing its
    weights), or ``module`` itself when it has none or cannot have one.

    Example:
        >>> type(traceable_equivalent(nn.MultiheadAttention(8, 2))).__name__
        'Attention'
        >>> type(traceable_equivalent(nn.Linear(2, 2))).__name__
        'Linear'
    """
    try:
        if isinstance(module, nn.MultiheadAttention):
            return Attention.from_multihead(module)
        if isinstance(module, nn.TransformerEncoderLayer):
            return EncoderLayer(module).train(module.training)
        if isinstance(module, nn.TransformerEncoder):
            return Encoder(module).train(module.training)
    except ValueError:  # an option the stand-ins do not implement: keep it whole
        return module
    return module
