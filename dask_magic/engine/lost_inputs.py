"""Scattered inputs whose every copy went with a worker: scattered again, the tasks sent again.

A big value the body reads is scattered once (`scatter`): Dask keeps it on the worker it was
sent to and copies it to others as their tasks need it. When the only worker that holds it
ends (restarted for ``--timeout``, or dead), the scheduler forgets it and cancels every task
that needs it. Such a task is not the user's doing: the pass scatters the value again from
the notebook's own object (the job keeps a reference for the pass) and sends the task again.
A bounded number of times per pass, so that a cluster that keeps losing workers still ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from . import scatter

#: How many times a pass scatters its inputs again before lost tasks count as cancelled.
MAX_RESENDS = 3
#: How long a pass waits for a worker to take an input again (a restart takes a few seconds).
WAIT_SECONDS = 60.0


@dataclass
class LostInputs:
    """Which generation of the pass's inputs each task was sent with."""

    generation: int = 0
    #: by key: holding the futures would have the scheduler keep (and, when a worker dies,
    #: compute again) every result the pass has already taken
    sent_with: dict[Any, int] = field(default_factory=dict)

    def note(self, futures: list[Any]) -> None:
        for future in futures:
            self.sent_with[future.key] = self.generation

    def send_again(self, dask_run: Any, future: Any) -> bool:
        """True if the cancelled ``future`` lost its inputs and can be sent again now."""
        sent_with = self.sent_with.pop(future.key, self.generation)
        if sent_with < self.generation:  # cancelled by a loss already made good
            return True
        if self.generation >= MAX_RESENDS or not scatter_lost_again(dask_run):
            return False
        self.generation += 1
        return True


def scatter_lost_again(dask_run: Any) -> bool:
    """Scatter again the pass's inputs whose data is gone; False if none is (or no cluster)."""
    job, client = dask_run.job, dask_run.client
    lost = [name for name, future in job.big_env.items() if _gone(future)]
    bundle_lost = _gone(dask_run.bundle)
    if not (lost or bundle_lost) or client.status != "running":
        return False
    try:
        for name in lost:  # the cache sees the dead entry and scatters the object afresh
            job.big_env[name] = _scatter_when_a_worker_takes_it(client, name, job.big_values[name])
    except Exception:  # no worker came back, or the scheduler went: the tasks stay cancelled
        return False
    if bundle_lost:
        dask_run.bundle = None  # shipped again with the next submission
    return True


def _scatter_when_a_worker_takes_it(client: Any, name: str, value: Any) -> Any:
    """Scatter once a worker is there to take it: the loss is often the restart of the only
    one, and a scatter aimed at the process that is just ending fails (tried again).

    The worker the scheduler chose can go while the data is on its way: the client then sees
    an ``OSError`` (the comm closed) or, once the scheduler has removed the worker before it
    notes who holds the data, the scheduler's ``KeyError`` for that address. Both are tried
    again until the deadline; a failed scatter leaves nothing in the cache."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        client.wait_for_workers(1, timeout=max(deadline - time.monotonic(), 0.1))
        try:
            return scatter.default_cache.get(client, name, value)
        except (OSError, KeyError):  # the worker it chose closed meanwhile
            if time.monotonic() > deadline or client.status != "running":
                raise
            time.sleep(0.2)


def _gone(value: Any) -> bool:
    """A future whose data no worker holds any more (bytes sent inline are never gone)."""
    status = getattr(value, "status", None)
    return status is not None and status != "finished"
