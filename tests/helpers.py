"""Helpers shared by the test modules: ports, fake clocks, waiting, clusters and notebooks.

Kept small on purpose (distributed's ``utils_test.py`` is the cautionary tale): a helper
lives here once two test modules need it. Import it as ``from helpers import ...``; pytest
puts ``tests/`` on ``sys.path`` with ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import queue
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import nbformat
import pytest

from dask_magic.engine.results import ClusterInfo

T = TypeVar("T")

#: A two-worker local cluster as the views show it.
SAMPLE_CLUSTER = ClusterInfo(
    scheduler="tcp://127.0.0.1:8786",
    workers=2,
    threads=2,
    memory=4 * 2**30,
    dashboard="http://127.0.0.1:8787/status",
    local=True,
)

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def in_ci() -> bool:
    """Whether this is a CI run (``CI=true``, as .ci/run and most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing_tool(reason: str) -> NoReturn:
    """Skip a test whose tool (browser, node toolchain, packaging tool) is not here.

    Under ``CI=true`` this fails instead: a CI machine without Chromium must not be green
    while testing no browser.
    """
    if in_ci():
        pytest.fail(f"{reason}; CI=true, so a missing tool fails the run", pytrace=False)
    pytest.skip(reason)


def import_tool(module: str) -> Any:
    """``importlib.import_module(module)``, or `missing_tool` when it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing_tool(f"{module} cannot be imported ({exc})")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeClock:
    """A clock the test moves: pass it as ``clock=`` where the code takes one."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy, and return that; fail after ``timeout``.

    The way to wait for another process or thread: a fixed sleep is either too short on a
    loaded machine or wasted time on an idle one.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout:g} s (last: {found!r})")
        time.sleep(interval)


def notebook(sources: Sequence[str], ids: Sequence[str] | None = None) -> Any:
    """An nbformat v4 notebook of code cells on the ``python3`` kernel."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    if ids is None:
        nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    else:
        nb.cells = [
            nbformat.v4.new_code_cell(src, id=cid) for src, cid in zip(sources, ids, strict=True)
        ]
    return nb


def write_notebook(path: Path, sources: Sequence[str], ids: Sequence[str] | None = None) -> Path:
    """`notebook` written to ``path``."""
    nbformat.write(notebook(sources, ids), path)
    return path


def dask_process(kind: str, *args: str, cwd: Path) -> subprocess.Popen:
    """``dask scheduler ARGS`` or ``dask worker ARGS`` as its own process in ``cwd``."""
    return subprocess.Popen(
        [sys.executable, "-m", f"distributed.cli.dask_{kind}", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )


@contextlib.contextmanager
def command_line_cluster(
    cwd: Path, *, workers: int = 1, nthreads: int = 1, nanny: bool = True
) -> Iterator[tuple[str, subprocess.Popen, list[subprocess.Popen]]]:
    """A scheduler and ``workers`` worker processes on 127.0.0.1, started as a user would.

    Yields ``(address, scheduler_process, worker_processes)`` once every worker registered;
    stops them all afterwards (SIGTERM, then SIGKILL for one that hangs).
    """
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    loopback = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
    scheduler = dask_process("scheduler", "--port", str(port), *loopback, cwd=cwd)
    worker_args = [address, "--nthreads", str(nthreads), *loopback]
    if not nanny:
        worker_args.append("--no-nanny")
    started = [dask_process("worker", *worker_args, cwd=cwd) for _ in range(workers)]
    try:
        with Client(address, timeout=30, set_as_default=False) as probe:
            probe.wait_for_workers(workers, timeout=60)
        yield address, scheduler, started
    finally:
        for proc in [*reversed(started), scheduler]:
            proc.terminate()
        for proc in [*started, scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)


class OnUpdate:
    """A run observer that calls ``action`` once, on the first snapshot ``when`` accepts.

    Attach it with `watch_runs` to act at a point of a live run (kill a worker once items
    are running, say) instead of after a guessed delay.
    """

    def __init__(self, when: Callable[[Any], bool], action: Callable[[], None]) -> None:
        self.when = when
        self.action = action
        self.fired = False

    def update(self, snapshot: Any) -> None:
        if not self.fired and self.when(snapshot):
            self.fired = True
            self.action()

    def finish(self, snapshot: Any) -> None:
        """Nothing to do at the end."""


def watch_runs(monkeypatch: Any, observer: Any) -> None:
    """Make ``observer`` watch every run the magics start while ``monkeypatch`` is active."""
    from dask_magic import views

    chosen = views.cell_views
    monkeypatch.setattr(
        views, "cell_views", lambda magics, progress: [*chosen(magics, progress), observer]
    )


def close_own_cluster(cluster: Any) -> None:
    """Close a `LocalCluster` a test made, through distributed's race at its very end.

    ``SpecCluster.close`` ends by awaiting its worker-status watcher, which can raise
    ``KeyError`` in ``_update_worker_status``: a "remove" event for a worker address its
    table no longer holds (a worker restarted, by a ``--timeout`` say, while the table was
    refreshed). The scheduler and every worker are closed by then; anything else is raised.
    """
    try:
        cluster.close()
    except KeyError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        if not frames or frames[-1].name != "_update_worker_status":
            raise


def settled_workers(client: Any, count: int, timeout: float = 120) -> dict[str, int]:
    """Wait until the client's cluster has ``count`` workers that all answer and stay (the
    same addresses twice, a second apart); their process ids by address.

    A worker an earlier test restarted can register and then be dropped again (a
    `LocalCluster` closes a worker whose restart outlasted its lost-worker check): a test
    that counts workers or asks each of them starts after that has played out."""
    deadline = time.monotonic() + timeout
    seen: dict[str, int] = {}
    while time.monotonic() < deadline:
        client.wait_for_workers(count, timeout=max(deadline - time.monotonic(), 1))
        try:
            now = dict(client.run(os.getpid))
        except OSError:  # a worker went away while it was asked: ask again
            now = {}
        if len(now) == count and now == seen:
            return now
        seen = now
        time.sleep(1)
    raise TimeoutError(f"the cluster did not settle at {count} workers in {timeout:.0f} s")


@contextlib.contextmanager
def own_local_cluster(**kwargs: Any) -> Iterator[Any]:
    """``with LocalCluster(**kwargs)``, closed through `close_own_cluster` (loopback only, and
    its dashboard on a free port, unless ``kwargs`` say otherwise)."""
    from distributed import LocalCluster

    made = LocalCluster(**{"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", **kwargs})
    try:
        yield made
    finally:
        close_own_cluster(made)


# -- real kernels over ZMQ -------------------------------------------------------------------


def start_kernel(cwd: Path | None = None, **env: str) -> tuple[Any, Any]:
    """A real ``python3`` ipykernel (its manager, and a client with its channels started).

    The kernel inherits this process's environment (conftest puts this checkout first on
    ``PYTHONPATH``) plus ``env``. Stop it with ``kc.stop_channels()`` and
    ``km.shutdown_kernel()``; both are the caller's, in a ``finally``.
    """
    manager = import_tool("jupyter_client.manager")
    km = manager.KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, **env}, cwd=str(cwd) if cwd else None)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
    except BaseException:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        raise
    return km, kc


@contextlib.contextmanager
def running_kernel(cwd: Path | None = None, **env: str) -> Iterator[Any]:
    """`start_kernel`'s client, the kernel shut down when the block ends."""
    km, kc = start_kernel(cwd, **env)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@dataclasses.dataclass
class CellOutput:
    stdout: str
    stderr: str
    error: str = ""  # "ValueError: bad" when the cell raised
    traceback: str = ""


def cell_output(kc: Any, msg_id: str, timeout: float = 120) -> CellOutput:
    """What the cell ``msg_id`` printed, once the kernel is idle again after it."""
    out: list[str] = []
    err: list[str] = []
    error = traceback = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if msg["msg_type"] == "stream":
            (out if content["name"] == "stdout" else err).append(content["text"])
        elif msg["msg_type"] == "error":
            error = f"{content['ename']}: {content['evalue']}"
            traceback = "\n".join(content["traceback"])
        elif msg["msg_type"] == "status" and content["execution_state"] == "idle":
            return CellOutput("".join(out), "".join(err), error, traceback)
    raise AssertionError(f"the kernel did not finish cell {msg_id} within {timeout} s")
