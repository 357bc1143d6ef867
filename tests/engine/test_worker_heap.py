"""A worker process freezes its heap (``gc.freeze``) once, at its first task of ours, and
never the kernel (a real one-worker LocalCluster)."""

from __future__ import annotations

import gc

import pytest
from distributed import Client

import dask_magic


@pytest.fixture(scope="module")
def client(one_worker_cluster):
    with Client(one_worker_cluster) as made:
        yield made


def _frozen() -> int:
    import gc

    return gc.get_freeze_count()


def test_a_worker_freezes_what_it_held_before_its_first_task_once(client):
    (before,) = client.run(_frozen).values()
    assert before == 0  # a fresh worker: nothing of ours ran there yet
    run = dask_magic.parallel_for(abs, range(-50, 50), client=client)
    assert run.results == [abs(x) for x in range(-50, 50)]
    (after_first,) = client.run(_frozen).values()
    assert after_first > 1000  # the worker's own objects and its imports
    dask_magic.parallel_for(abs, range(-50, 50), client=client)
    (after_second,) = client.run(_frozen).values()
    # once: what later tasks leave is collected as usual (frozen objects freed leave the count)
    assert after_second <= after_first


def test_the_kernel_is_never_frozen():
    assert dask_magic.parallel_for(abs, range(-5, 5), serial=True).results == list(
        range(5, 0, -1)
    ) + list(range(5))
    assert gc.get_freeze_count() == 0
