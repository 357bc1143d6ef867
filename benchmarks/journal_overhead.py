"""What the journal costs on a run, and what restoring it costs: side by side with it off.

Runs the same ``%%parallel_for`` cell in IPython's real shell, on the warm local cluster,
for two loops (``--loop``):

* ``tiny``: ``--items`` trivial items (``y = x * 2; out.append(y)``): the cost per item;
* ``files``: the file loop (``pd.read_csv`` + groupby over ``--files`` CSV files of
  ``--rows`` rows, written once under ``benchmarks/results/data``): the cost on real work.

Modes, in this order within each round (rounds interleave them, so that a noisy, shared
machine slows all of them alike; the medians are printed):

* ``off``: the journal switched off (``DASK_MAGIC_JOURNAL=off``);
* ``write``: journal on, empty: every item runs and is written;
* ``restore``: the same cell again: every item is restored, none runs;
* ``fresh``: ``--fresh``: every item runs and is written again.

With ``--inside``, the time spent inside the journal's own calls in the kernel (looking up,
keeping, writing, finishing) is summed too, and by call (``split``, ``record``, ``flush``,
``finish``; a flush made inside ``record`` or ``finish`` counts there once): the journal's
cost per item, free of the cluster's noise. The ``write`` mode's ``split`` includes creating
the journal file (each round uses a new folder: 10-30 ms here, once per folder for a user).

The code measured is this checkout's (it goes first on ``PYTHONPATH``, for the workers
too). It measures; it asserts nothing but the loop's result::

    python benchmarks/journal_overhead.py --loop tiny --items 100000 --rounds 5
    python benchmarks/journal_overhead.py --loop files --files 200 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TINY = """%%parallel_for --progress none {flags}
out = []
for x in items:
    y = x * 2
    out.append(y)
"""

FILES = """%%parallel_for --progress none {flags}
out = []
for path in paths:
    df = pd.read_csv(path)
    out.append(df.groupby('key')['value'].sum())
"""

MODES = ("off", "write", "restore", "fresh")


def _this_checkout() -> None:
    """Import dask_magic from this checkout, here and in every worker process."""
    sys.path[:0] = [str(ROOT), str(HERE)]
    parts = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)


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


def _setup(shell, args: argparse.Namespace) -> tuple[str, int]:
    """Bind the loop's inputs in the shell; the cell and its number of items."""
    if args.loop == "tiny":
        shell.run_cell(f"items = list(range({args.items}))")
        return TINY, args.items
    import data

    paths = data.dataset(HERE / "results" / "data", args.files, args.rows, os.cpu_count() or 1)
    paths = [p for i, p in enumerate(paths) if not data.corrupt_kind(i)]
    shell.push({"paths": paths})
    shell.run_cell("import pandas as pd")
    return FILES, len(paths)


class _Inside:
    """Sums the seconds spent in `PassJournal`'s calls, by mode."""

    CALLS = ("split", "record", "flush", "finish")

    def __init__(self) -> None:
        from dask_magic.engine import resume

        self.mode = "off"
        self.seconds: dict[str, list[float]] = {}
        self.by_call: dict[tuple[str, str], list[float]] = {}  # (mode, call): seconds per round
        self.depth = 0
        for name in self.CALLS:
            method = getattr(resume.PassJournal, name)
            setattr(resume.PassJournal, name, self._timed(name, method))

    def _timed(self, name, method):
        def timed(*args, **kwargs):
            if self.depth:  # `flush` called by `record` or `finish`: counted there
                return method(*args, **kwargs)
            self.depth += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.depth -= 1
                spent = time.perf_counter() - start
                self.seconds.setdefault(self.mode, [0.0])[-1] += spent
                self.by_call.setdefault((self.mode, name), [0.0])[-1] += spent

        return timed

    def start(self, mode: str) -> None:
        self.mode = mode
        self.seconds.setdefault(mode, []).append(0.0)
        for name in self.CALLS:
            self.by_call.setdefault((mode, name), []).append(0.0)


INSIDE: _Inside | None = None


def _round(shell, cell: str) -> tuple[dict[str, float], int]:
    """One round of every mode, in a new journal folder; the journal's size (with its WAL)."""
    folder = tempfile.mkdtemp(prefix="dm-journal-")
    seconds: dict[str, float] = {}
    for mode in MODES:
        os.environ["DASK_MAGIC_JOURNAL"] = "off" if mode == "off" else folder
        if INSIDE is not None:
            INSIDE.start(mode)
        seconds[mode] = _timed(shell, cell.format(flags="--fresh" if mode == "fresh" else ""))
    files = [os.path.join(folder, "journal.sqlite" + end) for end in ("", "-wal")]
    return seconds, sum(os.path.getsize(f) for f in files if os.path.exists(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=("tiny", "files"), default="tiny")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inside", action="store_true", help="time the journal's own calls")
    args = parser.parse_args()
    _this_checkout()
    global INSIDE
    INSIDE = _Inside() if args.inside else None
    shell = _shell()
    cell, n = _setup(shell, args)
    os.environ["DASK_MAGIC_JOURNAL"] = "off"
    _timed(shell, "%%parallel_for --progress none\nfor x in range(4):\n    pass\n")  # warm up
    rounds = []
    for _ in range(args.rounds):
        seconds, size = _round(shell, cell)
        rounds.append(seconds)
        print("  round: " + ", ".join(f"{m} {s:.2f} s" for m, s in seconds.items()), flush=True)
    assert len(shell.user_ns["out"]) == n
    median = {mode: statistics.median(r[mode] for r in rounds) for mode in MODES}
    print(f"{args.loop} loop, {n:,} items, medians of {args.rounds} interleaved rounds:")
    for mode, seconds in median.items():
        extra = ""
        if mode != "off":
            more = seconds - median["off"]
            extra = f"  ({more:+.2f} s, {more / median['off']:+.1%}, {more / n * 1e6:+.1f} µs/item)"
        print(f"  {mode:8} {seconds:7.2f} s{extra}")
    print(f"  journal file: {size / 1e6:.1f} MB")
    if INSIDE is not None:
        print("  inside the journal's calls in the kernel (median per round):")
        for mode in MODES[1:]:
            inside = statistics.median(INSIDE.seconds[mode])
            calls = ", ".join(
                f"{name} {statistics.median(INSIDE.by_call[(mode, name)]) / n * 1e6:.2f}"
                for name in INSIDE.CALLS
            )
            print(f"    {mode:8} {inside:7.3f} s  ({inside / n * 1e6:.2f} µs/item: {calls})")


if __name__ == "__main__":
    main()
