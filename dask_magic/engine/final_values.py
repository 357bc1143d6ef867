"""Bring the stashed last bindings of a run back from the workers, and clear the stash.

`fetch_final_values` runs in the kernel; `_fetch_here` and `_drop_here` run on the workers
(through ``client.run``), so this module imports no Dask.
"""

from __future__ import annotations

from typing import Any

from . import worker


def fetch_final_values(
    client: Any, stash_key: str, wanted: dict[str | None, dict[str, int]]
) -> dict[str, Any]:
    """Bring back the stashed last bindings in ``wanted`` and clear the run's stash everywhere.

    One ``client.run`` round trip when something is wanted; a fire-and-forget clean-up when not.
    """
    if not any(wanted.values()):
        _drop_everywhere(client, stash_key)
        return {}
    by_worker = {addr: names for addr, names in wanted.items() if addr}
    replies = client.run(_fetch_here, stash_key, by_worker)
    values: dict[str, Any] = {}
    for reply in replies.values():
        values.update(reply)
    return values


def _drop_everywhere(client: Any, stash_key: str) -> None:
    """Clear the run's stash on every worker without waiting for the round trip.

    The workers' stash is bounded anyway (`stash._STASH_RUNS_KEPT`), so a lost message costs
    nothing; ``client.run(..., wait=False)`` would still wait for the scheduler's reply.
    """
    if getattr(client, "asynchronous", False) or client.status != "running":
        return

    async def send() -> None:
        try:
            await client._run(_drop_here, stash_key, wait=False)
        except Exception:
            pass

    client.loop.add_callback(send)


async def _drop_here(stash_key: str) -> None:
    worker.drop_stash(stash_key)


def _fetch_here(
    stash_key: str, by_worker: dict[str, dict[str, int]], dask_worker: Any = None
) -> dict[str, Any]:
    address: str = getattr(dask_worker, "address", "")  # no worker: no stash of its own
    return worker.fetch_stash(stash_key, by_worker.get(address, {}))
