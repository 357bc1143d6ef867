"""What the journal costs on a run of 100,000 tiny items, and what restoring them costs.

Runs the same ``%%parallel_for`` cell in IPython's real shell, on the warm local cluster:

* ``off``: the journal switched off (``DASK_MAGIC_JOURNAL=off``);
* ``write``: journal on, empty: every item runs and is written;
* ``restore``: the same cell again: every item is restored, none runs;
* ``fresh``: ``--fresh``: every item runs and is written again.

It prints one line per mode (best of ``--rounds``) and the journal's size. It measures; it
asserts nothing::

    python benchmarks/journal_overhead.py --items 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

CELL = """%%parallel_for --progress none {flags}
out = []
for x in items:
    y = x * 2
    out.append(y)
"""


def _shell():
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_line_magic("load_ext", "dask_magic")
    return shell


def _timed(shell, cell: str) -> float:
    start = time.perf_counter()
    result = shell.run_cell(cell)
    elapsed = time.perf_counter() - start
    if not result.success:
        raise SystemExit(f"the cell failed: {result.error_in_exec!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shell = _shell()
    shell.run_cell(f"items = list(range({args.items}))")
    _timed(shell, "%%parallel_for --progress none\nfor x in range(4):\n    pass\n")  # warm up
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        folder = tempfile.mkdtemp(prefix="dm-journal-")
        os.environ["DASK_MAGIC_JOURNAL"] = "off"
        best["off"] = min(best.get("off", 1e9), _timed(shell, CELL.format(flags="")))
        os.environ["DASK_MAGIC_JOURNAL"] = folder
        best["write"] = min(best.get("write", 1e9), _timed(shell, CELL.format(flags="")))
        best["restore"] = min(best.get("restore", 1e9), _timed(shell, CELL.format(flags="")))
        best["fresh"] = min(best.get("fresh", 1e9), _timed(shell, CELL.format(flags="--fresh")))
        size = os.path.getsize(os.path.join(folder, "journal.sqlite"))
    assert shell.user_ns["out"] == [2 * x for x in range(args.items)]
    print(f"{args.items:,} tiny items, best of {args.rounds}:")
    for mode, seconds in best.items():
        extra = "" if mode == "off" else f"  ({seconds - best['off']:+.2f} s vs off)"
        print(f"  {mode:8} {seconds:7.2f} s{extra}")
    print(f"  journal file: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
