"""Run the demo notebooks headless, in a real Jupyter kernel, and print their run summaries.

    python notebooks/headless.py                      # 01-quickstart.ipynb
    python notebooks/headless.py 03-failures-and-debugging.ipynb --workdir /tmp/nb

This is what ``make demo`` does on a machine without a browser, and what the tests use to
execute every notebook (``tests/test_notebooks.py``). The notebook runs through nbclient in a
``python3`` kernel of the Python running this script, in its own working folder (a new
temporary one unless ``--workdir`` is given), so the data it makes never lands in the
repository. The executed copy, outputs included, is saved there too: open it with
``jupyter lab`` to see the panels.

The kernel gets this checkout on ``PYTHONPATH``, so ``%load_ext dask_magic`` works without
installing the package, and so do the Dask worker processes the kernel starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: The first line of the ``text/plain`` summary a run's panel leaves in the notebook.
SUMMARY_PREFIX = "parallel_for "


def kernel_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, with the checkout on ``PYTHONPATH`` and ``extra`` on top."""
    env = dict(os.environ)
    paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra or {})
    return env


def execute(
    notebook: str | Path,
    workdir: str | Path,
    *,
    timeout: int = 300,
    env: Mapping[str, str] | None = None,
    extra_cells: Iterable[str] = (),
) -> nbformat.NotebookNode:
    """Execute ``notebook`` in a fresh ``python3`` kernel whose working folder is ``workdir``.

    ``extra_cells`` are code cells appended before running (the tests add one that prints
    the facts they check). Cells tagged ``raises-exception`` may raise; any other error
    raises `nbclient.exceptions.CellExecutionError`. Returns the executed notebook, which
    is also saved in ``workdir`` under the notebook's name.
    """
    nb = nbformat.read(str(notebook), as_version=4)
    for source in extra_cells:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute(env=kernel_env(env))
    finally:
        nbformat.write(nb, str(workdir / Path(notebook).name))
    return nb


def outputs_text(cell: Mapping) -> str:
    """Everything a code cell printed or showed as text: streams, ``text/plain``, errors.

    Consecutive writes to one stream are joined as a front end shows them (one block).
    """
    parts: list[str] = []
    previous = None
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream" and previous == output.get("name"):
            parts[-1] += output.get("text", "")
        elif kind == "stream":
            parts.append(output.get("text", ""))
        elif kind in ("display_data", "execute_result"):
            parts.append(output.get("data", {}).get("text/plain", ""))
        elif kind == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
        previous = output.get("name") if kind == "stream" else None
    return "\n".join(parts)


def summaries(nb: nbformat.NotebookNode) -> list[str]:
    """The final ``text/plain`` summary of every run panel in ``nb``, in cell order."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/plain", "")
            if output.get("output_type") == "display_data" and text.startswith(SUMMARY_PREFIX):
                found.append(text)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks",
        nargs="*",
        default=["01-quickstart.ipynb"],
        help="notebooks to run (names in notebooks/ or paths)",
    )
    parser.add_argument("--workdir", help="working folder (default: a new temporary folder)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dask-magic-demo-"))
    for name in args.notebooks:
        path = Path(name) if Path(name).exists() else HERE / name
        print(f"running {path.name} in {workdir} ...", flush=True)
        start = time.perf_counter()
        nb = execute(path, workdir, timeout=args.timeout)
        for text in summaries(nb):
            print("\n" + text)
        print(
            f"\n{path.name}: {len(nb.cells)} cells in {time.perf_counter() - start:.0f} s; "
            f"executed copy: {workdir / path.name}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
