"""What a live action (`controls.Control`) does to the pass that `execute.DaskRun` follows.

Runs on the thread of the cell, between two ticks of the run's loop, so it may use the
client and report outcomes like the loop itself. Retried items are submitted one per task
and end like any other item: the in-order commit lands them (see `loop._land`).
"""

from __future__ import annotations

import time
from itertools import islice
from typing import Any

from . import controls
from .restarts import restart_for
from .results import ItemOutcome

#: Rows of the panel's "Running" list (each with its Cancel item), longest-running first.
RUNNING_ROWS = 5


def running_now(dask_run: Any, limit: int = RUNNING_ROWS) -> list[tuple[int, float]]:
    """(index, seconds running) of the items running now, longest first, at most ``limit``.

    A task counts as started when it enters the window of the first ``threads`` tasks in
    flight (as `DaskRun.running_items` counts them), seen once per tick. A task shows its
    first item: a task of several items reports them all at its end, so which one runs is
    not known; long items, the ones worth cancelling, are sent one per task.
    """
    now = time.monotonic()
    in_flight, started = dask_run.in_flight, dask_run.started_at
    for future in [f for f in started if f not in in_flight]:
        del started[future]
    window = islice((f for f in dask_run.order if f in in_flight), dask_run.threads)
    rows: list[tuple[int, float]] = []
    for future in window:
        since = started.setdefault(future, now)
        rows += [(i, now - since) for i, _ in in_flight[future][:1] if i not in dask_run.reported]
    rows.sort(key=lambda row: -row[1])  # stable: equal times stay in item order
    return rows[:limit]


def act(dask_run: Any, taken: list[controls.Control]) -> bool:
    """Apply ``taken`` to ``dask_run``; True when the run must end now (cancelled)."""
    for control in taken:
        if control.kind == controls.CANCEL:
            dask_run._cancel_all()
            return True
        if control.kind == controls.RETRY:
            retry_failed(dask_run)
        elif control.kind == controls.CANCEL_ITEM and control.index is not None:
            cancel_item(dask_run, control.index)
    return False


def retry_failed(dask_run: Any) -> list[int]:
    """Submit this pass's failed items again, now; returns their indices."""
    outcomes = getattr(dask_run.sink, "outcomes", {})
    in_pass = {i for i, _ in dask_run.pairs}
    failed = sorted(i for i, o in outcomes.items() if o.status == "failed" and i in in_pass)
    if not failed:
        return []
    items = dict(dask_run.pairs)
    dask_run.submit([[(i, items[i])] for i in failed])
    return failed


def cancel_item(dask_run: Any, index: int) -> bool:
    """End item ``index`` as cancelled if it is queued or running; its batch-mates run again."""
    for pending in (dask_run.held, dask_run.quarantine):
        for pair in pending:
            if pair[0] == index:
                pending.remove(pair)
                dask_run._add([ItemOutcome(index=index, status="cancelled")])
                return True
    for future, batch in list(dask_run.in_flight.items()):
        if any(i == index for i, _ in batch):
            worker = _running_on(dask_run.client, str(future.key))
            dask_run.in_flight.pop(future)
            dask_run.timed.discard(future)
            dask_run.client.cancel([future])
            if worker is not None:
                _restart(dask_run, worker)
            dask_run._add([ItemOutcome(index=index, status="cancelled")])
            mates = [pair for pair in batch if pair[0] != index]
            if mates:
                dask_run.submit([mates])
            return True
    return False


def _running_on(client: Any, key: str) -> str | None:
    """The worker (under a nanny) that runs task ``key`` now, or None.

    Cancelling a running task frees its slot on the scheduler but not the worker's thread:
    Python code stops only with its process, so that worker must be restarted (as
    ``--timeout`` does), or it would sit on the cancelled item and take more tasks meanwhile.
    A worker without a nanny would not come back: it is left alone.
    """
    try:
        return client.run_on_scheduler(_processing_on, key)
    except Exception:  # e.g. a scheduler that cannot import dask_magic: nothing restarted
        return None


def _processing_on(key: str, dask_scheduler: Any = None) -> str | None:
    """On the scheduler: the address of the worker running ``key``, if it has a nanny."""
    task = dask_scheduler.tasks.get(key)
    worker = getattr(task, "processing_on", None)
    if worker is None or not getattr(worker, "nanny", None):
        return None
    return worker.address


def _restart(dask_run: Any, address: str) -> None:
    """Restart ``address`` through its nanny without holding up the run's loop; the pass
    waits for it at its end, so it ends with the cluster as big as it found it."""
    restart_for(dask_run, address, quiet=True)  # the user asked for it: no nanny warnings
