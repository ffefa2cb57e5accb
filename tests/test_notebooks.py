"""Every notebook's code cells run top to bottom without a display."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_is_stripped(path, tmp_path, monkeypatch, trained_demo):
    matplotlib.use("Agg")
    notebook = json.loads(path.read_text())
    code_cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code_cells)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for cell in code_cells:
        exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    assert (tmp_path / "greedy-compress-out").is_dir()
