"""Faults on real clusters: every item ends done or failed, none silently missing, and the
next cell still works.

Faults are injected at a point of the run, not after a guessed delay: an observer of the run
(`helpers.OnUpdate`) kills the worker or the scheduler once the run reports items running
or finished.
"""

from __future__ import annotations

import gc
import os
import signal
import threading

import psutil
import pytest
from conftest import run_ok
from helpers import (
    OnUpdate,
    command_line_cluster,
    free_port,
    own_local_cluster,
    wait_until,
    watch_runs,
)
from IPython.core.error import UsageError

from dask_magic.engine import cluster
from dask_magic.engine.results import RunStatus

pytestmark = pytest.mark.slow


def magics(ip):
    return ip.magics_manager.registry["DaskMagics"]


def all_accounted(run) -> bool:
    c = run.counts
    return c.done + c.failed + c.cancelled == c.total and len(run.outcomes) == c.total


SLOW_LOOP = (
    "%%parallel_for --progress none\nout = []\nfor x in items:\n    time.sleep(0.2)\n"
    "    out.append(x)\n"
)


def test_worker_killed_mid_run(fresh, monkeypatch):
    client = cluster.get_client()
    run_ok(fresh, "import time\nitems = list(range(30))")
    pids = list(client.run(os.getpid).values())
    killer = OnUpdate(
        lambda snapshot: snapshot.counts.running > 0,
        lambda: os.kill(pids[0], signal.SIGKILL),
    )
    watch_runs(monkeypatch, killer)
    run = run_ok(fresh, SLOW_LOOP)
    assert killer.fired
    assert all_accounted(run)
    done = sorted(i for i, o in run.outcomes.items() if o.status == "done")
    assert fresh.user_ns["out"] == done
    client.wait_for_workers(2, timeout=60)  # the nanny brings the worker back
    assert (
        run_ok(
            fresh, "%%parallel_for --progress none\nz = []\nfor x in range(4):\n    z.append(x)\n"
        ).counts.done
        == 4
    )


def test_item_calling_os_exit_is_an_infrastructure_failure(fresh):
    run_ok(fresh, "import os\nitems = list(range(12))")
    run = run_ok(
        fresh,
        "%%parallel_for --progress none\nout = []\nfor x in items:\n    if x == 5:\n"
        "        os._exit(1)\n    out.append(x)\n",
    )
    assert all_accounted(run)
    assert run.counts.failed == 1 and run.counts.done == 11
    failure = run.failures[0]
    assert failure.index == 5 and failure.error.kind == "infrastructure"
    assert "KilledWorker" in failure.error.type_name and "memory" in failure.error.hint
    assert fresh.user_ns["out"] == [x for x in range(12) if x != 5]


@pytest.mark.timeout(150)
def test_workers_a_local_cluster_drops_while_they_die_are_started_again(fresh):
    """A LocalCluster closes for good a worker whose name is not registered again
    ``lost-worker-timeout`` after it went; an item that kills every worker it runs on makes
    that likely (and, with every worker dropped, the run would wait forever). Here the check
    is shorter than any process start, so the cluster drops each worker the item kills."""
    import dask
    from distributed import Client

    run_ok(fresh, "import os\nitems = list(range(12))")
    with (
        dask.config.set({"distributed.deploy.lost-worker-timeout": "0.1s"}),
        own_local_cluster(n_workers=2, threads_per_worker=1) as made,
        Client(made, set_as_default=False) as client,
    ):
        fresh.user_ns["c"] = client
        run = run_ok(
            fresh,
            "%%parallel_for --client c --progress none\nout = []\nfor x in items:\n"
            "    if x == 5:\n        os._exit(1)\n    out.append(x)\n",
        )
        assert (run.counts.failed, run.counts.done) == (1, 11)
        assert fresh.user_ns["out"] == [x for x in range(12) if x != 5]
        client.wait_for_workers(2, timeout=60)
        wait_until(
            lambda: sorted(made.workers) == sorted(made.worker_spec),
            timeout=60,
            what="the spec's workers",
        )


def test_item_over_the_memory_limit(fresh):
    from distributed import Client

    with (
        own_local_cluster(
            n_workers=1, threads_per_worker=1, memory_limit="400MB", silence_logs=50
        ) as small,
        Client(small, set_as_default=False) as c,
    ):
        fresh.user_ns["small"] = c
        cell = (
            "%%parallel_for --client small --progress none\nsizes = []\nfor x in range(4):\n"
            "    blob = bytearray(900_000_000) if x == 2 else b''\n    sizes.append(len(blob))\n"
        )
        run = run_ok(fresh, cell)
        assert all_accounted(run)
        assert run.counts.failed == 1 and run.failures[0].index == 2
        assert run.failures[0].error.kind == "infrastructure"
        assert fresh.user_ns["sizes"] == [0, 0, 0]


@pytest.mark.timeout(180)  # the run must end on its own when the scheduler goes
def test_scheduler_lost_mid_run(fresh, tmp_path, monkeypatch):
    with command_line_cluster(tmp_path, nthreads=2) as (address, scheduler, _):
        run_ok(fresh, "import time\nitems = list(range(40))")
        killer = OnUpdate(lambda snapshot: snapshot.counts.done > 0, scheduler.kill)
        watch_runs(monkeypatch, killer)
        result = fresh.run_cell(
            SLOW_LOOP.replace("--progress", f"--scheduler {address} --progress")
        )
        monkeypatch.undo()
        assert killer.fired
        assert isinstance(result.error_in_exec, UsageError)
        assert "scheduler" in str(result.error_in_exec)
        run = magics(fresh).last_run
        assert run.status is RunStatus.ERROR and all_accounted(run)
        done = sorted(i for i, o in run.outcomes.items() if o.status == "done")
        assert done and fresh.user_ns["out"] == done
    # the next cell starts (or re-uses) a local cluster and works
    assert (
        run_ok(
            fresh, "%%parallel_for --progress none\nz = []\nfor x in range(3):\n    z.append(x)\n"
        ).counts.done
        == 3
    )


@pytest.mark.timeout(120)  # bounded: the magic waits its connect timeout (10 s), then says so
def test_unreachable_scheduler_is_a_clear_error_in_bounded_time(fresh):
    port = free_port()
    result = fresh.run_cell(
        f"%%parallel_for --scheduler tcp://127.0.0.1:{port}\nfor x in [1]:\n    pass\n"
    )
    assert isinstance(result.error_in_exec, UsageError)
    message = str(result.error_in_exec)
    assert f"127.0.0.1:{port}" in message and "waited 10 s" in message


def _footprint(client) -> dict:
    me = psutil.Process()
    return {
        "children": len(me.children(recursive=True)),
        "threads": threading.active_count(),
        "listening": sum(1 for c in me.net_connections("tcp") if c.status == psutil.CONN_LISTEN),
        "keys": len(client.who_has()),
    }


def test_twenty_interrupts_leak_nothing(fresh):
    client = cluster.get_client()
    run_ok(fresh, "import time\nitems = list(range(20_000))")
    cell = (
        # --fresh: the journal would give back what an earlier attempt finished, and a run
        # over before the timer fires would interrupt the test itself
        "%%parallel_for --fresh --progress none\nout = []\nfor x in items:\n    if x % 100 == 0:\n"
        "        time.sleep(0.02)\n    out.append(x)\n"
    )
    run_ok(fresh, cell.replace("items", "items[:10]"))
    gc.collect()
    before = _footprint(client)
    for attempt in range(20):
        delay = 0.05 if attempt % 2 else 0.6  # during submission, and during the run
        timer = threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        result = fresh.run_cell(cell)
        timer.join()
        print(f"attempt {attempt}: {magics(fresh).last_run!r}")
        run = magics(fresh).last_run
        assert (
            isinstance(result.error_in_exec, (UsageError, KeyboardInterrupt))
            or run.status is RunStatus.FINISHED
        )
        assert all_accounted(run) or run.status is not RunStatus.INTERRUPTED

    def settled() -> dict | None:
        # cancelled tasks and their threads wind down asynchronously: poll, with a deadline
        gc.collect()
        now = _footprint(client)
        return now if _no_leak(before, now) else None

    wait_until(settled, timeout=30, what=f"the footprint before the interrupts, {before}")
    assert _no_leak(before, _footprint(client)), list(client.who_has())[:5]


def _no_leak(before: dict, after: dict) -> bool:
    return (
        after["children"] == before["children"]
        and after["listening"] == before["listening"]
        and after["threads"] <= before["threads"] + 2
        and after["keys"] <= before["keys"] + 2
    )
