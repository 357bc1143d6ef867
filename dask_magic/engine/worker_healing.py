"""Bring back a worker that a LocalCluster dropped while its nanny was bringing it back.

distributed's `SpecCluster` (what `LocalCluster` is) answers every worker removal with a check
``distributed.deploy.lost-worker-timeout`` (15 s) later: if no worker of that name is
registered at that moment, it closes the worker's nanny for good. A worker that dies or is
restarted again while that check is pending (an item that kills its worker on every try, a
``--timeout`` restart, a slow start on a loaded machine) is lost: the cluster would stay a
worker short for the rest of the session, and with every worker lost a run would wait forever.

`watch` looks after each SpecCluster a run uses: once a second, on the cluster's own event
loop (the kernel's thread may be waiting on the cluster just then), it asks the cluster (its
own ``scale``, to the size of its spec) to start again every worker of its spec that it no
longer runs. A cluster that is not a SpecCluster (a scheduler started elsewhere, whose nannies
restart their workers themselves) is left alone.
"""

from __future__ import annotations

import weakref
from typing import Any

from distributed.core import Status
from distributed.deploy.spec import SpecCluster
from tornado.ioloop import PeriodicCallback

#: How often a watched cluster is looked at, in seconds.
WATCH_INTERVAL = 1.0
_watched: weakref.WeakSet = weakref.WeakSet()


def watch(client: Any) -> bool:
    """Look after the client's SpecCluster from now on (once per cluster); True if watched."""
    cluster = getattr(client, "cluster", None)
    if not isinstance(cluster, SpecCluster) or cluster.loop is None:
        return False
    if cluster not in _watched:
        _watched.add(cluster)
        cluster.loop.add_callback(_start_looking, weakref.ref(cluster))
    return True


def _start_looking(ref: weakref.ref) -> None:
    """On the cluster's loop: a periodic look that ends with the cluster."""

    def look() -> None:
        cluster = ref()
        if cluster is None or cluster.status in (Status.closing, Status.closed):
            looking.stop()
        elif len(cluster.workers) < len(cluster.worker_spec) or _any_ended(cluster):
            heal(cluster)

    looking = PeriodicCallback(look, WATCH_INTERVAL * 1000)
    looking.start()


def _any_ended(cluster: SpecCluster) -> bool:
    return any(worker.status in _ENDED for worker in cluster.workers.values())


def heal(cluster: SpecCluster) -> bool:
    """Start again the workers of the cluster's spec it no longer runs; True if any.

    On the cluster's loop. A worker that failed to start (its name was still registered by
    the process it replaces, "name taken") is left in the cluster's table, closed: it is
    taken out, so that the next look starts it again.
    """
    if cluster.status != Status.running:
        return False
    registered = {w.get("name") for w in cluster.scheduler_info.get("workers", {}).values()}
    for name, worker in list(cluster.workers.items()):
        if worker.status in _ENDED and name in cluster.worker_spec and name not in registered:
            del cluster.workers[name]
    if not missing_workers(cluster) - registered:  # a name still registered: wait for it
        return False
    try:  # the same size: no spec changes, only the missing workers are started
        cluster.scale(len(cluster.worker_spec))
    except Exception:  # closing meanwhile: nothing to heal
        return False
    return True


_ENDED = (Status.closed, Status.failed)


def missing_workers(cluster: SpecCluster) -> set:
    """Names in the cluster's spec without a worker object (closed and dropped)."""
    return set(cluster.worker_spec) - set(cluster.workers)
