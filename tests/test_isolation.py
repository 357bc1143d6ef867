"""Runs that must not interfere: the same cell twice in a row, and two notebooks' kernels
at once, each with its own local cluster."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from conftest import run_ok
from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_same_cell_twice_quickly(fresh):
    run_ok(fresh, "items = list(range(50))")
    cell = "%%parallel_for --progress none\nout = []\nfor x in items:\n    out.append(x * x)\n"
    first = run_ok(fresh, cell)
    first_out = fresh.user_ns["out"]
    second = run_ok(fresh, cell)
    assert first.run_id != second.run_id
    assert first_out == fresh.user_ns["out"] == [x * x for x in range(50)]
    assert first.counts.done == second.counts.done == 50


def _execute(client, code: str, timeout: float = 180) -> dict:
    """Run ``code`` in a kernel; the reply plus everything the cell printed."""
    printed: list[str] = []

    def output(msg):
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            printed.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=timeout, output_hook=output)
    return {"status": reply["content"]["status"], "out": "".join(printed)}


CELL = """%%parallel_for --progress none
import os
pids = set()
total = 0
for x in range(40):
    pids.add(os.getpid())
    total += x * {factor}
"""
REPORT = (
    "from dask_magic.engine import cluster\n"
    "print('RESULT', total, cluster.get_client().scheduler.address, sorted(pids))"
)


def test_two_kernels_each_with_their_own_cluster():
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    kernels = [start_new_kernel(kernel_name="python3", env=env) for _ in range(2)]
    try:
        for _, client in kernels:
            assert _execute(client, "%load_ext dask_magic")["status"] == "ok"
        results: dict[int, dict] = {}

        def run(i: int) -> None:
            client = kernels[i][1]
            results[i] = _execute(client, CELL.format(factor=i + 1))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r["status"] == "ok" for r in results.values()), results
        reports = [_execute(client, REPORT)["out"] for _, client in kernels]
        parsed = [
            line.split(" ", 3)
            for r in reports
            for line in r.splitlines()
            if line.startswith("RESULT")
        ]
        (_, total_a, sched_a, pids_a), (_, total_b, sched_b, pids_b) = parsed
        assert (int(total_a), int(total_b)) == (sum(range(40)), 2 * sum(range(40)))
        assert sched_a != sched_b and pids_a != pids_b  # separate clusters, separate workers
    finally:
        for manager, client in kernels:
            client.stop_channels()
            manager.shutdown_kernel(now=False)
