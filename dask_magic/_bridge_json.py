"""JSON for the sidebar, built from `RunSnapshot` (the shapes are `protocol.ts`'s types).

Sizes are capped so a run with thousands of failures stays a small message: at most
`MAX_ITEMS_PER_GROUP` items per group and `MAX_ITEMS_TOTAL` in all (every group's ``count``
stays exact), and long texts are cut. Only stdlib and `dask_magic.engine.results`.
"""

from __future__ import annotations

import math

from .engine.results import ClusterInfo, Failure, RunSnapshot, group_failures

MAX_ITEMS_PER_GROUP = 50  # failure items sent per group; the group's count stays exact
MAX_ITEMS_TOTAL = 200  # failure items sent per run, over all groups
MAX_GROUPS = 50
MAX_TEXT = 8_000  # characters kept of one traceback
MAX_OUTPUT = 4_000  # characters kept of one item's stdout / stderr


def _number(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become None."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _text(value: str | None, limit: int = MAX_TEXT) -> str:
    if not value:
        return ""
    if len(value) <= limit:
        return value
    return value[:limit] + f"\n… ({len(value) - limit} more characters not shown)"


def _tail(value: str | None, limit: int) -> str:
    """The end of a long output (where the error usually is)."""
    if not value or len(value) <= limit:
        return value or ""
    return f"({len(value) - limit} earlier characters not shown) …\n" + value[-limit:]


def cluster_to_json(info: ClusterInfo | None) -> dict | None:
    """The sidebar's view of a cluster; memory in bytes."""
    if info is None:
        return None
    return {
        "scheduler": info.scheduler,
        "workers": int(info.workers),
        "threads": int(info.threads),
        "memory": int(info.memory),
        "dashboard": info.dashboard or None,
        "local": bool(info.local),
    }


def failure_to_json(failure: Failure) -> dict:
    """One failed item: where it failed, why, and what it printed."""
    error = failure.error
    return {
        "index": failure.index,
        "item": _text(failure.item_repr, 500),
        "type": error.type_name,
        "message": _text(error.message, 2_000),
        "line": failure.line,
        "kind": error.kind,
        "hint": _text(error.hint, 2_000),
        "traceback": _text(failure.traceback or failure.full_traceback or error.summary),
        "stdout": _tail(failure.stdout, MAX_OUTPUT),
        "stderr": _tail(failure.stderr, MAX_OUTPUT),
    }


def _groups_to_json(failures: tuple[Failure, ...]) -> list[dict]:
    groups = []
    budget = MAX_ITEMS_TOTAL
    for label, members in group_failures(failures)[:MAX_GROUPS]:
        first = members[0]
        shown = members[: max(0, min(MAX_ITEMS_PER_GROUP, budget))]
        budget -= len(shown)
        groups.append(
            {
                "label": label,
                "type": first.error.type_name,
                "line": first.line,
                "count": len(members),
                "items": [failure_to_json(f) for f in shown],
            }
        )
    return groups


def run_to_json(snapshot: RunSnapshot) -> dict:
    """The JSON the sidebar gets for one run (``IRun`` in protocol.ts)."""
    counts = snapshot.counts
    return {
        "run_id": snapshot.run_id,
        "name": snapshot.name,
        "status": str(snapshot.status),
        "counts": {
            "total": counts.total,
            "done": counts.done,
            "failed": counts.failed,
            "timeout": counts.timeout,
            "running": counts.running,
            "queued": counts.queued,
            "cancelled": counts.cancelled,
        },
        "started": _number(snapshot.started),
        "elapsed": _number(snapshot.elapsed),
        "rate": _number(snapshot.rate),
        "eta": _number(snapshot.eta),
        "cell_id": snapshot.cell_id,
        "message": _text(snapshot.message, 2_000),
        "retry_of": snapshot.retry_of,
        "running": [
            {"index": r.index, "item": _text(r.item_repr, 500), "elapsed": _number(r.elapsed)}
            for r in snapshot.running_items
        ],
        "failures": {
            "total": len(snapshot.failures),
            "groups": _groups_to_json(snapshot.failures),
        },
        "cluster": cluster_to_json(snapshot.cluster),
    }
