"""Which cluster a run uses: precedence, re-use, sizing, loopback-only sockets, errors.

These start real clusters with worker processes; each start costs seconds on a small
machine, so tests share the local cluster where they can and only `test_close...` and
`test_threads...` start fresh ones.
"""

from __future__ import annotations

import os
import sys

import dask.config
import psutil
import pytest
from distributed import Client, LocalCluster
from helpers import close_own_cluster, free_port

from dask_magic.engine.cluster import (
    MEMORY_ENV_VAR,
    MIN_WORKER_MEMORY,
    close_cluster,
    cluster_info,
    current_cluster_info,
    get_client,
    restart_cluster,
)
from dask_magic.engine.handoffs import SWITCH_INTERVAL
from dask_magic.engine.local_cluster import local_cluster_size, memory_budget
from dask_magic.errors import ClusterError

GB = 1_000_000_000
PYTHON_SWITCH_INTERVAL = 0.005  # CPython's default: nothing in the suite changes it


@pytest.fixture(autouse=True)
def _no_scheduler_from_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    with dask.config.set({"scheduler-address": None}):
        yield


@pytest.fixture(scope="module", autouse=True)
def _close_ours_at_the_end():
    yield
    close_cluster()


@pytest.fixture(scope="module")
def user_cluster():
    """A cluster the *user* made: in-process, and never closed by dask-magic."""
    made = LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, dashboard_address="127.0.0.1:0"
    )
    yield made
    close_own_cluster(made)


# -- sizing: pure --------------------------------------------------------------------------


@pytest.mark.parametrize("cpus", [1, 2, 4, 16, 64])
def test_a_2gb_binder_box_gets_one_or_two_workers_with_a_gib_each(cpus: int) -> None:
    size = local_cluster_size(cpus, memory_budget({MEMORY_ENV_VAR: "2GB"}))
    assert 1 <= size.workers <= 2
    assert size.memory_limit >= 0.9 * MIN_WORKER_MEMORY
    assert size.threads == 1


def test_size_is_bounded_by_cores_and_by_memory() -> None:
    assert local_cluster_size(16, 64 * 2**30) == (16, 1, 4 * 2**30)
    assert local_cluster_size(16, 3 * 2**30).workers == 3
    assert local_cluster_size(2, 64 * 2**30).workers == 2
    assert local_cluster_size(8, 64 * 2**30, threads=4)[:2] == (2, 4)
    assert local_cluster_size(1, 100).workers == 1  # never zero, however small


def test_explicit_workers_win_and_share_the_memory() -> None:
    size = local_cluster_size(2, 12 * GB, workers=3)
    assert size.workers == 3
    assert size.memory_limit == 4 * GB


def test_memory_budget_reads_the_environment_variable() -> None:
    assert memory_budget({MEMORY_ENV_VAR: "2GB"}) == 2 * GB
    assert memory_budget({MEMORY_ENV_VAR: "3 GiB"}) == 3 * 2**30
    with pytest.raises(ClusterError, match=MEMORY_ENV_VAR):
        memory_budget({MEMORY_ENV_VAR: "lots"})


def test_detected_budget_leaves_room_and_never_exceeds_the_machine() -> None:
    budget = memory_budget({})
    assert 0 < budget < psutil.virtual_memory().total


# -- the local cluster ----------------------------------------------------------------------


def test_second_call_reuses_the_same_client_and_cluster(capfd: pytest.CaptureFixture) -> None:
    first = get_client()
    capfd.readouterr()
    second = get_client()
    assert second is first
    assert second.scheduler.address == first.scheduler.address
    info = cluster_info(second)
    assert info.local and info.workers >= 1 and info.threads == info.workers
    assert info.memory > 0
    assert "already in use" not in capfd.readouterr().err


def test_only_one_local_cluster_is_ever_running() -> None:
    clients = {id(get_client()) for _ in range(3)}
    assert len(clients) == 1
    ours = [
        c
        for c in LocalCluster._instances
        if c.status.name == "running" and c.scheduler_address == get_client().scheduler.address
    ]
    assert len(ours) == 1


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1].split("/")[0])


def _listening(pids: set[int]) -> list[tuple[int, str, int]]:
    return [
        (pid, conn.laddr.ip, conn.laddr.port)
        for pid in pids
        for conn in psutil.Process(pid).net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]


def test_scheduler_dashboard_and_workers_listen_on_loopback_only() -> None:
    client = get_client()
    info = cluster_info(client)
    assert info.scheduler.startswith("tcp://127.0.0.1:")
    assert info.dashboard is not None and info.dashboard.startswith("http://127.0.0.1:")
    workers = client.scheduler_info(n_workers=-1)["workers"]
    # Scheduler, dashboard and nannies live in this process, next to whatever else the test
    # session opened; worker processes are wholly ours.
    ports = {_port(info.scheduler), _port(info.dashboard)}
    ports |= {_port(w["nanny"]) for w in workers.values()}
    worker_pids = set(client.run(os.getpid).values())
    ours = [
        entry
        for entry in _listening({os.getpid(), *worker_pids})
        if entry[0] in worker_pids or entry[2] in ports
    ]
    assert ports <= {port for _, _, port in ours}, (ports, ours)
    assert {_port(address) for address in workers} <= {port for _, _, port in ours}
    assert {ip for _, ip, _ in ours} <= {"127.0.0.1", "::1"}, ours


def test_current_cluster_info_starts_nothing_and_reports_the_last_cluster() -> None:
    client = get_client()
    assert current_cluster_info() == cluster_info(client)


def test_workers_scale_the_running_cluster_in_place() -> None:
    client = get_client(workers=1)
    assert cluster_info(client).workers == 1
    assert get_client(workers=2) is client
    assert cluster_info(client).workers == 2
    assert get_client() is client and cluster_info(client).workers == 2


def test_restart_keeps_the_cluster_and_returns_its_info() -> None:
    client = get_client()
    info = restart_cluster()
    assert info is not None and info.local
    assert info.scheduler == client.scheduler.address
    assert get_client() is client


def test_threads_restart_the_local_cluster_with_that_many_threads() -> None:
    before = get_client(workers=1)
    after = get_client(workers=1, threads=2)
    assert after is not before and before.status == "closed"
    info = cluster_info(after)
    assert (info.workers, info.threads) == (1, 2)
    assert get_client() is after  # remembered: no restart back to one thread


def test_close_closes_ours_and_the_next_call_starts_a_fresh_one() -> None:
    old = get_client()
    old_address = old.scheduler.address
    assert sys.getswitchinterval() == SWITCH_INTERVAL  # its scheduler shares our GIL
    assert close_cluster() is True
    assert old.status == "closed"
    assert current_cluster_info() is None
    assert sys.getswitchinterval() == PYTHON_SWITCH_INTERVAL  # Python's own again
    assert close_cluster() is False  # nothing of ours left
    fresh = get_client()
    assert sys.getswitchinterval() == SWITCH_INTERVAL
    assert fresh is not old and fresh.status == "running"
    assert fresh.scheduler.address != old_address
    assert cluster_info(fresh).local


# -- other sources, in precedence order ---------------------------------------------------------


def test_explicit_client_is_used_as_is(user_cluster: LocalCluster) -> None:
    with Client(user_cluster, set_as_default=False) as mine:
        assert get_client(client=mine) is mine
        assert cluster_info(mine).local is False


def test_explicit_cluster_object_is_wrapped_once(
    user_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", f"tcp://127.0.0.1:{free_port()}")
    wrapped = get_client(client=user_cluster, scheduler="tcp://127.0.0.1:1")
    assert wrapped.scheduler.address == user_cluster.scheduler_address
    assert get_client(client=user_cluster) is wrapped


def test_close_cluster_never_closes_the_users_cluster(user_cluster: LocalCluster) -> None:
    wrapped = get_client(client=user_cluster)
    close_cluster()
    assert wrapped.status == "closed"  # our Client on it, yes
    assert user_cluster.status.name == "running"  # their cluster, no
    assert get_client(client=user_cluster).status == "running"


def test_not_a_client_is_refused_with_what_was_given() -> None:
    with pytest.raises(ClusterError, match="not int"):
        get_client(client=42)


def test_existing_default_client_comes_before_a_local_cluster(user_cluster: LocalCluster) -> None:
    with Client(user_cluster) as users_default:  # set_as_default=True, as a user would
        assert get_client() is users_default
    assert get_client() is not users_default
    assert cluster_info(get_client()).local


def test_scheduler_address_connects_and_is_cached() -> None:
    local = get_client()
    address = local.scheduler.address
    by_address = get_client(scheduler=address.removeprefix("tcp://"))
    assert by_address is not local
    assert by_address.scheduler.address == address
    assert get_client(scheduler=address) is by_address
    assert cluster_info(by_address).local is False


def test_environment_variable_comes_before_the_default_client(
    user_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = get_client().scheduler.address
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
    with Client(user_cluster):
        assert get_client().scheduler.address == address


def test_dask_config_scheduler_address_is_honoured() -> None:
    address = get_client().scheduler.address
    with dask.config.set({"scheduler-address": address}):
        chosen = get_client()
    assert chosen.scheduler.address == address and not cluster_info(chosen).local


def test_workers_for_a_cluster_we_do_not_own_are_ignored_with_a_warning() -> None:
    address = get_client().scheduler.address
    with pytest.warns(UserWarning, match="only shape the local cluster"):
        get_client(scheduler=address, workers=5)


# A hang guard, not a benchmark: the connect timeout given is the one used (the message says
# how long it waited); distributed's default (30 s) would be the wrong one.
@pytest.mark.timeout(120)
def test_unreachable_scheduler_fails_fast_with_a_fix() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError) as caught:
        get_client(scheduler=address, connect_timeout=1)
    message = str(caught.value)
    assert address in message and "waited 1 s" in message
    assert "dask scheduler" in message and "drop --scheduler" in message


def test_unreachable_environment_address_says_which_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", f"127.0.0.1:{free_port()}")
    with pytest.raises(ClusterError, match="unset DASK_SCHEDULER_ADDRESS"):
        get_client(connect_timeout=1)


def test_a_users_cluster_reads_its_workers_while_the_client_refreshes_its_cache(
    user_cluster: LocalCluster,
) -> None:
    # The client refreshes its cached scheduler identity (without per-worker details) on a
    # timer; a fresh read must never come back with that cache's empty worker list.
    with dask.config.set({"distributed.client.scheduler-info-interval": "1ms"}):
        with Client(user_cluster, set_as_default=False) as mine:
            seen = {cluster_info(mine).workers for _ in range(300)}
    assert seen == {1}
