"""Every notebook runs top to bottom in a real headless kernel, and is stored without outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_analysis_notebook_is_collected():
    assert "analysis.ipynb" in [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_headless_without_errors(path, tmp_path, monkeypatch, trained_demo):
    # The kernel inherits this environment: the session's cache of trained weights (so the
    # demo is not retrained), this checkout on the path, and no display.
    assert os.environ["GREEDY_COMPRESS_CACHE"]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("DISPLAY", raising=False)
    notebook = nbformat.read(path, as_version=4)
    # One extra cell reports which interpreter ran the notebook.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    assert not [o for o in outputs if o.output_type == "error"]
    assert notebook.cells[-1].outputs[0].text.strip() == sys.prefix  # the test's Python
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # the four plots were drawn
    assert (tmp_path / "greedy-compress-out" / "scores-spatial_svd-mac.json").is_file()
