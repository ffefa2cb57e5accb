"""A traceable view of a model, and the way back from it.

``torch.fx`` keeps torch's own modules whole, and ``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer`` and ``nn.TransformerEncoder`` hide everything the channel
graph needs inside (packed projections, fused kernels). :func:`unpacked` returns a *view*:
the model's module tree with those modules replaced by traceable stand-ins sharing their
weights (:func:`greedy_compress.model.transformer.traceable_equivalent`), the other modules
shared as they are, and the model itself untouched. Names in the view are the model's own,
plus the stand-ins' projections (``attn.q_proj``, ``attn.k_proj``, ``attn.v_proj``).
:func:`lift` turns modules made for the view back into modules for the model: whatever
replaces part of a stand-in attention becomes one new
:class:`~greedy_compress.model.attention.Attention` in place of the ``nn.MultiheadAttention``.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from greedy_compress.model.attention import Attention
from greedy_compress.model.swap import Replacement, replace_modules
from greedy_compress.model.transformer import traceable_equivalent

__all__ = ["attention_paths", "lift", "unpacked"]

_CONVERTED = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder)


def _copy_path(copies: dict[str, nn.Module], root: nn.Module, path: str) -> None:
    """Shallow-copy ``root`` and every module above ``path`` (once), linked together."""
    parts = path.split(".")
    for depth in range(len(parts)):
        name = ".".join(parts[:depth])
        if name in copies:
            continue
        original = root.get_submodule(name) if name else root
        copy = original.__class__.__new__(original.__class__)
        copy.__dict__ = dict(original.__dict__)
        copy._modules = dict(original._modules)
        copies[name] = copy
        if depth:
            parent = ".".join(parts[: depth - 1])
            copies[parent]._modules[parts[depth - 1]] = copy


def unpacked(model: nn.Module) -> nn.Module:
    """``model`` with torch's attention and transformer modules made traceable (a view
    sharing every weight), or ``model`` itself when it has none.

    Example:
        >>> from greedy_compress.demo.models import TinyViT
        >>> vit = TinyViT()
        >>> view = unpacked(vit)
        >>> [type(m.blocks[0].self_attention).__name__ for m in (view, vit)]
        ['Attention', 'MultiheadAttention']
        >>> view.blocks[0].ln_1 is vit.blocks[0].ln_1
        True
    """
    if isinstance(model, _CONVERTED):
        return traceable_equivalent(model)
    paths: list[str] = []
    for name, module in model.named_modules():
        if (
            isinstance(module, _CONVERTED)
            and name
            and not any(name.startswith(p + ".") for p in paths)
        ):
            paths.append(name)
    if not paths:
        return model
    copies: dict[str, nn.Module] = {}
    for path in paths:
        _copy_path(copies, model, path)
    for path in paths:
        parent, _, child = path.rpartition(".")
        copies[parent]._modules[child] = traceable_equivalent(model.get_submodule(path))
    return copies[""]


def attention_paths(model: nn.Module, view: nn.Module) -> list[str]:
    """Names of the view's stand-in attentions that replace an ``nn.MultiheadAttention``."""
    if view is model:
        return []
    return [
        name
        for name, module in view.named_modules()
        if isinstance(module, Attention)
        and isinstance(model.get_submodule(name), nn.MultiheadAttention)
    ]


def lift(
    model: nn.Module, view: nn.Module, replacements: Mapping[str, Replacement]
) -> dict[str, Replacement]:
    """Replacements made in ``view`` as replacements for ``model`` (shallowest first).

    Example:
        >>> from greedy_compress.demo.models import TinyViT
        >>> vit = TinyViT()
        >>> view = unpacked(vit)
        >>> new = lift(vit, view, {"blocks.0.self_attention.v_proj": nn.Linear(16, 8)})
        >>> list(new), new["blocks.0.self_attention"].v_proj.out_features
        (['blocks.0.self_attention'], 8)
    """
    stand_ins = attention_paths(model, view)
    grouped: dict[str, dict[str, Replacement]] = {}
    out: dict[str, Replacement] = {}
    for name, new in replacements.items():
        owner = next((p for p in stand_ins if name == p or name.startswith(p + ".")), None)
        if owner is None:
            out[name] = new
        else:
            grouped.setdefault(owner, {})[name[len(owner) + 1 :]] = new
    for owner, parts in grouped.items():
        base = parts.pop("", None)
        attention = base if isinstance(base, Attention) else view.get_submodule(owner)
        fresh = attention.materialized()  # type: ignore[operator]
        replace_modules(fresh, parts)
        out[owner] = fresh
    return dict(sorted(out.items(), key=lambda item: item[0].count(".")))
