"""Compression schemes. Adding one: write a module with a :class:`Scheme` subclass and add one
``_SCHEMES.register`` line below (or call :func:`register_scheme` from your own code)."""

from __future__ import annotations

from greedy_compress._registry import Registry
from greedy_compress.schemes._base import Candidate, Factorization, Scheme
from greedy_compress.schemes.cp import CP, cp_decompose
from greedy_compress.schemes.spatial_svd import SpatialSVD, spatial_svd
from greedy_compress.schemes.tucker import Tucker2, tucker2
from greedy_compress.schemes.weight_svd import WeightSVD, weight_svd

__all__ = [
    "CP",
    "Candidate",
    "Factorization",
    "Scheme",
    "SpatialSVD",
    "Tucker2",
    "WeightSVD",
    "available_schemes",
    "cp_decompose",
    "get_scheme",
    "register_scheme",
    "spatial_svd",
    "tucker2",
    "weight_svd",
]

_SCHEMES: Registry[Scheme] = Registry("scheme", Scheme)
_SCHEMES.register(WeightSVD)
_SCHEMES.register(SpatialSVD)
_SCHEMES.register(Tucker2)
_SCHEMES.register(CP)

register_scheme = _SCHEMES.register
available_schemes = _SCHEMES.names


def get_scheme(scheme: str | Scheme, owner: str = "get_scheme") -> Scheme:
    """Return a scheme instance from its name (or the instance itself).

    Example:
        >>> get_scheme("spatial_svd").name
        'spatial_svd'
    """
    return _SCHEMES.get(scheme, owner)
