"""Every code block of README.md and docs/*.md runs, so the documentation stays true.

Per file, in document order, in a fresh working directory:

- ``python`` blocks run in one namespace per file, starting from a copy of the
  ``example_namespace`` fixture (the trained demo ``model``, ``val_loader``, ``scores``, ``gc``
  ...). A block whose first line is ``# NAME.py`` is a script: it is written to NAME.py for
  the shell blocks below it instead of being run here.
- ``bash`` blocks run line by line (``\\``-continued lines joined); each command must exit
  with status 0 and print no traceback. ``greedy-compress``, ``python`` and ``torchrun`` are
  this interpreter's (``python -m greedy_compress.cli``, ``python``,
  ``python -m torch.distributed.run``).
- ``json`` blocks must parse; ``text`` blocks are data and are only checked for a tag.

A block right after ``<!-- not run: REASON -->`` is not run; there are at most
``MAX_NOT_RUN`` of them in all, each with its reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python", "bash", "json", "text"}
MAX_NOT_RUN = 2
COMMAND_TIMEOUT = 300  # seconds; a documented command takes a few

# The README's two set-up commands make a virtual environment and install torch and the
# package; CI (.ci/run) runs them literally, so they are recognised by this exact prefix,
# in README.md only, and not run here. No other line is skipped.
SETUP_PREFIX = (
    "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 && "
    '.venv/bin/pip install -e ".[dev]" && '
)
SETUP_COMMANDS = 2

NOT_RUN = re.compile(r"^<!-- not run: (?P<reason>\S.*\S) -->$")
FENCE = re.compile(r"^(?P<fence>```+)(?P<info>[^`]*)$")
SCRIPT = re.compile(r"^# (?P<name>[\w.-]+\.py)$")
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")

# The shell functions a bash block's commands see.
SHELL_PRELUDE = """\
set -euo pipefail
greedy-compress() { "$DOCS_PYTHON" -m greedy_compress.cli "$@"; }
python() { "$DOCS_PYTHON" "$@"; }
torchrun() { "$DOCS_PYTHON" -m torch.distributed.run "$@"; }
"""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the first line inside the fence (1-based)
    language: str
    source: str
    not_run: str | None  # the reason, for a block marked not to run

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, index, previous = [], 0, ""
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            if lines[index].strip():
                previous = lines[index].strip()
            index += 1
            continue
        fence, language = opening["fence"], opening["info"].strip()
        end = index + 1
        while end < len(lines) and lines[end].rstrip() != fence:
            end += 1
        assert end < len(lines), f"{path.name}:{index + 1}: code block never closed"
        marker = NOT_RUN.match(previous)
        source = "\n".join(lines[index + 1 : end]) + "\n"
        blocks.append(
            Block(path, index + 2, language, source, marker["reason"] if marker else None)
        )
        index, previous = end + 1, ""
    return blocks


def _commands(source: str) -> list[str]:
    """The commands of a shell block: continued lines joined, blank and comment lines out."""
    commands, current = [], ""
    for line in source.splitlines():
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        command = (current + line).strip()
        current = ""
        if command and not command.startswith("#"):
            commands.append(command)
    assert not current, "a shell block ends with a continued line"
    return commands


def _run_shell(block: Block, command: str, cwd: Path) -> None:
    env = {
        **os.environ,
        "DOCS_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        ["bash", "-c", SHELL_PRELUDE + command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    # A background job's failure does not change the exit status; its traceback shows it.
    if done.returncode != 0 or "Traceback (most recent call last)" in done.stderr:
        pytest.fail(
            f"{block.where}: `{command}` exited with status {done.returncode}\n"
            f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}",
            pytrace=False,
        )


def _registries() -> list[dict[Any, Any]]:
    """The global registries an example may add to (a scheme, solver, criterion, handler,
    quantizer, pruner), so each file's additions are undone and other tests see the package
    as shipped."""
    from greedy_compress.graph import handlers
    from greedy_compress.masks import _base as masks
    from greedy_compress.quantization import _base as quantization
    from greedy_compress.schemes import _SCHEMES
    from greedy_compress.schemes.criteria import _base as criteria
    from greedy_compress.selection.solvers import _SOLVERS

    return [
        _SCHEMES._classes,
        _SOLVERS._classes,
        criteria._CRITERIA,
        handlers._HANDLERS,
        quantization._QUANTIZERS._classes,
        masks._PRUNERS._classes,
    ]


def _run_file(path: Path, namespace: dict[str, Any], cwd: Path) -> None:
    """Run (or parse) the blocks of one file, in order."""
    blocks = code_blocks(path)
    if path.name == "README.md":
        setup = [
            command
            for block in blocks
            if block.language == "bash"
            for command in _commands(block.source)
            if command.startswith(SETUP_PREFIX)
        ]
        assert len(setup) == SETUP_COMMANDS, "README.md must give the two set-up commands CI runs"
    for block in blocks:
        assert block.language in LANGUAGES, (
            f"{block.where}: tag the code block with one of {sorted(LANGUAGES)}"
        )
        if block.not_run is not None or block.language == "text":
            continue
        if block.language == "json":
            try:
                json.loads(block.source)
            except json.JSONDecodeError as error:
                pytest.fail(f"{block.where}: not valid JSON: {error}", pytrace=False)
        elif block.language == "python":
            script = SCRIPT.match(block.source.splitlines()[0])
            if script is not None:
                (cwd / script["name"]).write_text(block.source, encoding="utf-8")
            else:
                # Padding makes a traceback name the line of the markdown file.
                code = compile("\n" * (block.line - 1) + block.source, str(block.path), "exec")
                exec(code, namespace)
        else:
            for command in _commands(block.source):
                if path.name == "README.md" and command.startswith(SETUP_PREFIX):
                    continue  # run by CI, see SETUP_PREFIX
                _run_shell(block, command, cwd)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(path, example_namespace, tmp_path, monkeypatch):
    from greedy_compress.model.hashing import weights_hash

    monkeypatch.chdir(tmp_path)
    namespace = {**example_namespace, "__name__": f"docs_{path.stem.replace('-', '_')}"}
    weights = weights_hash(example_namespace["model"])
    saved = [dict(registry) for registry in _registries()]
    try:
        _run_file(path, namespace, tmp_path)
    finally:
        for registry, before in zip(_registries(), saved, strict=True):
            registry.clear()
            registry.update(before)
    # The namespace is shared with every other file: its model must come out unchanged.
    assert weights_hash(example_namespace["model"]) == weights, "an example changed `model`"


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(path):
    targets = [m["target"] for m in LINK.finditer(path.read_text(encoding="utf-8"))]
    missing = [t for t in targets if "://" not in t and not (path.parent / t).exists()]
    assert not missing, f"{path.name} links to missing files: {missing}"


def test_the_readme_links_every_docs_page():
    linked = {
        (ROOT / m["target"]).resolve() for m in LINK.finditer(DOC_FILES[0].read_text("utf-8"))
    }
    assert set(DOC_FILES[1:]) <= linked, sorted(p.name for p in set(DOC_FILES[1:]) - linked)


def test_few_blocks_are_not_run_and_each_says_why():
    skipped = [b for path in DOC_FILES for b in code_blocks(path) if b.not_run is not None]
    assert len(skipped) <= MAX_NOT_RUN, [b.where for b in skipped]
    assert all(len(b.not_run.split()) >= 3 for b in skipped)


def test_the_block_reader_sees_tags_markers_scripts_and_continuations(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\n# tool.py\nprint(1)\n```\n\n<!-- not run: needs two machines -->\n"
        "```bash\ngreedy-compress demo \\\n    --target 0.5  # comment\n# only a comment\n```\n"
    )
    first, second = code_blocks(page)
    assert (first.language, first.line, first.not_run) == ("python", 4, None)
    assert SCRIPT.match(first.source.splitlines()[0])["name"] == "tool.py"
    assert (second.language, second.not_run) == ("bash", "needs two machines")
    assert _commands(second.source) == ["greedy-compress demo      --target 0.5  # comment"]
