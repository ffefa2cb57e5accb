"""Compression schemes. Adding one: write a module with a :class:`Scheme` subclass and add one
``_SCHEMES.register`` line below (or call :func:`register_scheme` from your own code)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from greedy_compress._util.registry import Registry
from greedy_compress.schemes._base import Candidate, Factorization, Scheme
from greedy_compress.schemes._data_aware import DataAwareScheme
from greedy_compress.schemes.build import build_compressed
from greedy_compress.schemes.channel_pruning import ChannelPruning
from greedy_compress.schemes.cp import CP, cp_decompose
from greedy_compress.schemes.filter_pruning import (
    FilterPruning,
    IndexPruning,
    filter_pruning_scheme,
)
from greedy_compress.schemes.head_pruning import HeadPruning
from greedy_compress.schemes.quantize import CompressThenQuantize, Quantize, composite_parts
from greedy_compress.schemes.snp import SNP
from greedy_compress.schemes.sparsity import UnstructuredSparsity
from greedy_compress.schemes.spatial_svd import SpatialSVD, spatial_svd
from greedy_compress.schemes.tucker import Tucker2, tucker2
from greedy_compress.schemes.weight_svd import WeightSVD, weight_svd

__all__ = [
    "CP",
    "SNP",
    "Candidate",
    "ChannelPruning",
    "CompressThenQuantize",
    "DataAwareScheme",
    "Factorization",
    "FilterPruning",
    "HeadPruning",
    "IndexPruning",
    "Quantize",
    "Scheme",
    "SpatialSVD",
    "Tucker2",
    "UnstructuredSparsity",
    "WeightSVD",
    "available_schemes",
    "build_compressed",
    "cp_decompose",
    "get_scheme",
    "register_scheme",
    "scheme_class",
    "scheme_with_data",
    "spatial_svd",
    "tucker2",
    "weight_svd",
]

_SCHEMES: Registry[Scheme] = Registry("scheme", Scheme)
_SCHEMES.register(WeightSVD)
_SCHEMES.register(SpatialSVD)
_SCHEMES.register(Tucker2)
_SCHEMES.register(CP)
_SCHEMES.register(ChannelPruning)
_SCHEMES.register(FilterPruning)  # filter_pruning_l2
_SCHEMES.register(filter_pruning_scheme("gm"))
_SCHEMES.register(filter_pruning_scheme("nuclear"))
_SCHEMES.register(IndexPruning)
_SCHEMES.register(HeadPruning)
_SCHEMES.register(SNP)
_SCHEMES.register(Quantize)
_SCHEMES.register(UnstructuredSparsity)

register_scheme = _SCHEMES.register
available_schemes = _SCHEMES.names


def scheme_with_data(
    scheme: str | Scheme, data: Iterable[Any] | None, owner: str = "scheme_with_data"
) -> Scheme:
    """The scheme ``scheme`` names (or the instance), given ``data`` if it samples data and
    has none yet (channel pruning, the nuclear-norm criterion); see :meth:`Scheme.with_data`.

    Example:
        >>> scheme_with_data("channel_pruning", [torch.zeros(2, 1, 8, 8)]).data is not None
        True
        >>> scheme_with_data("weight_svd", [torch.zeros(2, 1, 8, 8)]).name
        'weight_svd'
    """
    return get_scheme(scheme, owner).with_data(data)


def scheme_class(name: str) -> type[Scheme] | None:
    """The registered scheme class called ``name``, or None.

    Example:
        >>> [scheme_class(n).costs_interact for n in ("channel_pruning", "weight_svd")]
        [True, False]
    """
    return _SCHEMES.cls(name)


def get_scheme(scheme: str | Scheme, owner: str = "get_scheme") -> Scheme:
    """Return a scheme instance from its name (or the instance itself).

    A name ``"<scheme>+w<bits>"`` (e.g. ``"weight_svd+w4"``) is the scheme followed by
    weight quantization (:class:`CompressThenQuantize`).

    Example:
        >>> get_scheme("spatial_svd").name, get_scheme("tucker+w4").name
        ('spatial_svd', 'tucker+w4')
    """
    parts = composite_parts(scheme) if isinstance(scheme, str) else None
    if parts is not None and parts[0] in _SCHEMES.names():
        return CompressThenQuantize(_SCHEMES.get(parts[0], owner), bits=parts[1])
    return _SCHEMES.get(scheme, owner)
