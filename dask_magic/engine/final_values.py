"""Bring the stashed last bindings of a run back from the workers, and clear the stash.

`fetch_final_values` runs in the kernel; `_fetch_here`, `_take_here` and `_drop_here` run on
the workers (through ``client.run``), so this module imports no Dask.

A worker that ``--timeout`` restarts takes its stash with it: `salvage_stash` takes the
pass's bindings from it first, while it still answers, and `fetch_final_values` looks there
for that worker's names.
"""

from __future__ import annotations

import threading
from typing import Any

from . import stash, worker

#: How long a worker about to be restarted may take to hand over its stash.
SALVAGE_SECONDS = 10.0
#: ``{stash_key: {worker address: {name: (index, value)}}}``, taken before restarts.
_salvaged: dict[str, dict[str, dict[str, tuple[int, Any]]]] = {}
_salvaged_lock = threading.Lock()


def fetch_final_values(
    client: Any,
    stash_key: str,
    wanted: dict[str | None, dict[str, int]],
    stash_made: bool = True,
) -> dict[str, Any]:
    """Bring back the stashed last bindings in ``wanted`` and clear the run's stash everywhere.

    One ``client.run`` round trip when something is wanted; a fire-and-forget clean-up when not,
    and none where no worker can hold a stash for the pass (``stash_made`` False: every item
    came back with its bindings inline, as the only item of a batch does).
    """
    with _salvaged_lock:
        salvaged = _salvaged.pop(stash_key, {})
    if not any(wanted.values()):
        if stash_made:
            _drop_everywhere(client, stash_key)
        return {}
    values: dict[str, Any] = {}
    for addr, names in wanted.items():
        taken = salvaged.get(addr or "", {})
        values.update({n: taken[n][1] for n, i in names.items() if taken.get(n, (None,))[0] == i})
    by_worker = {addr: names for addr, names in wanted.items() if addr and addr not in salvaged}
    replies = client.run(_fetch_here, stash_key, by_worker)
    for reply in replies.values():
        values.update(reply)
    return values


def salvage_stash(client: Any, stash_key: str, address: str, answers: bool = True) -> None:
    """Take the pass's stashed bindings from the worker at ``address`` before its restart.

    A worker that does not answer (``answers`` False: blocked in C code, found by the
    backstop) is not asked, and one that does not reply within `SALVAGE_SECONDS` is given up
    on: their names are then reported as lost, as those of a worker that died are.
    """
    if not answers:
        return
    try:
        replies = client.sync(
            client._run, _take_here, stash_key, workers=[address], callback_timeout=SALVAGE_SECONDS
        )
    except Exception:  # blocked, gone already, or the client is closing
        return
    with _salvaged_lock:
        _salvaged.setdefault(stash_key, {}).update(replies)


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


def _take_here(stash_key: str) -> dict[str, tuple[int, Any]]:
    return stash.take_stash(stash_key)


async def _drop_here(stash_key: str) -> None:
    worker.drop_stash(stash_key)


def _fetch_here(
    stash_key: str, by_worker: dict[str, dict[str, int]], dask_worker: Any = None
) -> dict[str, Any]:
    address: str = getattr(dask_worker, "address", "")  # no worker: no stash of its own
    return worker.fetch_stash(stash_key, by_worker.get(address, {}))
