"""The work every peer runs: one function per workload, importable by spawned processes.

`run.py` puts this folder on ``PYTHONPATH`` before any worker process starts, so Dask
workers, loky, ``ProcessPoolExecutor`` and ``multiprocessing.Pool`` children all import
these functions by name (nothing travels by value, for any peer). The ``%%parallel_for``
cells import the same functions, except where the workload is the loop body itself (the file
loop and the tiny items are written inline, as users write them).
"""

from __future__ import annotations

import time
from typing import Any

# -- 1. tiny items -----------------------------------------------------------------------------


def inc(x: int) -> int:
    return x + 1


def inc_slice(xs: list[int]) -> list[int]:
    return [x + 1 for x in xs]


# -- 2. CPU-bound ------------------------------------------------------------------------------


def cpu_work(seed: int, iterations: int) -> int:
    """Pure-Python arithmetic (holds the GIL): about 0.1 s for the calibrated ``iterations``."""
    total = seed
    for i in range(iterations):
        total = (total * 31 + i) % 1_000_003
    return total


def calibrate_cpu(target_seconds: float = 0.1) -> int:
    """Iterations of `cpu_work` that take about ``target_seconds`` here (median of 5)."""
    probe = 200_000
    times = []
    for _ in range(5):
        start = time.perf_counter()
        cpu_work(0, probe)
        times.append(time.perf_counter() - start)
    times.sort()
    return max(1000, int(probe * target_seconds / times[2]))


# -- 3. file loop ------------------------------------------------------------------------------


def summarize(path: str) -> Any:
    """The per-file work: ``read_csv`` + groupby (raises on a corrupt file)."""
    import pandas as pd

    df = pd.read_csv(path)
    return df.groupby("key")["value"].sum()


def summarize_safe(path: str) -> tuple[str, Any]:
    """`summarize` with the error captured per item, as every peer must.

    No run dies of one bad file.
    """
    try:
        return "ok", summarize(path)
    except Exception as exc:  # the peer's own per-item error capture
        return "error", f"{type(exc).__name__}: {exc}"


# -- 4. big object -----------------------------------------------------------------------------


def big_item(big: Any, x: int) -> float:
    """Touches the big array (so it must be on the worker) and does almost nothing else."""
    return float(big[(x * 7919) % len(big)])


def big_item_x(x: int, big: Any) -> float:
    """`big_item` with the item first, for ``Client.map(big_item_x, items, big=big)``."""
    return big_item(big, x)


# -- physical limit: pre-started workers, all items handed out in advance, one message back ---


def physical_worker(conn: Any, counter: Any) -> None:
    """Loop of a pre-started process: ``("load", obj)`` keeps an object (the big array, sent
    before the clock starts); ``("run", kind, items, args, mode, share)`` receives every item
    before the clock starts, then, on the start signal, runs items and sends back one message;
    ``None`` ends.

    Which items a process runs (``mode``): ``"static"`` runs its ``share`` (equal shares, handed
    out in advance: nothing shared at all); ``"one"`` takes one item at a time from ``counter``,
    a lock-protected integer in shared memory; ``"guided"`` takes a guided chunk from it (half
    of its fair share of what is left). The counter balances uneven items and uneven cores as
    any scheduler would, without a message per item.
    """
    kept: dict[str, Any] = {}
    while True:
        message = conn.recv()
        if message is None:
            return
        if message[0] == "load":
            kept["big"] = message[1]
            conn.send("loaded")
            continue
        _, kind, items, args, mode, share, processes = message
        conn.send("ready")
        conn.recv_bytes()  # the start signal: the clock runs from here
        if mode == "static":
            conn.send(_run_all(kind, share, args, kept))
            continue
        done: list[Any] = []
        while True:
            with counter.get_lock():
                start = counter.value
                left = len(items) - start
                size = 1 if mode == "one" else max(1, left // (2 * processes))
                counter.value = start + size
            if left <= 0:
                break
            done += _run_all(kind, items[start : start + size], args, kept)
        conn.send(done)


def _run_all(kind: str, items: list[Any], args: dict[str, Any], kept: dict[str, Any]) -> list:
    if kind == "tiny":
        return inc_slice(items)
    return [_run_one(kind, item, args, kept) for item in items]


def _run_one(kind: str, item: Any, args: dict[str, Any], kept: dict[str, Any]) -> Any:
    if kind == "cpu":
        return cpu_work(item, args["iterations"])
    if kind == "files":
        return summarize_safe(item)
    if kind == "big":
        return big_item(kept["big"], item)
    raise ValueError(kind)
