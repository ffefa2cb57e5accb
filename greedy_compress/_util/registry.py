"""A name -> class registry, shared by schemes, solvers, quantizers and pruners."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

from greedy_compress._util.constraints import bad_parameter

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes of one kind (``base``) by their ``name`` attribute.

    Example:
        >>> from greedy_compress.schemes import Scheme, WeightSVD
        >>> schemes = Registry("scheme", Scheme)
        >>> _ = schemes.register(WeightSVD)
        >>> schemes.names(), schemes.get("weight_svd", owner="compress").name
        (['weight_svd'], 'weight_svd')
    """

    def __init__(self, kind: str, base: type) -> None:
        # ``base`` is usually abstract, which ``type[T]`` would not accept.
        self.kind = kind
        self.base = base
        self._classes: dict[str, type[T]] = {}

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def register(self, cls: type[T]) -> type[T]:
        """Add ``cls`` under ``cls.name``; usable as a decorator."""
        self._classes[cls.name] = cls  # type: ignore[attr-defined]
        return cls

    def cls(self, name: str) -> type[T] | None:
        """The class registered as ``name``, or None."""
        return self._classes.get(name)

    def get_class(self, value: Any, owner: str) -> type[T]:
        """The class registered as ``value``; an unknown name is one clear error."""
        if not isinstance(value, str) or value not in self._classes:
            allowed = "one of " + ", ".join(repr(n) for n in self.names())
            raise bad_parameter(self.kind, owner, allowed, value)
        return self._classes[value]

    def get(self, value: Any, owner: str) -> T:
        """An instance for a registered name, or ``value`` itself if already an instance."""
        if isinstance(value, self.base):
            return cast(T, value)
        return self.get_class(value, owner)()
