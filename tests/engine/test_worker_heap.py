"""A worker process freezes its heap (``gc.freeze``) once, at its first task of ours, and
never the kernel (a real one-worker LocalCluster)."""

from __future__ import annotations

import gc

import pytest
from distributed import Client, LocalCluster

import dask_magic


@pytest.fixture(scope="module")
def client(one_worker_cluster):
    with Client(one_worker_cluster) as made:
        yield made


def _frozen() -> tuple[bool, int]:
    import gc

    from dask_magic.engine import tasks

    return tasks._HEAP_FROZEN, gc.get_freeze_count()


def test_a_worker_freezes_what_it_held_before_its_first_task_once(client):
    # a fresh worker: nothing of ours ran there yet. Its count need not be 0: CPython 3.12
    # starts with a few hundred of its own objects in the permanent generation
    ((was_frozen, before),) = client.run(_frozen).values()
    assert not was_frozen
    run = dask_magic.parallel_for(abs, range(-50, 50), client=client)
    assert run.results == [abs(x) for x in range(-50, 50)]
    ((is_frozen, after_first),) = client.run(_frozen).values()
    assert is_frozen
    assert after_first > before + 1000  # the worker's own objects and its imports
    dask_magic.parallel_for(abs, range(-50, 50), client=client)
    ((_, after_second),) = client.run(_frozen).values()
    # once: what later tasks leave is collected as usual (frozen objects freed leave the count)
    assert after_second <= after_first


def test_the_kernel_is_never_frozen():
    at_start = gc.get_freeze_count()  # CPython 3.12 starts above 0
    assert dask_magic.parallel_for(abs, range(-5, 5), serial=True).results == list(
        range(5, 0, -1)
    ) + list(range(5))
    assert gc.get_freeze_count() == at_start


def test_a_worker_of_threads_in_the_kernels_process_does_not_freeze_it():
    at_start = gc.get_freeze_count()
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as threads,
        Client(threads) as client,
    ):
        run = dask_magic.parallel_for(abs, range(-50, 50), client=client)
        assert run.results == [abs(x) for x in range(-50, 50)]
    assert gc.get_freeze_count() == at_start
