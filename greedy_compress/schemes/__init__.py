"""Compression schemes. Adding one: write a module with a :class:`Scheme` subclass and add one
``_SCHEMES.register`` line below (or call :func:`register_scheme` from your own code)."""

from __future__ import annotations

from greedy_compress._registry import Registry
from greedy_compress.schemes._base import Candidate, Factorization, Scheme
from greedy_compress.schemes.channel_pruning import ChannelPruning
from greedy_compress.schemes.filter_pruning import (
    FilterPruning,
    IndexPruning,
    filter_pruning_scheme,
)
from greedy_compress.schemes.spatial_svd import SpatialSVD, spatial_svd
from greedy_compress.schemes.weight_svd import WeightSVD, weight_svd

__all__ = [
    "Candidate",
    "ChannelPruning",
    "Factorization",
    "FilterPruning",
    "IndexPruning",
    "Scheme",
    "SpatialSVD",
    "WeightSVD",
    "available_schemes",
    "get_scheme",
    "register_scheme",
    "spatial_svd",
    "weight_svd",
]

_SCHEMES: Registry[Scheme] = Registry("scheme", Scheme)
_SCHEMES.register(WeightSVD)
_SCHEMES.register(SpatialSVD)
_SCHEMES.register(ChannelPruning)
_SCHEMES.register(FilterPruning)  # filter_pruning_l2
_SCHEMES.register(filter_pruning_scheme("gm"))
_SCHEMES.register(filter_pruning_scheme("nuclear"))
_SCHEMES.register(IndexPruning)

register_scheme = _SCHEMES.register
available_schemes = _SCHEMES.names


def get_scheme(scheme: str | Scheme, owner: str = "get_scheme") -> Scheme:
    """Return a scheme instance from its name (or the instance itself).

    Example:
        >>> get_scheme("spatial_svd").name
        'spatial_svd'
    """
    return _SCHEMES.get(scheme, owner)
