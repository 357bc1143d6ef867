"""Where a warm 1-item cell's time goes: each step of ``%%parallel_for`` timed on its own.

    python benchmarks/warm_cell_steps.py [--cells N] [--flags "--fresh"] [--pause S]
    DASK_MAGIC_JOURNAL=off python benchmarks/warm_cell_steps.py --flags ""
    python benchmarks/warm_cell_steps.py --alternate   # journal on and off, cell by cell
    python benchmarks/warm_cell_steps.py --alternate-push --pause 0.3   # results pushed or gathered

The cell of workload 5 (``for x in [1]: out.append(inc(x))``) runs N times in one IPython
shell on the warm local cluster dask-magic starts, each cell followed by a
``client.submit(f, x).result()`` round trip on the same client (the target's yardstick).
Each step is timed with ``perf_counter`` around the function that does it (wrappers set on
the classes and modules for this process only). Printed as JSON: per step, the median time
of one call in ms, the calls per cell and the ms per cell in all; the whole cell's wall and
kernel CPU (``process_time``, all threads: the scheduler and the client's IO loop live in
the kernel's process) and the round trip, as medians.

``--pause S`` sleeps S seconds before each cell and each round trip (cells paced as a person
runs them, not back to back). ``--alternate`` runs every other cell with the journal off
(dask config ``dask-magic.journal.enabled``) and reports the cells and the round trips that
follow them apart: both modes in one process, interleaved. ``--alternate-push`` does the same
with ``dask-magic.push-results`` (a result sent with its task's completion, or gathered).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import statistics
import time
from typing import Any

CELL = "%%parallel_for --progress none {flags} --name r\nfor x in [1]:\n    out.append(inc(x))\n"


def inc(x: int) -> int:
    return x + 1


def _timed(spent: dict[str, list[float]], owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.setdefault(label, []).append(time.perf_counter() - start)

    setattr(owner, name, wrapper)


def _instrument(spent: dict[str, list[float]]) -> None:
    from dask_magic import magics
    from dask_magic.engine import execute, journal, loop, resume

    steps = [
        (magics, "cell_names", "the names the cell mentions (one parse)"),
        (magics, "kinds_of", "kinds of those names (twice: before and after the prelude)"),
        (magics.DaskMagics, "_rewrite", "rewrite"),
        (magics.DaskMagics, "_list_items", "list the items"),
        (resume, "for_run", "journal: open for the run"),
        (resume.PassJournal, "split", "journal: keys and listing (split)"),
        (execute.DaskRun, "submit_first_wave", "submit"),
        (execute.DaskRun, "_wait", "wait for the item"),
        (execute.DaskRun, "_load_finished", "gather + unpickle"),
        (loop, "_land", "land (commit, final values)"),
        (resume.PassJournal, "finish", "journal: finish (write, settle)"),
        (journal.Journal, "_do_locked", "journal: SQL (either thread)"),
        (magics.DaskMagics, "_start", "the run (from the journal's open to the landing)"),
    ]
    for owner, name, label in steps:
        _timed(spent, owner, name, label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=60)
    parser.add_argument("--flags", default="--fresh", help="the cell's options (default --fresh)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds before each step")
    parser.add_argument("--alternate", action="store_true", help="journal on, off, on, ...")
    parser.add_argument("--alternate-push", action="store_true", help="push on, off, on, ...")
    args = parser.parse_args()

    import dask
    from IPython.testing.globalipapp import start_ipython

    from dask_magic.engine import cluster

    ip = start_ipython()
    ip.run_line_magic("load_ext", "dask_magic")
    ip.push({"inc": inc, "out": []})
    cell = CELL.format(flags=args.flags)

    def run_cell() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            result = ip.run_cell(cell)
        if not result.success:
            raise RuntimeError(result.error_in_exec or result.error_before_exec)
        ip.run_cell("out = []")

    spent: dict[str, list[float]] = {}
    for _ in range(5):  # the cluster started, every path warm
        run_cell()
    client = cluster.get_client()
    _instrument(spent)
    toggle = _toggle(args)
    setting = toggle[1] if toggle else "dask-magic.journal.enabled"
    modes = [not (toggle and n % 2) for n in range(args.cells)]
    measured: dict[bool, tuple[list[float], list[float], list[float]]] = {}
    for mode_on in modes:
        walls, cpus, trips = measured.setdefault(mode_on, ([], [], []))
        time.sleep(args.pause)
        wall, cpu = time.perf_counter(), time.process_time()
        with dask.config.set({setting: mode_on}):
            run_cell()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        time.sleep(args.pause)
        wall = time.perf_counter()
        client.submit(inc, 1, pure=False).result()
        trips.append(time.perf_counter() - wall)
    print(json.dumps(_report(args, measured, spent), indent=1))


def _toggle(args: Any) -> tuple[str, str] | None:
    """What ``--alternate`` / ``--alternate-push`` switch cell by cell: (label, config key)."""
    if args.alternate_push:
        return "push", "dask-magic.push-results"
    if args.alternate:
        return "journal", "dask-magic.journal.enabled"
    return None


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1e3, 3)


def _report(args: Any, measured: dict, spent: dict[str, list[float]]) -> dict[str, Any]:
    report: dict[str, Any] = {"flags": args.flags, "pause_s": args.pause}
    toggle = _toggle(args)
    for mode_on, (walls, cpus, trips) in measured.items():
        tag = "" if toggle is None else f"{toggle[0]} {'on' if mode_on else 'off'}: "
        report[f"{tag}cell_ms"] = _ms(walls)
        report[f"{tag}cell_cpu_ms"] = _ms(cpus)
        report[f"{tag}submit_round_trip_ms (after the cell)"] = _ms(trips)
        report[f"{tag}ratio"] = round(_ms(walls) / _ms(trips), 3)
    for label, times in spent.items():
        per_cell = round(sum(times) / args.cells * 1e3, 3)
        report[label] = {
            "ms": _ms(times),
            "calls": len(times) / args.cells,
            "ms_per_cell": per_cell,
        }
    return report


if __name__ == "__main__":
    main()
