"""What the kernel says when a worker saw the loop body change an object in place.

The workers report *which* notebook names and items changed (`ItemOutcome.mutated`, see
`dask_magic.engine.fingerprint`); this module turns that into one message per object, with
the line of the body that likely made the change and the fix. Pure: no IPython, no dask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .results import ITEM_MUTATED, ItemOutcome
from .tracebacks import short_repr

__all__ = ["in_place_messages"]

#: Changed items named one by one in the message; the rest are counted.
ITEMS_NAMED = 5
_FIX = (
    "that change does not come back to the notebook. Return values instead (e.g. "
    "`results.append(...)`) and apply them after the loop."
)


def in_place_messages(
    outcomes: Iterable[ItemOutcome],
    items: Sequence[Any],
    source: str,
    line_of: Callable[[str], int | None],
    targets: Sequence[str] = (),
) -> list[str]:
    """One message per notebook object, and one for the items, that changed in place.

    Parameters
    ----------
    outcomes, items:
        The run's outcomes and its listed items (for the item's short repr).
    source:
        The cell as the user sees it (the line the message quotes).
    line_of:
        The line of the body that may change a name in place (None if no line shows it).
    targets:
        The loop target's names: the line that changes an item changes one of them.
    """
    outcomes = list(outcomes)
    names = sorted({n for o in outcomes for n in o.mutated if n != ITEM_MUTATED})
    messages = [
        f"dask-magic: `{name}` was changed by the loop body on a worker"
        f"{_where(line_of(name), source)}; {_FIX}"
        for name in names
    ]
    changed = sorted(o.index for o in outcomes if ITEM_MUTATED in o.mutated)
    if changed:
        lines = [line for t in targets if (line := line_of(t)) is not None]
        messages.append(
            f"dask-magic: {_items(changed, items)} changed by the loop body on a worker"
            f"{_where(min(lines, default=None), source)}; {_FIX}"
        )
    return messages


def _items(indices: list[int], items: Sequence[Any]) -> str:
    named = [f"item {i} ({short_repr(items[i], 60)})" for i in indices[:ITEMS_NAMED]]
    more = len(indices) - len(named)
    text = ", ".join(named) + (f" and {more} more" if more else "")
    return text + (" was" if len(indices) == 1 else " were")


def _where(line: int | None, source: str) -> str:
    lines = source.splitlines()
    if line is None or not 0 < line <= len(lines):
        return ""
    return f" (line {line}: `{lines[line - 1].strip()}`)"
