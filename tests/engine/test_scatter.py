"""Big objects are scattered once and re-used while unchanged, on a real process cluster."""

from __future__ import annotations

import json
import operator
import os
import time
import types
from concurrent.futures import ThreadPoolExecutor

import dask.config
import numpy as np
import pytest
from distributed import Client, LocalCluster

from dask_magic.engine import scatter
from dask_magic.engine.scatter import (
    SCATTER_THRESHOLD,
    ScatterCache,
    fingerprint,
    scatter_threshold,
    should_scatter,
)


@pytest.fixture(scope="module")
def cluster(one_worker_cluster):
    return one_worker_cluster


@pytest.fixture(scope="module")
def client(cluster: LocalCluster):
    with Client(cluster, set_as_default=False) as c:
        yield c


class _ScatterSpy:
    """Counts the real `Client.scatter` calls (the call still goes to the cluster)."""

    def __init__(self, client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = client.scatter

        def counting(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(client, "scatter", counting)


#: Runs on the worker; a stdlib callable, so the worker needs no test module to unpickle it.
_first = operator.itemgetter(0)


# -- should_scatter: pure ---------------------------------------------------------------------


def test_big_objects_are_scattered_and_small_ones_are_not() -> None:
    assert should_scatter(np.zeros(SCATTER_THRESHOLD // 8 + 10), SCATTER_THRESHOLD)
    assert not should_scatter(np.zeros(10), SCATTER_THRESHOLD)
    assert not should_scatter("a short string", SCATTER_THRESHOLD)


@pytest.mark.parametrize("code", [json, json.dumps, dict, print, "x".upper, types.SimpleNamespace])
def test_modules_functions_and_classes_are_never_scattered(code: object) -> None:
    assert not should_scatter(code, 0)


def test_dask_config_overrides_the_threshold() -> None:
    assert scatter_threshold() == SCATTER_THRESHOLD
    with dask.config.set({"dask-magic.scatter-threshold": "100 B"}):
        assert scatter_threshold() == 100
        assert should_scatter(b"x" * 1000)
    assert not should_scatter(b"x" * 1000)


def test_fingerprint_follows_content_not_identity() -> None:
    a = np.arange(1000.0)
    assert fingerprint(a) == fingerprint(a) == fingerprint(a.copy())
    before = fingerprint(a)
    a[500] = -1
    assert fingerprint(a) != before
    table = {"k": [1, 2, 3]}
    before = fingerprint(table)
    table["k"].append(4)
    assert fingerprint(table) != before


def test_a_big_buffer_hashed_in_pieces_sees_a_change_in_any_piece() -> None:
    a = np.zeros(5_000_000)  # 40 MB: three pieces, the last a short one
    before = fingerprint(a)
    assert fingerprint(a.copy()) == before
    for where in (0, 2_500_000, len(a) - 1):  # the first, a middle and the short last piece
        a[where] = 1.0
        assert fingerprint(a) != before
        a[where] = 0.0
    assert fingerprint(a) == before


def test_a_big_buffer_has_one_digest_whatever_the_threads(monkeypatch) -> None:
    a = np.arange(5_000_000.0)
    on_this_machine = fingerprint(a)
    with ThreadPoolExecutor(1) as one_thread:
        monkeypatch.setattr(scatter, "_hashing_pool", lambda: one_thread)
        assert fingerprint(a) == on_this_machine


def test_a_forked_child_hashes_a_big_buffer_with_its_own_threads() -> None:
    a = np.arange(5_000_000.0)
    expected = fingerprint(a)  # the kernel's pool now has its threads
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's verdict is its exit status
        os._exit(0 if fingerprint(a) == expected else 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(child, 9)
    os.waitpid(child, 0)
    pytest.fail("the forked child's fingerprint waited on threads it does not have")


def test_fingerprint_of_an_unpicklable_object_is_none() -> None:
    import threading

    assert fingerprint(threading.Lock()) is None


# -- ScatterCache on a real cluster ---------------------------------------------------------------


def test_same_object_is_scattered_once(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _ScatterSpy(client, monkeypatch)
    cache = ScatterCache()
    big = np.arange(300_000.0)
    first = cache.get(client, "big", big)
    second = cache.get(client, "big", big)
    assert spy.calls == 1
    assert second.key == first.key
    assert client.submit(_first, second).result(timeout=60) == 0.0


def test_in_place_change_is_noticed_and_sent_again(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _ScatterSpy(client, monkeypatch)
    cache = ScatterCache()
    big = np.arange(300_000.0)
    before = cache.get(client, "big", big)
    big[0] = 42.0
    after = cache.get(client, "big", big)
    assert spy.calls == 2
    assert after.key != before.key
    assert client.submit(_first, after).result(timeout=60) == 42.0


def test_a_new_object_under_the_same_name_is_sent_again(client: Client) -> None:
    cache = ScatterCache()
    first = cache.get(client, "big", np.zeros(1000))
    second = cache.get(client, "big", np.ones(1000))
    assert second.key != first.key
    assert client.submit(_first, second).result(timeout=60) == 1.0


def test_a_different_client_gets_its_own_future(client: Client, cluster: LocalCluster) -> None:
    cache = ScatterCache()
    big = np.arange(1000.0)
    ours = cache.get(client, "big", big)
    with Client(cluster, set_as_default=False) as other:
        theirs = cache.get(other, "big", big)
        assert theirs.key != ours.key and theirs.client is other
        assert other.submit(_first, theirs).result(timeout=60) == 0.0
    again = cache.get(client, "big", big)
    assert again.client is client and again.key != theirs.key


def test_entries_of_a_closed_client_are_dropped(client: Client, cluster: LocalCluster) -> None:
    cache = ScatterCache()
    with Client(cluster, set_as_default=False) as short_lived:
        cache.get(short_lived, "gone", np.zeros(10))
    assert "gone" in cache
    cache.get(client, "kept", np.zeros(10))
    assert "gone" not in cache and "kept" in cache


def test_a_lost_future_is_replaced(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _ScatterSpy(client, monkeypatch)
    cache = ScatterCache()
    big = np.arange(1000.0)
    first = cache.get(client, "big", big)
    first.cancel()
    second = cache.get(client, "big", big)
    assert spy.calls == 2
    assert client.submit(_first, second).result(timeout=60) == 0.0


def test_cache_is_bounded_by_entries_and_bytes(client: Client) -> None:
    by_count = ScatterCache(max_entries=2)
    for name in "abc":
        by_count.get(client, name, np.zeros(10))
    assert len(by_count) == 2 and "a" not in by_count

    by_bytes = ScatterCache(max_bytes=20_000)
    by_bytes.get(client, "a", np.zeros(1000))  # 8 kB
    by_bytes.get(client, "b", np.zeros(1000))
    by_bytes.get(client, "c", np.zeros(1000))
    assert "a" not in by_bytes and "c" in by_bytes


def test_discard_and_clear_forget_entries(client: Client) -> None:
    cache = ScatterCache()
    cache.get(client, "a", np.zeros(10))
    cache.get(client, "b", np.zeros(10))
    cache.discard("a")
    assert "a" not in cache and len(cache) == 1
    cache.clear()
    assert len(cache) == 0
