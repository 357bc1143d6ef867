"""The first wave, guided task sizes, time-boxed batches and the columns a batch travels as."""

from __future__ import annotations

import cloudpickle
import pytest

from dask_magic.engine import batching, execute, worker
from dask_magic.engine.results import STASHED
from dask_magic.rewrite import rewrite_loop


@pytest.mark.parametrize(
    ("n", "threads", "tasks", "held"),
    [
        (5, 2, 5, 0),  # a small run: one item per task, nothing timed
        (10_000, 2, 2, 0),  # many items per thread: one share each
        (16, 2, 4, 0),  # few items per thread: two shares each
        (200, 16, 29, 0),
        (100_000, 2, 2, 100_000 - 2 * batching.FIRST_WAVE_MAX_ITEMS),  # shares are capped
    ],
)
def test_timed_first_wave_shapes(n, threads, tasks, held):
    wave, rest, budget = batching.timed_first_wave(list(range(n)), threads, "auto")
    assert len(wave) == tasks and len(rest) == held
    assert [x for b in wave for x in b] + rest == list(range(n))  # every item once, in order
    assert (budget is None) == (n <= batching.SMALL_RUN_PER_THREAD * threads)


def test_timed_first_wave_with_a_fixed_batch_is_not_timed():
    wave, rest, budget = batching.timed_first_wave(list(range(10)), 2, 4)
    assert [len(b) for b in wave] == [4, 4, 2] and rest == [] and budget is None


@pytest.mark.parametrize(
    ("per_item", "n", "threads"),
    [
        (0.007, 170, 2),
        (0.1, 14, 2),
        (1e-6, 90_000, 2),
        (0.1, 96, 16),
        (2.0, 3, 4),
        (0.0, 50, 1),
    ],
)
def test_guided_sizes_cover_everything_and_shrink(per_item, n, threads):
    sizes = batching.guided_sizes(per_item, n, threads)
    assert sum(sizes) == n and min(sizes) >= 1
    assert sizes == sorted(sizes, reverse=True) or sizes[-1] < sizes[0]
    assert max(sizes) <= max(1, -(-n // threads))  # never more than a thread's share
    largest = max(1, round(batching.TARGET_TASK_SECONDS / max(per_item, 1e-7)))
    assert max(sizes) <= largest


def test_guided_sizes_end_small():
    sizes = batching.guided_sizes(0.007, 170, 2)
    assert sizes[0] == round(batching.TARGET_TASK_SECONDS / 0.007) and sizes[-1] <= 3


def test_items_a_little_over_a_tenth_of_a_second_still_run_two_to_a_task():
    # a worker sharing its core runs 0.1 s items in 0.104 s: the old floor made them singles
    assert batching.rest_sizes(0.104, 2, 8, 2) == [2]


def test_a_first_wave_task_runs_two_items_of_a_tenth_of_a_second():
    # the worker starts items until the budget is spent: 0.1 s items run two to a task (as
    # a tuned process pool's chunks), not one per task with three of four sent back
    budget = batching.FIRST_WAVE_SECONDS
    assert 0.1 < budget < 0.2 and budget <= batching.TARGET_TASK_SECONDS


def test_a_tail_is_cut_from_the_plan_for_everything_outstanding():
    # 16 items of 0.1 s on 2 threads: the first tail back (2 items) while 9 more may follow
    assert batching.rest_sizes(0.1, 2, 11, 2) == [2]
    assert batching.guided_sizes(0.1, 2, 2) == [1, 1]  # the old rule: cut as the run's end
    # 200 files of 25 ms: a tail of 44 while three first-wave tasks still run
    assert batching.rest_sizes(0.025, 44, 191, 2) == [8, 8, 8, 8, 8, 4]


def test_a_timed_task_is_expected_to_send_back_what_its_budget_leaves_unrun():
    budget = batching.FIRST_WAVE_SECONDS
    assert batching.expected_unrun(4, 0.09, budget) == 2  # runs two 0.09 s items, not one
    assert batching.expected_unrun(4, 1.0, budget) == 3  # a slow item: one runs
    assert batching.expected_unrun(4, 1e-6, budget) == 0  # tiny items: the whole share runs
    assert batching.expected_unrun(4, 0.0, budget) == 3  # nothing measured yet: the old count


def test_the_tails_of_sixteen_tenth_second_items_end_in_single_items():
    # 16 x 0.1 s on 2 threads, a first wave of 4 tasks of 4 that each run 2 items: the last
    # tails back must be cut as the run's end (singles), or one thread ends an item behind
    budget = batching.FIRST_WAVE_SECONDS
    still_out = batching.expected_unrun(4, 0.1, budget)
    first = batching.rest_sizes(0.1, 4, 4 + 2 * still_out, 2)  # tasks 1 and 2 back together
    second = batching.rest_sizes(0.1, 2, 2 + still_out, 2)  # then task 3, task 4 running
    last = batching.rest_sizes(0.1, 2, 2, 2)
    assert (first, second, last) == ([2, 2], [1, 1], [1, 1])


@pytest.mark.parametrize(
    ("per_item", "n", "outstanding", "threads"),
    [(0.1, 2, 2, 2), (0.1, 3, 20, 2), (0.007, 170, 500, 2), (1e-6, 9000, 9000, 2), (0.0, 5, 9, 1)],
)
def test_rest_sizes_cover_the_tail(per_item, n, outstanding, threads):
    sizes = batching.rest_sizes(per_item, n, outstanding, threads)
    assert sum(sizes) == n and min(sizes) >= 1
    plan = batching.guided_sizes(per_item, outstanding, threads)
    assert max(sizes) <= max(plan)
    if n == outstanding:  # nothing else to come: the run's own guided end
        assert sizes == plan


def test_chunk_sizes():
    assert batching.chunk_sizes(list(range(6)), [3, 2, 1]) == [[0, 1, 2], [3, 4], [5]]


def _job(cell: str, env=None):
    plan = rewrite_loop(cell, filename="<cell>", line_offset=1)
    return execute.make_job({"kind": "loop", "code": plan.body_code(), "env": env or {}})


def test_a_budget_runs_a_head_of_the_batch():
    import time

    job = _job("for x in items:\n    time.sleep(0.02)\n    out.append(x)\n", {"time": time})
    pairs = list(enumerate(range(50)))
    out = worker.run_batch(job.token, job.blob, {}, pairs, 49, "k", "w", 0, False, budget=0.01)
    assert 1 <= len(out) < 50
    assert [o.index for o in out] == list(range(len(out)))
    worker.drop_stash("k")


def test_columns_round_trip_keeps_every_field():
    cell = (
        "for x in items:\n"
        "    y = x * 2\n"
        "    if x == 1:\n"
        "        print('one')\n"
        "    if x == 2:\n"
        "        raise ValueError('two')\n"
        "    out.append(y)\n"
    )
    job = _job(cell)
    pairs = list(enumerate([0, 1, 2, 3]))
    blob = worker.run_batch(job.token, job.blob, {}, pairs, 3, "run-cols", "w1")
    a, b, c, d = cloudpickle.loads(blob)
    assert [o.status for o in (a, b, c, d)] == ["done", "done", "failed", "done"]
    assert a.bound == {"x": STASHED, "y": STASHED} and d.bound == {"x": 3, "y": 6}
    assert b.stdout == "one\n" and a.stdout == "" and c.error.summary == "ValueError: two"
    assert list(a.ops) == [("call", "out", (), "append", (0,), None)] and not c.ops
    assert {o.worker for o in (a, b, c, d)} == {"w1"}
    assert a.bound is b.bound  # one dict per shape: the kernel replaces it with fetched values
    assert worker.fetch_stash("run-cols", {"y": 1}) == {"y": 2}


def test_the_stash_keeps_the_last_binding_of_each_name_across_shapes():
    cell = "for x in items:\n    if x % 2:\n        odd = x\n    else:\n        even = x\n"
    job = _job(cell)
    worker.run_batch(job.token, job.blob, {}, list(enumerate(range(6))), 99, "run-shapes", "w")
    assert worker.fetch_stash("run-shapes", {"odd": 5, "even": 4, "x": 5}) == {
        "odd": 5,
        "even": 4,
        "x": 5,
    }
