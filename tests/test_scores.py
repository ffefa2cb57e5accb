from __future__ import annotations

import dataclasses
import json

import pytest

from greedy_compress.dictionary.build import build_eval_scores
from greedy_compress.dictionary.scores import FORMAT_VERSION, EvalScores
from greedy_compress.errors import ScoresFormatError, ScoresMismatchError


@pytest.fixture
def scores(tiny_net, distance_evaluator):
    return build_eval_scores(
        tiny_net,
        distance_evaluator,
        scheme="weight_svd",
        candidates=3,
        input_shape=(1, 1, 8, 8),
        progress=False,
    )


def test_save_and_load_round_trip(scores, tmp_path):
    path = tmp_path / "s.json"
    scores.save(path)
    assert EvalScores.load(path) == scores
    data = json.loads(path.read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert set(data["fingerprint"]) == {
        "architecture",
        "weights",
        "scheme",
        "cost",
        "multiplicity",
        "candidates",
        "evaluator",
        "evaluator_data",
        "input_shape",
    }


def test_table_includes_the_baseline_at_ratio_one(scores):
    table = scores.table()
    assert list(table) == list(scores.planned)
    assert all(row[1.0] == scores.baseline for row in table.values())


def test_to_table_lists_layers_and_skips(scores):
    text = scores.to_table()
    assert "layers scored 4 of 4" in text and "skipped depthwise: grouped conv" in text


def test_check_fingerprint_names_every_differing_field(scores):
    expect = {**scores.fingerprint, "scheme": "spatial_svd", "multiplicity": 8}
    with pytest.raises(ScoresMismatchError, match=r"'scheme'.*'multiplicity'"):
        scores.check_fingerprint(expect)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"format": "other"}', "not a greedy-compress eval-score file"),
        ('{"format": "greedy-compress/eval-scores", "format_version": 99}', "format_version 99"),
        ('{"format": "greedy-compress/eval-scores", "format_version": 1}', "malformed"),
    ],
)
def test_bad_files_give_a_format_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ScoresFormatError, match=message):
        EvalScores.load(path)


def test_a_failed_score_is_stored_as_null(scores, tmp_path):
    layer = scores.layers["conv1"]
    failed = dataclasses.replace(layer.entries[0], score=None)
    broken = scores.with_layer(
        "conv1", dataclasses.replace(layer, entries=(failed, *layer.entries[1:]))
    )
    path = tmp_path / "s.json"
    broken.save(path)
    assert '"score": null' in path.read_text()
    assert EvalScores.load(path).layers["conv1"].entries[0].score is None
