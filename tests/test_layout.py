"""The package's shape: one folder per phase, imports one way, private modules kept private."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "greedy_compress"
ENTRY_POINTS = {"__init__", "_version", "api", "apply", "errors", "pipeline"}
PHASES = {
    "_util",
    "model",
    "graph",
    "quantization",
    "schemes",
    "masks",
    "dictionary",
    "selection",
    "export",
    "report",
    "demo",
    "cli",
}
MAX_LINES = 420  # "no module over about 400 lines"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1])


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("greedy_compress")]


def _private_prefix(dotted: str) -> str | None:
    """The package a private module or package (``_x``) belongs to, or None."""
    parts = dotted.split(".")
    for index, part in enumerate(parts[1:], 1):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def test_the_top_level_holds_only_entry_points_and_one_folder_per_phase():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert modules == ENTRY_POINTS
    assert folders == PHASES


def test_no_module_imports_another_packages_private_module():
    offences = []
    for path in _modules():
        importer = _package_of(path) if path.stem != "__init__" else _dotted(path)
        for line, name in _imports(path):
            owner = _private_prefix(name)
            if owner is not None and not (importer + ".").startswith(owner + "."):
                offences.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not offences, "\n".join(offences)


def test_the_private_import_check_can_fail(tmp_path):
    """The check above finds a cross-package private import when there is one."""
    module = PACKAGE / "report" / "_probe_for_layout_test.py"
    module.write_text("from greedy_compress.schemes._tensorly import as_numpy64\n")
    try:
        with pytest.raises(AssertionError, match=r"_probe_for_layout_test\.py:1 imports"):
            test_no_module_imports_another_packages_private_module()
    finally:
        module.unlink()


def test_no_module_is_much_over_400_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long


def test_the_import_contracts_hold():
    """Phases import one way (model -> ... -> report -> entry points) and the evaluators
    package never imports greedy_compress: the import-linter contracts in pyproject.toml."""
    command = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(command) if command.exists() else "lint-imports", "--no-cache"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
