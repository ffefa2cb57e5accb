from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from greedy_compress import EvalScores, Selection, load_compressed, select
from greedy_compress.cli import main
from greedy_compress.demo.models import DigitsCNN


def test_demo_writes_all_artifacts_and_prints_the_report(tmp_path, capsys, trained_demo):
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--candidates", "5", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "target 0.5 of mac cost; achieved 0.4" in printed
    report = json.loads((out / "report.json").read_text())
    assert 0.48 <= report["achieved_ratio"] <= 0.5
    scores = EvalScores.load(out / "scores-spatial_svd-mac.json")
    assert scores.is_complete and scores.fingerprint["candidates"] == [0.2, 0.4, 0.6, 0.8]
    rebuilt = load_compressed(
        DigitsCNN(), Selection.load(out / "selection.json"), out / "compressed.pt"
    )
    assert sum(p.numel() for p in rebuilt.parameters()) == report["model_after"]["params"]
    for name in ("sensitivity", "selection", "tradeoff", "comparison"):
        image = (out / f"{name}.png").read_bytes()
        assert image.startswith(b"\x89PNG") and len(image) > 5000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--target", "1.5"], "'target' parameter"),
        (["demo", "--scheme", "svd"], "'scheme' parameter"),
        (["demo", "--candidates", "1"], "'candidates' parameter"),
        (["demo", "--max-drop", "-0.1"], "'max_drop' parameter"),
        (["scores", "show", "/nonexistent/scores.json"], "does not exist"),
        (["compress", "--model", "nomodule", "--data", "x:y"], "--model must look like"),
        (["compress", "--model", "no_such_module:f", "--data", "x:y"], "cannot import"),
    ],
)
def test_bad_arguments_give_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("greedy-compress: error:") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_demo_with_max_drop_and_monotone_reports_the_check(tmp_path, capsys, trained_demo):
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--candidates", "3", "--no-progress"]
    assert main([*argv, "--max-drop-relative", "0.02", "--monotone"]) == 0
    printed = capsys.readouterr().out
    assert "dictionary predicted" in printed
    assert "repair: max drop 0.02 of the baseline" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["repair"]["max_drop"] == {"amount": 0.02, "relative": True}
    assert report["selection"]["details"]["monotone_fit"] is True


def test_scores_show_prints_a_saved_dictionary_and_rejects_other_files(tmp_path, capsys):
    out = tmp_path / "out"
    main(["demo", "--out", str(out), "--candidates", "3", "--no-progress"])
    capsys.readouterr()
    assert main(["scores", "show", str(out / "scores-spatial_svd-mac.json")]) == 0
    assert "layers scored 4 of 4" in capsys.readouterr().out
    assert main(["scores", "show", str(out / "report.json")]) == 2
    assert "not a greedy-compress eval-score file" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_compress_runs_a_user_model_from_files(tmp_path, capsys, trained_demo):
    model, _ = trained_demo
    from greedy_compress.demo.run import save_weights

    save_weights(model, tmp_path / "weights.pt")
    user = tmp_path / "user_code.py"
    user.write_text(
        textwrap.dedent("""
        from greedy_compress.demo.data import load_digits_data
        from greedy_compress.demo.models import DigitsCNN

        def make_model():
            return DigitsCNN()

        def make_loader():
            return load_digits_data().val_loader(batch_size=128)
    """)
    )
    out = tmp_path / "out"
    argv = [
        "compress",
        "--model",
        f"{user}:make_model",
        "--weights",
        str(tmp_path / "weights.pt"),
        "--data",
        f"{user}:make_loader",
        "--target",
        "0.6",
        "--scheme",
        "weight_svd",
        "--candidates",
        "4",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["baseline_score"] > 0.9 and report["achieved_ratio"] <= 0.6
    assert (out / "scores.json").exists() and (out / "compressed.pt").exists()
    # --config-list: the saved dictionary serves it (every layer scored), and the selection
    # is what the Python API chooses for the same config list.
    config = [{"op_types": ["default"]}, {"op_names": ["classifier"], "exclude": True}]
    (tmp_path / "config.json").write_text(json.dumps(config))
    chosen = [*argv, "--config-list", str(tmp_path / "config.json")]
    chosen[chosen.index(str(out))] = str(tmp_path / "out2")
    assert main([*chosen, "--scores", str(out / "scores.json")]) == 0
    selection = json.loads((tmp_path / "out2" / "selection.json").read_text())
    scores = EvalScores.load(out / "scores.json")
    assert "classifier" in scores.layers and "classifier" not in selection["choices"]
    expected = select(scores, target=0.6).choices
    assert {n: c["rank"] for n, c in selection["choices"].items()} == {
        n: c.rank for n, c in expected.items()
    }
    (tmp_path / "bad.json").write_text(json.dumps([{"op_names": ["features.99"]}]))
    chosen[chosen.index(str(tmp_path / "config.json"))] = str(tmp_path / "bad.json")
    assert main(chosen) == 2
    assert "features.99" in capsys.readouterr().err
    # a pickled (non weights-only) file is refused, not executed
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04\x95not a weights file")
    argv[argv.index(str(tmp_path / "weights.pt"))] = str(tmp_path / "evil.pt")
    assert main(argv) == 2
    assert "--weights: cannot load" in capsys.readouterr().err


def test_console_script_help_runs():
    result = subprocess.run(
        [sys.executable, "-m", "greedy_compress.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "demo" in result.stdout and "compress" in result.stdout and "scores" in result.stdout
