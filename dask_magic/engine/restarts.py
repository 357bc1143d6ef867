"""The worker restarts of one pass: `--timeout`'s and the Cancel item button's.

Running Python code stops only with its process, so both end an item by restarting its
worker through the nanny. A restart runs on its own thread (the pass goes on meanwhile), a
worker is restarted once at a time, and a pass that ends waits (bounded) until the cluster is
back to the size it had before its first restart: the next cell, and anything that counts the
workers, finds the cluster as the pass found it.

The size is taken once, before anything is restarted: a restart that begins while another is
still bringing its worker back would otherwise take the smaller cluster it sees for the size
to wait for, and the pass would end a worker short.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

#: How long a restart may take to bring the cluster back before the pass stops waiting.
RESTART_SECONDS = 30.0
_POLL_SECONDS = 0.2


class WorkerRestarts:
    """The restarts a pass started (`--timeout`'s and Cancel item's), and the cluster size
    they must bring back."""

    def __init__(self, client: Any, before: Callable[[str, bool], object] | None = None):
        """``before(address, answers)`` runs first on each restart's thread (the worker's
        state goes with it); ``answers`` is False for a worker whose Python is blocked."""
        self.client = client
        self.before = before
        self.restarting: set[str] = set()  # addresses of workers being restarted now
        self._threads: list[threading.Thread] = []
        self._size: int | None = None  # workers before the pass's first restart

    def start(self, address: str, answers: bool = True, quiet: bool = False) -> bool:
        """Restart ``address`` on a thread; ``quiet`` drops the nanny's warnings about it.
        False if that worker is being restarted already."""
        if address in self.restarting:
            return False
        if self._size is None:
            self._size = len(self.client.nthreads())
        self.restarting.add(address)
        size = self._size

        def restart() -> None:
            if quiet:
                _quiet_nanny(+1)
            try:
                if self.before is not None:
                    self.before(address, answers)
                restart_and_wait(self.client, address, size)
            except Exception:  # gone already, or the scheduler is closing: nothing to restart
                pass
            finally:  # a worker started again at a fixed address can be restarted again
                self.restarting.discard(address)
                if quiet:
                    _quiet_nanny(-1)

        thread = threading.Thread(target=restart, name="dask-magic-restart", daemon=True)
        thread.start()
        self._threads.append(thread)
        return True

    def settle(self) -> None:
        """At the end of the pass: wait (bounded) for the restarts it started."""
        for thread in self._threads:
            thread.join(timeout=RESTART_SECONDS)
        self._threads.clear()


def restart_for(dask_run: Any, address: str, answers: bool = True, quiet: bool = False) -> bool:
    """`WorkerRestarts.start` for a pass (a `DaskRun`), which first lets go of its finished
    tasks: the scheduler would compute again every result it still holds on that worker."""
    dask_run.order = [f for f in dask_run.order if f in dask_run.in_flight]
    return dask_run.restarts.start(address, answers=answers, quiet=quiet)


def restart_and_wait(client: Any, address: str, size: int) -> None:
    """Restart the worker at ``address`` through its nanny and wait (bounded) until it has
    gone and the cluster has ``size`` workers again: the restart may return before the new
    process has registered."""
    client.restart_workers([address], raise_for_error=False)
    deadline = time.monotonic() + RESTART_SECONDS
    while time.monotonic() < deadline:
        now = client.nthreads()
        if address not in now and len(now) >= size:
            return
        time.sleep(_POLL_SECONDS)


class _RestartNotes(logging.Filter):
    """Drops the nanny's warnings about a restart the user asked for (a local cluster's
    nannies log into the cell's output): nothing is wrong."""

    NOTES = ("Restarting worker", "Worker process still alive")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOTES)


_NOTES = _RestartNotes()
_quiet = {"restarts": 0}
_quiet_lock = threading.Lock()


def _quiet_nanny(change: int) -> None:
    """Count the quiet restarts under way; the filter is on while there is one."""
    with _quiet_lock:
        _quiet["restarts"] += change
        nanny = logging.getLogger("distributed.nanny")
        if _quiet["restarts"] > 0:
            nanny.addFilter(_NOTES)
        else:
            nanny.removeFilter(_NOTES)
