"""The scheduler's identity (its address, services and every worker), asked for directly.

`Client.scheduler_info` fetches the identity into the client's cache and then returns the
cache, and the client refreshes that cache on its own timer (every 2 s by default, without
the workers' details since distributed 2025): when the refresh lands in between, the caller
reads a cluster of 0 workers. So the scheduler is asked here and its answer returned as is.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["scheduler_identity"]


def scheduler_identity(client: Any) -> dict[str, Any]:
    """``client``'s scheduler identity with every worker (an asynchronous client: its cache,
    since no event loop can be waited on from here)."""
    if getattr(client, "asynchronous", False):
        return dict(client.scheduler_info())
    # A scheduler from before the n_workers argument lists every worker, and would log the
    # unknown argument as an error: the client's own signature tells which it is.
    if "n_workers" in inspect.signature(client.scheduler_info).parameters:
        try:
            return dict(client.sync(client.scheduler.identity, n_workers=-1))
        except TypeError:  # a newer client than its scheduler
            pass
    return dict(client.sync(client.scheduler.identity))
