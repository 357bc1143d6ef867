"""A dead kernel loses nothing: SIGKILL a real kernel mid-run, run the same cells in a new one.

Each item appends its index to a log file, so the test counts what ran before the kill and
what ran again after it. Kernels (and the worker processes of the killed one's cluster) are
stopped by their own pids.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from helpers import cell_output, start_kernel

jupyter_client = pytest.importorskip("jupyter_client.manager")

ROOT = Path(__file__).resolve().parents[1]
N = 60

SETUP = """
import os, time
%load_ext dask_magic
log = {log!r}
items = list(range({n}))
from dask_magic.engine import cluster
client = cluster.get_client(workers=2, threads=1)
print("PIDS", sorted({{*client.run(os.getpid).values(), *client.run(os.getppid).values()}}))
"""

CELL = """%%parallel_for --progress none --batch 1 --name r
res = []
for x in items:
    time.sleep(0.1)
    with open(log, "a") as fh:
        fh.write(f"{x}\\n")
    res.append(x * x)
"""


def _start(folder: Path) -> tuple:
    return start_kernel(folder, DASK_MAGIC_JOURNAL=str(folder / "journal"))


def _send(kc, code: str) -> str:
    return kc.execute(code, store_history=True)


def _output(kc, msg_id: str, timeout: float = 120) -> str:
    """Stdout of ``msg_id`` until the kernel is idle again (fails on an error)."""
    printed = cell_output(kc, msg_id, timeout)
    if printed.error:
        raise AssertionError(printed.traceback or printed.error)
    return printed.stdout


def _lines(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_mid_run_then_the_same_cells_run_only_what_is_missing(tmp_path):
    log = tmp_path / "log"
    setup = SETUP.format(log=str(log), n=N)
    km, kc = _start(tmp_path)
    try:
        printed = _output(kc, _send(kc, setup))
        workers = eval(printed.split("PIDS", 1)[1].strip())
        _send(kc, CELL)
        deadline = time.monotonic() + 120
        while len(_lines(log)) < int(0.7 * N) and time.monotonic() < deadline:
            time.sleep(0.02)
        at_kill = len(_lines(log))
        _kill(km.provisioner.pid)
    finally:
        kc.stop_channels()
    time.sleep(1.0)  # items in flight on the orphaned workers finish and log themselves
    for pid in workers:
        _kill(pid)
    km.cleanup_resources()
    before = _lines(log)
    assert 0.6 * N <= at_kill < N

    km, kc = _start(tmp_path)
    try:
        _output(kc, _send(kc, SETUP.format(log=str(log), n=N)))
        _output(kc, _send(kc, CELL))
        printed = _output(
            kc, _send(kc, "print('RES', res == [x * x for x in items], r.counts.restored)")
        )
        again = _lines(log)[len(before) :]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert f"RES True {N - len(again)}" in printed
    missing = set(range(N)) - set(before)
    # the missing items run, and at most the last half second's worth of finished ones
    assert missing <= set(again)
    assert len(again) <= len(missing) + 12, (at_kill, len(before), sorted(again))
    print(f"done before the kill: {at_kill} (logged {len(before)}); run again: {len(again)}")


RETRY_SETUP = """
%load_ext dask_magic
log = {log!r}
items = list(range(12))
bad = {bad!r}  # the "fix" after the restart: no item is bad any more
"""

RETRY_CELL = """%%parallel_for --progress none
res = []
for x in items:
    with open(log, "a") as fh:
        fh.write(f"{x}\\n")
    if x in bad:
        raise ValueError(x)
    res.append(x * x)
"""


def test_parallel_retry_after_a_restart_runs_the_failed_items_of_the_journaled_run(tmp_path):
    log = tmp_path / "log"
    km, kc = _start(tmp_path)
    try:
        _output(kc, _send(kc, RETRY_SETUP.format(log=str(log), bad={0, 5, 7})))
        _output(kc, _send(kc, RETRY_CELL))
        assert sorted(_lines(log)) == list(range(12))
        kc.stop_channels()
        km.restart_kernel(now=False)  # the namespace and the run are gone; the journal stays
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        log.write_text("")
        _output(kc, _send(kc, RETRY_SETUP.format(log=str(log), bad=set())))
        printed = _output(kc, _send(kc, "%parallel_retry"))
        assert "retrying the journal's last loop: for x in items:" in printed
        assert sorted(_lines(log)) == [0, 5, 7]  # only the items that had failed
        printed = _output(kc, _send(kc, "print('RES', res == [x * x for x in items])"))
        assert "RES True" in printed
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
