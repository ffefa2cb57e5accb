"""NNI's ``config_list``: which layers an algorithm touches, and with which settings.

A config list is a list of entries (dicts). Each entry selects modules by ``op_types``
(class names, or ``"default"`` for the algorithm's default types) and/or ``op_names``
(fully-qualified module names; both given: a module must match both), and either carries
the algorithm's settings (``quant_bits``, ``sparsity``, ...) or ``exclude: True``. Entries
apply in order: a later entry *replaces* the settings of an earlier one on the modules both
cover (NNI's rule; settings are not merged), and an ``exclude`` entry removes its modules.

Everything is checked before any work, each problem with one clear error: an entry that is
not a dict, a key the algorithm does not know, an op type it does not handle, an op name
the model does not have (close names are suggested), a bad setting value.

Example:
    >>> from greedy_compress._util.constraints import Interval
    >>> spec = ConfigSpec(owner="LevelPruner", default_types=("Conv2d", "Linear"),
    ...                   supported_types=("Conv1d", "Conv2d", "Linear"),
    ...                   keys={"sparsity": Interval(float, 0, 1, closed="left")})
    >>> resolved = resolve_config_list(model, [
    ...     {"sparsity": 0.8, "op_types": ["default"]},
    ...     {"sparsity": 0.5, "op_names": ["features.3"]},
    ...     {"exclude": True, "op_names": ["classifier"]}], spec)
    >>> {name: config["sparsity"] for name, config in resolved.items()}
    {'features.0': 0.8, 'features.3': 0.5, 'features.7': 0.8, 'features.10': 0.8}
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from greedy_compress._util.constraints import Constraint, bad_parameter, check

__all__ = ["SELECTOR_KEYS", "ConfigList", "ConfigSpec", "resolve_config_list"]

ConfigList = Sequence[Mapping[str, Any]]
SELECTOR_KEYS = ("op_types", "op_names", "exclude")


@dataclass(frozen=True)
class ConfigSpec:
    """What one algorithm accepts in a config list.

    Attributes:
        owner: the algorithm's name, for error messages.
        default_types: the class names ``"default"`` stands for.
        supported_types: the class names it can handle (other op types are refused).
        keys: its own settings, each with its constraint.
        required: settings every non-``exclude`` entry must give.
        defaults: values of settings an entry leaves out.
        check_entry: a last check of one entry's settings (e.g. consistency between two
            keys); returns an error message or None.
    """

    owner: str
    default_types: tuple[str, ...]
    supported_types: tuple[str, ...]
    keys: Mapping[str, Constraint]
    required: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    check_entry: Callable[[dict[str, Any]], str | None] | None = None


def _strings(value: Any, where: str, owner: str, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise bad_parameter(where, owner, f"a non-empty list of {what}", value)
    if not all(isinstance(item, str) for item in value):
        raise bad_parameter(where, owner, f"a non-empty list of {what}", value)
    return list(value)


def _entry_scope(
    index: int,
    entry: Mapping[str, Any],
    modules: Mapping[str, nn.Module],
    spec: ConfigSpec,
) -> list[str]:
    """Names of the supported modules entry ``index`` selects, in model order."""
    owner = spec.owner
    types: set[str] | None = None
    names: set[str] | None = None
    if "op_types" in entry:
        where = f"config_list[{index}]['op_types']"
        types = set()
        for item in _strings(entry["op_types"], where, owner, "class names or 'default'"):
            if item == "default":
                types.update(spec.default_types)
            elif item in spec.supported_types:
                types.add(item)
            else:
                allowed = "op types it handles: " + ", ".join(
                    ["'default'", *map(repr, spec.supported_types)]
                )
                raise bad_parameter(where, owner, allowed, item)
    if "op_names" in entry:
        where = f"config_list[{index}]['op_names']"
        names = set()
        for item in _strings(entry["op_names"], where, owner, "module names"):
            module = modules.get(item)
            if module is None:
                close = difflib.get_close_matches(item, list(modules), n=3) or list(modules)[:3]
                raise bad_parameter(
                    where, owner, "names of modules of the model, e.g. " + ", ".join(close), item
                )
            if type(module).__name__ not in spec.supported_types:
                allowed = "names of modules of the types it handles (" + ", ".join(
                    spec.supported_types
                )
                raise bad_parameter(
                    where, owner, allowed + ")", f"{item} ({type(module).__name__})"
                )
            names.add(item)
    if types is None and names is None:
        raise bad_parameter(
            f"config_list[{index}]", owner, "an entry with 'op_types' or 'op_names'", dict(entry)
        )
    return [
        name
        for name, module in modules.items()
        if type(module).__name__ in spec.supported_types
        and (types is None or type(module).__name__ in types)
        and (names is None or name in names)
    ]


def _entry_settings(index: int, entry: Mapping[str, Any], spec: ConfigSpec) -> dict[str, Any]:
    owner = spec.owner
    settings = dict(spec.defaults)
    for key in spec.required:
        if key not in entry:
            raise bad_parameter(
                f"config_list[{index}]",
                owner,
                f"an entry with {key!r} (or 'exclude': True)",
                dict(entry),
            )
    for key, value in entry.items():
        if key in SELECTOR_KEYS:
            continue
        settings[key] = check(value, spec.keys[key], f"config_list[{index}][{key!r}]", owner)
    if spec.check_entry is not None:
        problem = spec.check_entry(settings)
        if problem is not None:
            raise bad_parameter(f"config_list[{index}]", owner, problem, dict(entry))
    return settings


def resolve_config_list(
    model: nn.Module, config_list: ConfigList, spec: ConfigSpec
) -> dict[str, dict[str, Any]]:
    """Each module ``config_list`` selects, in model order, with its settings.

    Raises:
        InvalidParameterError: a malformed entry, an unknown key, op type or op name, or a
            setting value the algorithm refuses; the message names the entry and the value.
    """
    owner = spec.owner
    if isinstance(config_list, (str, bytes, Mapping)) or not isinstance(config_list, Sequence):
        raise bad_parameter("config_list", owner, "a list of dicts", config_list)
    if not config_list:
        raise bad_parameter("config_list", owner, "a non-empty list of dicts", config_list)
    modules = {name: module for name, module in model.named_modules() if name}
    allowed_keys = (*SELECTOR_KEYS, *spec.keys)
    chosen: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(config_list):
        if not isinstance(entry, Mapping):
            raise bad_parameter(f"config_list[{index}]", owner, "a dict", entry)
        for key in entry:
            if key not in allowed_keys:
                raise bad_parameter(
                    f"config_list[{index}]",
                    owner,
                    "a dict with keys among " + ", ".join(map(repr, allowed_keys)),
                    f"key {key!r}",
                )
        exclude = entry.get("exclude", False)
        if not isinstance(exclude, bool):
            raise bad_parameter(f"config_list[{index}]['exclude']", owner, "True or False", exclude)
        scope = _entry_scope(index, entry, modules, spec)
        if exclude:
            for name in scope:
                chosen.pop(name, None)
            continue
        settings = _entry_settings(index, entry, spec)
        for name in scope:
            chosen[name] = dict(settings)
    return {name: chosen[name] for name in modules if name in chosen}
