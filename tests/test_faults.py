"""Faults on real clusters: every item ends done or failed, none silently missing, and the
next cell still works (issue 7)."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
from IPython.core.error import UsageError

from conftest import run_ok
from dask_magic.engine import cluster
from dask_magic.engine.results import RunStatus

pytestmark = pytest.mark.slow


def magics(ip):
    return ip.magics_manager.registry["DaskMagics"]


def all_accounted(run) -> bool:
    c = run.counts
    return c.done + c.failed + c.cancelled == c.total and len(run.outcomes) == c.total


def test_worker_killed_mid_run(fresh):
    client = cluster.get_client()
    run_ok(fresh, "import time\nitems = list(range(30))")
    pids = list(client.run(os.getpid).values())

    def kill_one():
        time.sleep(1.5)
        os.kill(pids[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_one)
    killer.start()
    run = run_ok(
        fresh,
        "%%parallel_for --progress none\nout = []\nfor x in items:\n    time.sleep(0.2)\n    out.append(x)\n",
    )
    killer.join()
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
        "%%parallel_for --progress none\nout = []\nfor x in items:\n    if x == 5:\n        os._exit(1)\n    out.append(x)\n",
    )
    assert all_accounted(run)
    assert run.counts.failed == 1 and run.counts.done == 11
    failure = run.failures[0]
    assert failure.index == 5 and failure.error.kind == "infrastructure"
    assert "KilledWorker" in failure.error.type_name and "memory" in failure.error.hint
    assert fresh.user_ns["out"] == [x for x in range(12) if x != 5]


def test_item_over_the_memory_limit(fresh):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            memory_limit="400MB",
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=50,
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scheduler_lost_mid_run(fresh, tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "distributed.cli.dask_"]
    sched = subprocess.Popen(
        [
            cmd[0],
            cmd[1],
            cmd[2] + "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            "127.0.0.1:0",
        ],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [
            cmd[0],
            cmd[1],
            cmd[2] + "worker",
            address,
            "--nthreads",
            "2",
            "--host",
            "127.0.0.1",
            "--dashboard-address",
            "127.0.0.1:0",
        ],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
    )
    try:
        from distributed import Client

        with Client(address, timeout=30, set_as_default=False) as probe:
            probe.wait_for_workers(1, timeout=60)
        run_ok(fresh, "import time\nitems = list(range(40))")
        threading.Timer(3.0, sched.kill).start()
        started = time.monotonic()
        result = fresh.run_cell(
            f"%%parallel_for --scheduler {address} --progress none\nout = []\nfor x in items:\n"
            "    time.sleep(0.2)\n    out.append(x)\n"
        )
        assert time.monotonic() - started < 90
        assert isinstance(result.error_in_exec, UsageError)
        assert "scheduler" in str(result.error_in_exec)
        run = magics(fresh).last_run
        assert run.status is RunStatus.ERROR and all_accounted(run)
        done = sorted(i for i, o in run.outcomes.items() if o.status == "done")
        assert done and fresh.user_ns["out"] == done
    finally:
        for proc in (worker, sched):
            proc.kill()
            proc.wait(timeout=30)
    # the next cell starts (or re-uses) a local cluster and works
    assert (
        run_ok(
            fresh, "%%parallel_for --progress none\nz = []\nfor x in range(3):\n    z.append(x)\n"
        ).counts.done
        == 3
    )


def test_unreachable_scheduler_is_a_clear_error_in_bounded_time(fresh):
    port = _free_port()
    started = time.monotonic()
    result = fresh.run_cell(
        f"%%parallel_for --scheduler tcp://127.0.0.1:{port}\nfor x in [1]:\n    pass\n"
    )
    assert time.monotonic() - started < 40
    assert isinstance(result.error_in_exec, UsageError)
    assert f"127.0.0.1:{port}" in str(result.error_in_exec)


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
    cell = "%%parallel_for --progress none\nout = []\nfor x in items:\n    if x % 100 == 0:\n        time.sleep(0.02)\n    out.append(x)\n"
    run_ok(fresh, cell.replace("items", "items[:10]"))
    gc.collect()
    before = _footprint(client)
    for attempt in range(20):
        delay = 0.05 if attempt % 2 else 0.6  # during submission, and during the run
        timer = threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        started = time.monotonic()
        result = fresh.run_cell(cell)
        timer.join()
        print(f"attempt {attempt}: {time.monotonic() - started:.2f} s, {magics(fresh).last_run!r}")
        run = magics(fresh).last_run
        assert (
            isinstance(result.error_in_exec, (UsageError, KeyboardInterrupt))
            or run.status is RunStatus.FINISHED
        )
        assert all_accounted(run) or run.status is not RunStatus.INTERRUPTED
    time.sleep(2)
    gc.collect()
    after = _footprint(client)
    assert after["children"] == before["children"]
    assert after["listening"] == before["listening"]
    assert after["threads"] <= before["threads"] + 2
    assert after["keys"] <= before["keys"] + 2, list(client.who_has())[:5]
