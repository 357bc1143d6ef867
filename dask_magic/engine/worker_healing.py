"""Bring back a worker that a LocalCluster dropped after restarting it twice in a row.

distributed's `SpecCluster` (what `LocalCluster` is) answers every worker removal with a check
``distributed.deploy.lost-worker-timeout`` (15 s) later: if no worker of that name is
registered at that moment, it closes the worker's nanny for good. A restart is a removal, so a
worker that ``--timeout`` restarts again while that check is pending, and that is still
starting when it runs, is lost: the cluster stays a worker short for the rest of the session.

After each restart, `heal_later` looks once the check has run, and asks the cluster (its own
``scale``, to the size of its spec) to start again every worker of its spec that it no longer
runs. A cluster that is not a SpecCluster (a scheduler started elsewhere, whose nannies
restart their workers themselves) is left alone.
"""

from __future__ import annotations

import threading
from typing import Any

import dask.config
from dask.utils import parse_timedelta
from distributed.core import Status
from distributed.deploy.spec import SpecCluster

#: Seconds past the cluster's own check, for a removal that reached it late.
MARGIN = 5.0


def heal_later(client: Any) -> threading.Timer | None:
    """Heal the client's cluster once the lost-worker check of a removal now has run."""
    cluster = getattr(client, "cluster", None)
    if not isinstance(cluster, SpecCluster):
        return None
    check = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"), "s")
    timer = threading.Timer(check + MARGIN, heal, args=(cluster,))
    timer.name = "dask-magic-heal"
    timer.daemon = True
    timer.start()
    return timer


def heal(cluster: SpecCluster) -> bool:
    """Start again the workers of the cluster's spec it no longer runs; True if any."""
    if cluster.status != Status.running or not missing_workers(cluster):
        return False
    try:  # the same size: no spec changes, only the missing workers are started
        cluster.scale(len(cluster.worker_spec))
    except Exception:  # closing meanwhile: nothing to heal
        return False
    return True


def missing_workers(cluster: SpecCluster) -> set:
    """Names in the cluster's spec without a worker object (closed and dropped)."""
    return set(cluster.worker_spec) - set(cluster.workers)
