"""`dask_magic.parallel_for` for scripts: results in order, failures kept, retry."""

from __future__ import annotations

import dask_magic
from dask_magic.engine.results import RunStatus


def flaky_half(x):
    if x % 2:
        raise ValueError(f"odd {x}")
    return x * 10


def test_parallel_for_on_the_local_cluster():
    run = dask_magic.parallel_for(flaky_half, range(10))
    assert run.status is RunStatus.FAILED
    assert run.results == [0, 20, 40, 60, 80]
    assert [f.index for f in run.failures] == [1, 3, 5, 7, 9]
    assert run.failures[0].error.summary == "ValueError: odd 1"
    run.retry(fn=lambda x: x * 10)
    assert run.status is RunStatus.FINISHED and run.results == [x * 10 for x in range(10)]


def test_parallel_for_serial_runs_in_process():
    run = dask_magic.parallel_for(len, ["a", "bb", "ccc"], serial=True)
    assert run.results == [1, 2, 3] and run.outcomes[0].worker == "kernel"


def test_ten_thousand_tiny_items_are_batched():
    run = dask_magic.parallel_for(abs, range(-5000, 5000))
    assert run.counts.done == 10_000 and run.results[:3] == [5000, 4999, 4998]
