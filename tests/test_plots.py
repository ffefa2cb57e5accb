"""Every plot draws what its record says and writes a non-empty image without a display."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import matplotlib
import pytest

matplotlib.use("Agg")  # before pyplot is imported anywhere: no display in tests

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from greedy_compress import GreedySolver, InvalidParameterError
from greedy_compress.cli import main
from greedy_compress.report.analysis import (
    MeasuredPoint,
    selection_data,
    sensitivity,
    tradeoff_curve,
)
from greedy_compress.report.comparison import compare_selections, selections_by_solver
from greedy_compress.report.plots import (
    plot_comparison,
    plot_selection,
    plot_sensitivity,
    plot_tradeoff,
    save_plots,
)
from tests.dictionaries import TWO_LAYERS, make_scores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

THREE_LAYERS = make_scores(
    {
        "conv1": (100, [(20, 0.2), (50, 0.8), (80, 0.97)]),
        "conv2": (300, [(60, 0.9), (150, 0.96), (240, 0.99)]),
        "fc": (100, [(20, None), (50, 0.98), (80, 0.99)]),
    },
    fixed_macs=50,
)


def records():
    selection = GreedySolver().solve(THREE_LAYERS, target=0.5)
    return {
        "sensitivity": (plot_sensitivity, sensitivity(THREE_LAYERS)),
        "selection": (plot_selection, selection_data(THREE_LAYERS, selection)),
        "tradeoff": (
            plot_tradeoff,
            tradeoff_curve(THREE_LAYERS, measured=[MeasuredPoint(0.5, 0.9, "measured")]),
        ),
        "comparison": (
            plot_comparison,
            compare_selections(THREE_LAYERS, selections_by_solver(THREE_LAYERS, target=0.5)),
        ),
    }


@pytest.mark.parametrize("name", ["sensitivity", "selection", "tradeoff", "comparison"])
def test_every_plot_writes_a_non_empty_image_without_pyplot(name, tmp_path):
    draw, data = records()[name]
    figures_before = plt.get_fignums()
    figure = Figure(layout="constrained")
    ax = figure.add_subplot()
    assert draw(data, ax=ax) is ax
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert ax.get_legend() is not None
    figure.savefig(tmp_path / f"{name}.png")
    data_bytes = (tmp_path / f"{name}.png").read_bytes()
    assert data_bytes.startswith(PNG_MAGIC) and len(data_bytes) > 5000
    assert plt.get_fignums() == figures_before  # drawing on a given Axes opens no figure


@pytest.mark.parametrize("name", ["sensitivity", "selection", "tradeoff", "comparison"])
def test_without_an_axes_each_plot_makes_its_own_figure(name):
    draw, data = records()[name]
    ax = draw(data)
    try:
        assert ax.figure.number in plt.get_fignums()
        assert ax.figure.get_figwidth() >= 6
    finally:
        plt.close(ax.figure)


def test_sensitivity_plot_colours_the_most_sensitive_layers_only():
    ax = Figure().add_subplot()
    plot_sensitivity(sensitivity(THREE_LAYERS), ax=ax, label=1)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    # fc has a failed candidate, so it ranks first; the others are grey and unlabelled
    assert labels == ["fc (18.2% of model), 1 failed", "baseline", "2 other layers"]
    fc = next(line for line in ax.get_lines() if line.get_label().startswith("fc"))
    assert list(fc.get_xdata()) == [0.5, 0.8, 1.0]  # the failed candidate is left out
    baseline = next(line for line in ax.get_lines() if line.get_label() == "baseline")
    assert list(baseline.get_ydata()) == [1.0, 1.0]
    with pytest.raises(InvalidParameterError, match="'label' parameter of plot_sensitivity"):
        plot_sensitivity(sensitivity(THREE_LAYERS), ax=ax, label=0)


def test_selection_plot_bars_are_the_chosen_ratios_and_cost_shares():
    data = selection_data(THREE_LAYERS, GreedySolver().solve(THREE_LAYERS, target=0.5))
    ax = Figure().add_subplot()
    plot_selection(data, ax=ax)
    bars = ax.patches[: 3 * len(data.layers)]
    assert [b.get_height() for b in bars[0::3]] == [row.kept_ratio for row in data.layers]
    assert [b.get_height() for b in bars[1::3]] == [row.cost_share for row in data.layers]
    assert [b.get_height() for b in bars[2::3]] == [row.kept_share for row in data.layers]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv1", "conv2", "fc"]


def test_tradeoff_plot_clips_predictions_below_every_real_score():
    data = tradeoff_curve(THREE_LAYERS, targets=[0.3, 0.5, 0.8], measured=[(0.5, 0.9)])
    ax = Figure().add_subplot()
    plot_tradeoff(data, ax=ax)
    predicted = ax.get_lines()[0]
    assert list(predicted.get_xdata()) == [p.predicted_ratio for p in data.points]
    bottom, top = ax.get_ylim()
    assert data.points[0].predicted_score < bottom < data.lowest_score  # clipped and marked
    assert data.points[-1].predicted_score > bottom
    expected = [max(p.predicted_score, bottom) for p in data.points]
    assert list(predicted.get_ydata()) == expected
    assert top > data.baseline
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "predicted below the axis" in labels and "measured" in labels


def test_comparison_plot_draws_one_bar_per_strategy_and_layer():
    strategies = selections_by_solver(THREE_LAYERS, target=0.5)
    data = compare_selections(THREE_LAYERS, strategies, measured={"greedy": 0.95})
    ax = Figure().add_subplot()
    plot_comparison(data, ax=ax)
    assert len(ax.patches) == len(strategies) * 3
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0].startswith("greedy\nkeeps") and labels[0].endswith("measured 0.9500")
    first = [p.get_height() for p in ax.patches[:3]]
    assert first == [row.kept_ratio for row in data.strategies[0].layers]


def test_save_plots_writes_every_plot_in_each_format(tmp_path):
    written = save_plots(THREE_LAYERS, tmp_path / "plots", formats=("png", "svg"))
    names = ["sensitivity", "selection", "tradeoff", "comparison"]
    assert written == [tmp_path / "plots" / f"{n}.{s}" for n in names for s in ("png", "svg")]
    for path in written:
        head = path.read_bytes()[:200]
        assert head.startswith(PNG_MAGIC) if path.suffix == ".png" else b"<svg" in head
    assert plt.get_fignums() == []  # pyplot was not involved
    assert not list((tmp_path / "plots").glob(".*.tmp"))  # atomic writes leave no debris


def test_save_plots_of_a_partial_dictionary_draws_the_sensitivity_only(tmp_path):
    partial = dataclasses.replace(THREE_LAYERS, layers={"conv1": THREE_LAYERS.layers["conv1"]})
    assert save_plots(partial, tmp_path) == [tmp_path / "sensitivity.png"]


def test_save_plots_checks_its_input_before_writing(tmp_path):
    with pytest.raises(InvalidParameterError, match="'formats' parameter of save_plots"):
        save_plots(THREE_LAYERS, tmp_path / "a", formats=("jpg",))
    with pytest.raises(InvalidParameterError, match="'target' parameter of save_plots"):
        save_plots(THREE_LAYERS, tmp_path / "b", target=2.0)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_importing_the_package_does_not_import_matplotlib():
    code = "import sys, greedy_compress; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


# The command line


def test_cli_plot_writes_png_and_svg(tmp_path, capsys):
    TWO_LAYERS.save(tmp_path / "scores.json")
    GreedySolver(fill_budget=False).solve(TWO_LAYERS, target=0.6).save(tmp_path / "sel.json")
    (tmp_path / "report.json").write_text(
        '{"solver": "greedy", "target": 0.6, "achieved_ratio": 0.58, "final_score": 0.9}'
    )
    argv = ["plot", str(tmp_path / "scores.json"), "--out", str(tmp_path / "out"), "--svg"]
    argv += ["--selection", str(tmp_path / "sel.json"), "--report", str(tmp_path / "report.json")]
    assert main([*argv, "--targets", "0.1,0.4,0.7"]) == 0
    out = capsys.readouterr().out
    assert "targets 0.1 are below the smallest reachable ratio 0.2000" in out
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == sorted(
        f"{n}.{s}" for n in ("sensitivity", "selection", "tradeoff", "comparison")
        for s in ("png", "svg")
    )  # fmt: skip
    assert all(p.stat().st_size > 1000 for p in (tmp_path / "out").iterdir())


def test_cli_plot_of_a_partial_dictionary_says_what_is_missing(tmp_path, capsys):
    partial = dataclasses.replace(TWO_LAYERS, layers={"a": TWO_LAYERS.layers["a"]})
    partial.save(tmp_path / "scores.json")
    assert main(["plot", str(tmp_path / "scores.json"), "--out", str(tmp_path / "out")]) == 0
    assert "incomplete (missing b)" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["sensitivity.png"]


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        (None, [], "dictionary file '{tmp}/scores.json' does not exist"),
        ("{bad", [], "dictionary file '{tmp}/scores.json' is not readable JSON"),
        ('{"format": "other"}', [], "is not a greedy-compress eval-score file"),
        ("scores", ["--selection", "{tmp}/nope.json"], "--selection file '{tmp}/nope.json' does"),
        ("scores", ["--selection", "{tmp}/scores.json"], "is not a greedy-compress selection"),
        ("scores", ["--report", "{tmp}/scores.json"], "is not a greedy-compress report"),
        ("scores", ["--targets", "0.5,1.5"], "'targets' parameter of tradeoff_curve"),
        ("scores", ["--target", "0.1"], "Target 0.1 is out of reach"),
        ("scores", ["--out", "{tmp}/scores.json"], "cannot write the plots"),
    ],
)
def test_cli_plot_errors_are_one_line(tmp_path, capsys, setup, extra, message):
    path = tmp_path / "scores.json"
    if setup == "scores":
        TWO_LAYERS.save(path)
    elif setup is not None:
        path.write_text(setup)
    argv = ["plot", str(path), "--out", str(tmp_path / "out"), *extra]
    assert main([arg.replace("{tmp}", str(tmp_path)) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("greedy-compress: error:") and message.format(tmp=tmp_path) in err
    assert err.count("\n") == 1 and "Traceback" not in err
