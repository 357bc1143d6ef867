"""``ruff check`` over the notebooks, with the names their ``%%parallel_for`` cells bind.

Ruff skips a cell that starts with a cell magic, so a later cell reading a name such a cell
binds (``results``, ``run``) looks undefined to it (F821), and the loop itself goes
unchecked. A ``%%parallel_for`` cell is an ordinary Python loop after its first line, and
runs as one (with ``--serial``, exactly), so this hands ruff each notebook with that first
line turned into a comment: line and cell numbers stay those of the notebook, and every
cell is checked with the project's rules. pyproject.toml excludes the notebooks from plain
``ruff check`` so that they are linted this way only.

``--name NAME`` binds the run to ``NAME``: that binding is added after the cell's last line.

Usage: ``python tools/lint_notebooks.py [RUFF] [NOTEBOOK ...]``; exit status 1 on findings.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOP_MAGIC = "%%parallel_for"


def as_plain_python(notebook: dict) -> dict:
    """The notebook with each ``%%parallel_for`` line commented out (``# %%parallel_for``)."""
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = cell["source"]
        lines = source if isinstance(source, list) else source.splitlines(keepends=True)
        if lines and lines[0].startswith(LOOP_MAGIC):
            bound = _run_name(lines[0])
            last = lines[-1] if lines[-1].endswith("\n") else lines[-1] + "\n"
            # appended after the last line, so that every line keeps its number
            tail = [f"{bound} = ...  # bound by --name\n"] if bound else []
            cell["source"] = ["# " + lines[0], *lines[1:-1], last, *tail]
    return notebook


def _run_name(magic_line: str) -> str | None:
    """The variable ``--name NAME`` binds to the run, if the magic line has one."""
    words = magic_line.split()
    for option, value in itertools.pairwise(words):
        if option == "--name":
            return value
    named = [w.removeprefix("--name=") for w in words if w.startswith("--name=")]
    return named[0] if named else None


def refused_cells(notebook: dict) -> set[int]:
    """Cells (numbered from 1, as ruff does) that show refused code on purpose.

    They are tagged ``raises-exception`` (nbclient runs on past their error). What they bind
    still counts for the cells after them; findings inside them are not reported.
    """
    return {
        number
        for number, cell in enumerate(notebook["cells"], start=1)
        if "raises-exception" in cell.get("metadata", {}).get("tags", [])
    }


def lint(ruff: str, path: Path) -> list[str]:
    """Ruff's findings in one notebook, one ``path:cell N:line:column: CODE message`` each."""
    notebook = json.loads(path.read_text())
    refused = refused_cells(notebook)
    shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
    done = subprocess.run(
        [ruff, "check", "--no-cache", "--output-format=json", f"--stdin-filename={shown}", "-"],
        input=json.dumps(as_plain_python(notebook)),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode not in (0, 1):  # 2: ruff itself failed (bad config, ...)
        raise SystemExit(f"ruff failed on {shown}:\n{done.stderr}")
    return [
        f"{shown}:cell {f['cell']}:{f['location']['row']}:{f['location']['column']}: "
        f"{f['code']} {f['message']}"
        for f in json.loads(done.stdout)
        if f.get("cell") not in refused
    ]


def main(argv: list[str]) -> int:
    """Lint every notebook named (default: ``notebooks/*.ipynb``); 1 if anything was found."""
    ruff = argv[0] if argv and not argv[0].endswith(".ipynb") else "ruff"
    paths = [Path(a) for a in argv if a.endswith(".ipynb")]
    paths = paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    found = [line for path in paths for line in lint(ruff, path)]
    print("\n".join(found) if found else f"notebooks: {len(paths)} checked, no findings")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
