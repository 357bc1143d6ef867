"""Results sent back with their task's completion (`result_push`), on a real LocalCluster.

The task below sends one blob and returns another, so the test can tell which way its
result came: pushed with the completion, or gathered afterwards.
"""

from __future__ import annotations

import queue

import pytest
from distributed import Client

from dask_magic.engine import result_push
from dask_magic.engine.tasks import when_done


def _push_then_return(size: int, client_id: str | None) -> bytes:
    from distributed import get_worker

    from dask_magic.engine import result_push

    if client_id is not None:
        result_push.send(get_worker(), client_id, b"p" * size)
    return b"returned"


@pytest.fixture(scope="module")
def client(one_worker_cluster):
    with Client(one_worker_cluster) as made:
        yield made


def _watched(client: Client, *args) -> tuple[dict, object]:
    """Submit the task, watch it as a pass does; what ended up fetched, and the future."""
    fetched: dict = {}
    done: queue.SimpleQueue = queue.SimpleQueue()
    future = client.submit(_push_then_return, *args, pure=False)
    when_done(client, [future], done.put, fetched)
    assert done.get(timeout=60) is future
    return fetched, future


def test_a_scheduler_in_this_process_gets_the_handler_and_the_client_its_id(client):
    assert result_push.target(client) == client.id
    assert result_push.OP in client.cluster.scheduler.stream_handlers


def test_a_small_result_arrives_with_the_completion_and_needs_no_gather(client):
    to = result_push.target(client)
    fetched, future = _watched(client, 1000, to)
    assert fetched == {future.key: b"p" * 1000}  # the pushed blob, not the returned one
    assert future.key not in result_push._EXPECTED  # the watch ended: a late push is dropped


def test_a_big_result_is_gathered(client):
    to = result_push.target(client)
    fetched, future = _watched(client, result_push.PUSH_MAX_BYTES + 1, to)
    assert fetched == {future.key: b"returned"}


def test_a_task_told_nothing_is_gathered(client):
    fetched, future = _watched(client, 10, None)
    assert fetched == {future.key: b"returned"}


def test_pushes_keep_the_worker_connected(client):
    before = dict(client.run(lambda: __import__("os").getpid()))
    to = result_push.target(client)
    for _ in range(20):
        _watched(client, 10, to)
    assert dict(client.run(lambda: __import__("os").getpid())) == before


def test_a_push_is_filed_while_its_watch_waits_and_dropped_after():
    fetched: dict = {}
    result_push.expect("k", fetched)
    result_push._received((0.0, {"key": "k", "blob": memoryview(b"first")}))
    assert fetched == {"k": b"first"} and isinstance(fetched["k"], bytes)
    result_push.forget("k")
    result_push._received((0.0, {"key": "k", "blob": b"late"}))
    assert fetched == {"k": b"first"}


def test_the_config_switch_turns_it_off(client):
    import dask.config

    with dask.config.set({"dask-magic.push-results": False}):
        assert result_push.target(client) is None
    assert result_push.target(client) == client.id


def test_a_client_by_address_gets_no_pushes(one_worker_cluster):
    """The scheduler could be anywhere: it may lack the handler, so nothing is pushed."""
    with Client(one_worker_cluster.scheduler_address) as by_address:
        assert result_push.target(by_address) is None
