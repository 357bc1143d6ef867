"""How many items go into one task (pure functions, unit-tested without a cluster).

One task per item costs a scheduler round trip per item (about a millisecond): fine for files
that take a second each, ruinous for 10,000 items of a microsecond. Like joblib's
auto-batching, dask-magic measures how long an item takes on the workers, then groups the
remaining items so that a task lasts about `TARGET_TASK_SECONDS`, while still leaving every
worker thread several tasks to balance the load at the end.

The measuring is itself work: the *first wave* (`timed_first_wave`) hands every thread two
tasks that hold a share of the items each, with a time budget of `FIRST_WAVE_SECONDS`. A task
runs items until its budget is spent and returns the ones it did not start. Tiny items are all
done in the first wave (no second round trip, no probe that waits for itself); slow items run
one or a few per task and the rest come back to be batched by their measured time, each tail
cut from one guided plan for every item not yet handed out (`rest_sizes`). Only when
the first wave would ship too much data (big items) does the run fall back to a probe of
single items (`first_wave`), so that no item travels twice.
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
#: A first-wave task stops starting items once it has run this long: three quarters of a task's
#: target, so that items of about 0.1 s run two to a task (as a tuned process pool's chunks)
#: and only the tail comes back, instead of one item per task and three of four sent back.
FIRST_WAVE_SECONDS = 0.75 * TARGET_TASK_SECONDS
#: First-wave tasks per thread: two, so that a thread has the second to run while the kernel
#: sends the tail of the first again; one when there are so many items per thread that they
#: are likely tiny (then every task is a round trip that costs more than it hides).
FIRST_WAVE_TASKS_PER_THREAD = 2
MANY_ITEMS_PER_THREAD = 1000
#: The time per item that sizes the tails is the median of up to this many items' durations
#: (every tail is sized when it comes back: one slow first item does not size them all).
PROBE_SAMPLES = 64
#: No task shorter than this (by the measured time per item), except at the very end.
MIN_TASK_SECONDS = 0.02
#: At most this many items per first-wave task (a million tiny items are not all sent at once).
FIRST_WAVE_MAX_ITEMS = 8192
#: The first wave ships at most this many pickled bytes; above it, single-item probes.
FIRST_WAVE_MAX_BYTES = 4 * 2**20


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


def timed_first_wave(
    pairs: Sequence[T], threads: int, batch: int | str
) -> tuple[list[list[T]], list[T], float | None]:
    """The first wave, the items held back, and the wave's time budget per task (or None).

    With ``--batch N`` everything goes at once and nothing is timed; a small run is one item
    per task; otherwise every thread gets `FIRST_WAVE_TASKS_PER_THREAD` tasks (one when there
    are at least `MANY_ITEMS_PER_THREAD` items per thread) of an equal share (at most
    `FIRST_WAVE_MAX_ITEMS` each), to be run until `FIRST_WAVE_SECONDS` are spent.
    """
    if batch != "auto":
        return chunk(pairs, int(batch)), [], None
    threads = max(1, threads)
    n = len(pairs)
    if n <= SMALL_RUN_PER_THREAD * threads:
        return chunk(pairs, 1), [], None
    per_thread = 1 if n >= MANY_ITEMS_PER_THREAD * threads else FIRST_WAVE_TASKS_PER_THREAD
    tasks = per_thread * threads
    per_task = min(math.ceil(n / tasks), FIRST_WAVE_MAX_ITEMS)
    sent = min(n, tasks * per_task)
    return chunk(pairs[:sent], per_task), list(pairs[sent:]), FIRST_WAVE_SECONDS


def guided_sizes(seconds_per_item: float, n: int, threads: int) -> list[int]:
    """Task sizes for ``n`` items, largest first, shrinking towards the end of the run.

    Guided self-scheduling: each task takes a ``1 / (MIN_TASKS_PER_THREAD * threads)`` share of
    what is left, within `MIN_TASK_SECONDS` .. `TARGET_TASK_SECONDS` of measured work, and no
    more than a thread's fair share. Big tasks early keep the per-task cost low; small tasks
    last mean the threads finish together (the run does not wait for one long last task).
    """
    threads = max(1, threads)
    per_item = max(seconds_per_item, 1e-7)
    # rounded, not floored: items of 0.104 s on a busy worker still run two to a task
    largest = max(1, round(TARGET_TASK_SECONDS / per_item))
    smallest = max(1, math.ceil(MIN_TASK_SECONDS / per_item))
    fair = max(1, math.ceil(n / threads))
    sizes = []
    left = n
    while left > 0:
        size = math.ceil(left / (MIN_TASKS_PER_THREAD * threads))
        size = min(max(size, smallest), largest, fair, left)
        sizes.append(size)
        left -= size
    return sizes


def rest_sizes(seconds_per_item: float, n: int, outstanding: int, threads: int) -> list[int]:
    """Task sizes for ``n`` items now, out of ``outstanding`` items not yet handed out.

    The tails of the first wave come back one task at a time: sizing each tail on its own
    would cut it as if it were the end of the run (many small tasks, each a scheduler round
    trip). The guided plan is made for everything still to hand out, and this tail takes its
    head: big tasks while much is left, small ones at the very end.
    """
    plan = guided_sizes(seconds_per_item, max(n, outstanding), threads)
    sizes, left = [], n
    for size in plan:
        if left <= 0:
            break
        sizes.append(min(size, left))
        left -= sizes[-1]
    return sizes


def expected_unrun(size: int, seconds_per_item: float, budget: float) -> int:
    """How many items of a timed first-wave task of ``size`` items will come back unrun.

    The task starts items until ``budget`` is spent, so it runs about
    ``ceil(budget / seconds_per_item)`` of them (at least one). Counting every item but one
    as outstanding made the tails look bigger than they were: the tail back first was cut as
    if much were left (one task of 2 where two of 1 were due), and the run ended with one
    thread an item behind the other.
    """
    if seconds_per_item <= 0:
        return max(0, size - 1)
    runs = max(1, math.ceil(budget / seconds_per_item))
    return max(0, size - runs)


def chunk_sizes(pairs: Sequence[T], sizes: Sequence[int]) -> list[list[T]]:
    """``pairs`` cut into consecutive chunks of ``sizes``."""
    chunks, start = [], 0
    for size in sizes:
        chunks.append(list(pairs[start : start + size]))
        start += size
    return chunks


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
