"""Many cells of 10,000 tiny items in one session: the cell's median and mean, and the collector.

    python benchmarks/tiny_cells.py [--cells 40] [--items 10000] [--warmup 4]

Runs the tiny workload's cell (``for x in items: out.append(x + 1)``) again and again in one
IPython shell on the warm local cluster dask-magic starts, as a person re-running a cell
does: every run is kept (the session's history of runs), so what a kept run holds stays in
the process. ``gc.callbacks`` time every collection of the cyclic collector. Printed as JSON:
the cell's median and mean (ms), the young (generations 0 and 1) and full (generation 2)
collections per cell, the objects the collector tracks at the end and how many a cell adds.

The median is what `make bench` reports; the mean is what a person feels, full collections
included. A run that keeps an object per item makes every full collection walk them all.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import statistics
import time
from typing import Any

CELL = (
    "%%parallel_for --progress none --fresh --name tiny\nfor x in items:\n    out.append(x + 1)\n"
)


class CollectorClock:
    """Seconds spent in collections, by generation, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.spent: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.spent[info["generation"]].append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=4)
    args = parser.parse_args()

    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython()
    ip.run_line_magic("load_ext", "dask_magic")
    ip.push({"items": list(range(args.items)), "out": []})

    def run_cell() -> float:
        ip.run_cell("out = []")
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            result = ip.run_cell(CELL)
        wall = time.perf_counter() - start
        if not result.success or len(ip.user_ns["out"]) != args.items:
            raise RuntimeError(result.error_in_exec or result.error_before_exec)
        return wall

    for _ in range(args.warmup):  # the cluster started, every path warm
        run_cell()
    gc.collect()
    tracked_before = len(gc.get_objects())
    clock = CollectorClock()
    gc.callbacks.append(clock)
    try:
        walls = [run_cell() for _ in range(args.cells)]
    finally:
        gc.callbacks.remove(clock)
    tracked_after = len(gc.get_objects())
    print(json.dumps(_report(args, walls, clock, tracked_before, tracked_after), indent=1))


def _report(args: Any, walls: list[float], clock: CollectorClock, before: int, after: int) -> dict:
    young = clock.spent[0] + clock.spent[1]
    full = clock.spent[2]
    return {
        "cells": args.cells,
        "items": args.items,
        "cell_ms_median": round(statistics.median(walls) * 1e3, 2),
        "cell_ms_mean": round(statistics.mean(walls) * 1e3, 2),
        "young_collections_ms_per_cell": round(sum(young) / args.cells * 1e3, 2),
        "full_collections": len(full),
        "full_collection_ms_each": [round(s * 1e3, 1) for s in full],
        "tracked_objects_at_end": after,
        "tracked_objects_added_per_cell": round((after - before) / args.cells),
    }


if __name__ == "__main__":
    main()
