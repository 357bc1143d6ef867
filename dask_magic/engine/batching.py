"""How many items go into one task (pure functions, unit-tested without a cluster).

One task per item costs a scheduler round trip per item (about a millisecond): fine for files
that take a second each, ruinous for 10,000 items of a microsecond. Like joblib's
auto-batching, dask-magic first runs a *probe* wave of single items, measures how long an item
takes on the workers, then groups the remaining items so that a task lasts about
`TARGET_TASK_SECONDS`, while still leaving every worker thread several tasks to balance the
load at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: A task should run at least this long for the per-task overhead to stay below ~1 %.
TARGET_TASK_SECONDS = 0.2
#: ... but every thread should get at least this many tasks, for balance and live progress.
MIN_TASKS_PER_THREAD = 2
#: Below this many items per thread, every item is its own task from the start.
SMALL_RUN_PER_THREAD = 4


def chunk(pairs: Sequence[T], size: int) -> list[list[T]]:
    """``pairs`` in consecutive chunks of ``size`` (the last may be shorter)."""
    size = max(1, size)
    return [list(pairs[i : i + size]) for i in range(0, len(pairs), size)]


def probe_count(n_items: int, threads: int, batch: int | str) -> int:
    """How many items to send first, one per task; ``n_items`` means "all, no probing"."""
    threads = max(1, threads)
    if batch != "auto" or n_items <= SMALL_RUN_PER_THREAD * threads:
        return n_items
    return min(n_items, 2 * threads)


def first_wave(pairs: Sequence[T], threads: int, batch: int | str) -> tuple[list[list[T]], list[T]]:
    """The batches to submit now and the items held back until the probe has been measured."""
    if batch != "auto":
        return chunk(pairs, int(batch)), []
    n = probe_count(len(pairs), threads, batch)
    return chunk(pairs[:n], 1), list(pairs[n:])


def batch_size(seconds_per_item: float, remaining: int, threads: int) -> int:
    """Items per task for the rest of the run, given the probe's median time per item."""
    if remaining <= 0:
        return 1
    threads = max(1, threads)
    by_time = TARGET_TASK_SECONDS / max(seconds_per_item, 1e-7)
    by_balance = math.ceil(remaining / (MIN_TASKS_PER_THREAD * threads))
    return max(1, min(int(by_time), by_balance))


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def parse_batch(value: Any) -> int | str:
    """``--batch auto`` or a positive integer."""
    if value in (None, "auto"):
        return "auto"
    size = int(value)
    if size < 1:
        raise ValueError("--batch takes 'auto' or a positive number of items per task")
    return size
