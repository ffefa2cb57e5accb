"""NNI config lists: selection by type and name, override order, exclusion, clear errors."""

from __future__ import annotations

import pytest
from torch import nn

from greedy_compress._util.constraints import Interval, Options
from greedy_compress.errors import InvalidParameterError
from greedy_compress.model.config_list import ConfigSpec, resolve_config_list

SPEC = ConfigSpec(
    owner="TestPruner",
    default_types=("Conv2d", "Linear"),
    supported_types=("Conv1d", "Conv2d", "Linear"),
    keys={"sparsity": Interval(float, 0, 1, closed="left"), "mode": Options(("a", "b"))},
    required=("sparsity",),
    defaults={"mode": "a"},
)


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),  # 0
        nn.ReLU(),  # 1
        nn.Conv2d(4, 4, 3),  # 2
        nn.Flatten(),  # 3
        nn.Linear(16, 10),  # 4
        nn.Conv1d(2, 2, 1),  # 5 (not a default type)
    )


def _sparsity(config_list) -> dict[str, float]:
    return {n: c["sparsity"] for n, c in resolve_config_list(_model(), config_list, SPEC).items()}


def test_default_types_cover_only_the_algorithms_defaults():
    assert _sparsity([{"sparsity": 0.5, "op_types": ["default"]}]) == {"0": 0.5, "2": 0.5, "4": 0.5}


def test_a_later_entry_overrides_an_earlier_one_on_the_ops_both_cover():
    assert _sparsity(
        [{"sparsity": 0.5, "op_types": ["default"]}, {"sparsity": 0.9, "op_names": ["2"]}]
    ) == {"0": 0.5, "2": 0.9, "4": 0.5}


def test_an_earlier_entry_loses_to_a_later_broader_one():
    assert _sparsity(
        [{"sparsity": 0.9, "op_names": ["2"]}, {"sparsity": 0.5, "op_types": ["Conv2d"]}]
    ) == {"0": 0.5, "2": 0.5}


def test_settings_are_replaced_not_merged():
    resolved = resolve_config_list(
        _model(),
        [
            {"sparsity": 0.5, "mode": "b", "op_types": ["Linear"]},
            {"sparsity": 0.7, "op_names": ["4"]},
        ],
        SPEC,
    )
    assert resolved == {"4": {"sparsity": 0.7, "mode": "a"}}


def test_exclude_removes_ops_and_a_later_entry_can_bring_them_back():
    excluded = [{"sparsity": 0.5, "op_types": ["default"]}, {"exclude": True, "op_names": ["0"]}]
    assert _sparsity(excluded) == {"2": 0.5, "4": 0.5}
    assert _sparsity([*excluded, {"sparsity": 0.3, "op_names": ["0"]}]) == {
        "0": 0.3,
        "2": 0.5,
        "4": 0.5,
    }


def test_op_types_and_op_names_together_must_both_match():
    assert _sparsity([{"sparsity": 0.5, "op_types": ["Linear"], "op_names": ["0", "4"]}]) == {
        "4": 0.5
    }


def test_a_non_default_supported_type_can_be_named():
    assert _sparsity([{"sparsity": 0.2, "op_types": ["Conv1d"]}]) == {"5": 0.2}


@pytest.mark.parametrize(
    ("config_list", "message"),
    [
        (
            [{"sparsity": 1.2, "op_types": ["default"]}],
            r"config_list\[0\]\['sparsity'\].*\[0, 1\).*1\.2",
        ),
        ([{"sparsity": 0.5, "op_types": ["Conv3d"]}], r"op types it handles.*Got 'Conv3d'"),
        ([{"sparsity": 0.5, "op_names": ["conv9"]}], r"names of modules of the model.*'conv9'"),
        ([{"sparsity": 0.5, "op_names": ["1"]}], r"types it handles.*1 \(ReLU\)"),
        ([{"sparsity": 0.5}], r"an entry with 'op_types' or 'op_names'"),
        ([{"op_types": ["default"]}], r"an entry with 'sparsity'"),
        ([{"sparsity": 0.5, "op_types": ["default"], "bits": 3}], r"keys among.*key 'bits'"),
        ([{"sparsity": 0.5, "op_types": ["default"], "exclude": 1}], r"'exclude'.*True or False"),
        ([{"sparsity": 0.5, "op_types": []}], r"non-empty list"),
        ([], r"non-empty list of dicts"),
        ({"sparsity": 0.5}, r"a list of dicts"),
        (["Conv2d"], r"config_list\[0\].*a dict"),
    ],
)
def test_bad_config_lists_are_refused_with_one_clear_error(config_list, message):
    with pytest.raises(InvalidParameterError, match=message):
        resolve_config_list(_model(), config_list, SPEC)
