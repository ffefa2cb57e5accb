"""The settings every dictionary-building entry point shares, declared once: their bad
values are generated from the declarations and refused by every entry point, before any
evaluation."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing

import pytest
import torch
from torch import nn

from greedy_compress import BuildSettings, InvalidParameterError, build_eval_scores, compress
from greedy_compress.demo.run import run_demo
from greedy_compress.dictionary import BuildOptions
from greedy_compress.pipeline import compress_pipeline

ENTRY_POINTS = {
    "build_eval_scores": lambda model, evaluator, **options: build_eval_scores(
        model, evaluator, **options
    ),
    "compress": lambda model, evaluator, **options: compress(
        model, evaluator, target=0.5, **options
    ),
    "compress_pipeline": lambda model, evaluator, **options: compress_pipeline(
        model, evaluator, stages=[("weight_svd", 0.8)], **options
    ),
    "run_demo": lambda model, evaluator, **options: run_demo(**options),
}

BAD_VALUES = [
    (name, value)
    for name, constraint in BuildSettings.constraints().items()
    for value in constraint.invalid()
]


def _never_called(model: nn.Module) -> float:
    raise AssertionError("the evaluator must not be called for a bad setting")


@pytest.fixture(autouse=True)
def _no_training(monkeypatch):
    """The demo must refuse a bad setting before it trains anything."""
    import greedy_compress.demo.run as demo

    monkeypatch.setattr(demo, "trained_digits_cnn", lambda **_: pytest.fail("trained"))


def test_the_declarations_cover_every_setting_with_bad_values():
    fields = {f.name for f in dataclasses.fields(BuildSettings)}
    assert set(BuildSettings.constraints()) == fields
    assert all(BuildSettings.constraints()[name].invalid() for name in fields)


def test_the_typed_keyword_options_are_the_settings():
    assert set(typing.get_type_hints(BuildOptions)) == {
        f.name for f in dataclasses.fields(BuildSettings)
    }


@pytest.mark.parametrize("owner", list(ENTRY_POINTS))
def test_every_entry_point_takes_the_settings_and_nothing_else_under_other_names(owner):
    function = {
        "build_eval_scores": build_eval_scores,
        "compress": compress,
        "compress_pipeline": compress_pipeline,
        "run_demo": run_demo,
    }[owner]
    parameters = inspect.signature(function).parameters
    assert "settings" in parameters
    assert parameters["options"].kind is inspect.Parameter.VAR_KEYWORD
    shared = {f.name for f in dataclasses.fields(BuildSettings)}
    assert not shared & set(parameters), "a shared setting copied into the signature"


@pytest.mark.parametrize("owner", list(ENTRY_POINTS))
@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=repr)
def test_every_entry_point_refuses_every_bad_setting_before_any_work(owner, name, value):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2))
    options = {name: value}
    if name not in ("example_input", "input_shape") and owner != "run_demo":
        options["input_shape"] = (1, 1, 8, 8)
    pattern = rf"The '{re.escape(name)}' parameter of {owner} must be"
    with pytest.raises(InvalidParameterError, match=pattern):
        ENTRY_POINTS[owner](model, _never_called, **options)


@pytest.mark.parametrize("owner", list(ENTRY_POINTS))
def test_an_unknown_setting_is_refused_with_the_known_ones(owner):
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(InvalidParameterError, match=r"'settings' parameter.*'cost'.*Got 'costs'"):
        ENTRY_POINTS[owner](model, _never_called, costs="mac")


def test_settings_object_and_keywords_give_the_same_dictionary(tiny_net, distance_evaluator):
    settings = BuildSettings(cost="memory", candidates=3, input_shape=(1, 1, 8, 8), progress=False)
    by_object = build_eval_scores(tiny_net, distance_evaluator, settings=settings)
    by_keywords = build_eval_scores(
        tiny_net,
        distance_evaluator,
        cost="memory",
        candidates=3,
        input_shape=(1, 1, 8, 8),
        progress=False,
    )
    assert by_object == by_keywords
    overridden = build_eval_scores(tiny_net, distance_evaluator, settings=settings, candidates=4)
    assert overridden.fingerprint["candidates"] == [0.25, 0.5, 0.75]


def test_a_bad_value_in_a_settings_object_is_refused_when_it_is_made():
    with pytest.raises(InvalidParameterError, match=r"'workers' parameter of BuildSettings"):
        BuildSettings(workers=0)
    with pytest.raises(InvalidParameterError, match=r"'settings' parameter of compress"):
        compress(nn.Linear(2, 2), _never_called, target=0.5, settings={"cost": "mac"})


def test_input_shape_zeros_are_made_like_the_model():
    model = nn.Sequential(nn.Linear(4, 2)).double()
    example = BuildSettings(input_shape=(1, 4)).example_for(model, "test")
    assert example.dtype == torch.float64
