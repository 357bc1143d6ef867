"""Actions on a live run that arrive from another thread: cancel it, retry its failed items
now, cancel one item.

A front end that sends its actions on a kernel subshell (ipykernel 7, JupyterLab 4.4+) has
them handled on that subshell's thread while the cell's thread is busy following the run.
That thread does nothing but `post` here; the run's own loop (`execute.DaskRun`) takes the
actions meant for it with `take` on each tick and acts on them itself, so the cluster, the
in-order commit and the namespace are only ever touched from the thread that runs the cell.

Pure stdlib; nothing here knows of IPython or comms.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

__all__ = ["CANCEL", "CANCEL_ITEM", "KINDS", "RETRY", "Control", "ControlQueue", "default"]

CANCEL = "cancel"  # end the run now; finished items are kept
RETRY = "retry"  # submit the run's failed items again while the rest runs
CANCEL_ITEM = "cancel_item"  # end one queued or running item as cancelled
KINDS = (CANCEL, RETRY, CANCEL_ITEM)


@dataclass(frozen=True)
class Control:
    """One action on the run ``run_id`` (``index``: the item, for `CANCEL_ITEM`)."""

    kind: str
    run_id: str
    index: int | None = None


class ControlQueue:
    """The one thread-safe queue between the threads that post actions and the run's loop.

    Actions for a run id that is not live are dropped when a run takes its own: a click that
    arrives after its run ended must not act on the next run.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Control] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live: set[str] = set()

    def post(self, control: Control) -> bool:
        """Queue ``control``; False (and nothing queued) when its run is not live."""
        if control.kind not in KINDS:
            raise ValueError(f"unknown control {control.kind!r}")
        with self._lock:
            if control.run_id not in self._live:
                return False
        self._queue.put(control)
        return True

    def is_live(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._live

    def open(self, run_id: str) -> None:
        """The run's loop starts following ``run_id``: actions for it are taken from now."""
        with self._lock:
            self._live.add(run_id)

    def close(self, run_id: str) -> None:
        with self._lock:
            self._live.discard(run_id)

    def take(self, run_id: str) -> list[Control]:
        """Every queued action for ``run_id``, oldest first; those of other runs are dropped."""
        taken: list[Control] = []
        while True:
            try:
                control = self._queue.get_nowait()
            except queue.Empty:
                return taken
            if control.run_id == run_id:
                taken.append(control)


#: The kernel's queue (one per process: one cell runs at a time).
default = ControlQueue()
