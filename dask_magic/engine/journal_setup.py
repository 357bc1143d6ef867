"""Where the journal lives, whether it is on, its size cap, and what ``%parallel_journal`` says.

Configuration: ``DASK_MAGIC_JOURNAL`` (environment: ``off``, or a folder) or the dask config
``dask-magic.journal.{enabled,path,max-size}``. One open `Journal` per folder per process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .journal import Journal, pick_folder

DEFAULT_MAX_SIZE = "2GB"

_JOURNALS: dict[str, Journal] = {}
_JOURNALS_OPEN = 4


def _config(name: str, default: Any) -> Any:
    try:
        import dask

        return dask.config.get(f"dask-magic.journal.{name}", default=default)
    except Exception:
        return default


def enabled() -> bool:
    """False where ``DASK_MAGIC_JOURNAL=off`` or ``dask-magic.journal.enabled: false``."""
    if os.environ.get("DASK_MAGIC_JOURNAL", "").lower() in ("off", "0", "false", "no"):
        return False
    return bool(_config("enabled", True))


def configured_folder() -> Path | None:
    """The folder named by ``DASK_MAGIC_JOURNAL`` or ``dask-magic.journal.path``, if any."""
    named = os.environ.get("DASK_MAGIC_JOURNAL") or _config("path", None)
    return Path(named).expanduser() if named else None


def max_size() -> int:
    """The size cap in bytes (``dask-magic.journal.max-size``, default 2GB)."""
    from dask.utils import parse_bytes

    value = _config("max-size", DEFAULT_MAX_SIZE)
    return int(value) if isinstance(value, int | float) else parse_bytes(value)


def shared_journal() -> Journal | None:
    """The process's journal for the folder configured now (one connection per folder)."""
    if not enabled():
        return None
    folder = pick_folder(configured_folder())
    if folder is None:
        return Journal(None)  # warns once: no writable folder
    found = _JOURNALS.pop(str(folder), None)
    if found is None or not found.on:
        found = Journal(folder)
    _JOURNALS[str(folder)] = found  # the most recent last
    while len(_JOURNALS) > _JOURNALS_OPEN:  # the folder moved (config, tests): close the old
        _JOURNALS.pop(next(iter(_JOURNALS))).close()
    return found


def journal_text(clear: bool = False) -> str:
    """What ``%parallel_journal`` prints: where the journal is, its loops and their sizes."""
    from dask.utils import format_bytes

    store = shared_journal()
    if store is None or not store.on:
        return f"dask-magic: the journal is off ({store.problem if store else 'no folder'})"
    if clear:
        store.clear()
        return f"dask-magic: journal {store.path} cleared"
    runs = store.runs()
    lines = [
        f"dask-magic journal: {store.path} ({format_bytes(store.size())} of "
        f"{format_bytes(max_size())}, {len(runs)} loop{'s' if len(runs) != 1 else ''})"
    ]
    for info in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.used))
        size = format_bytes(info.size)
        lines.append(f"  {when}  {info.items:>7,} items  {size:>10}  {info.label or info.run_key}")
    return "\n".join(lines)


def label(plan: Any) -> str:
    """The loop's first line, as ``%parallel_journal`` lists it."""
    lines = plan.source.splitlines()
    loop = lines[plan.loop_lineno - 1] if 0 < plan.loop_lineno <= len(lines) else ""
    return loop.strip()[:80]


def print_why(run: Any, indices: Sequence[int]) -> None:
    """``--why``: one line on stderr per item that runs, saying why it runs."""
    import sys

    from .tracebacks import short_repr

    reasons = run.journal.explain_all(indices) if run.journal else {}
    for index in indices:
        why = reasons.get(index, "journal off")
        print(f"item {index} ({short_repr(run.items[index])}) runs: {why}", file=sys.stderr)


def last_journaled_cell() -> str:
    """The cell (magic line included) of the loop the journal used last; ``""`` if none."""
    store = shared_journal()
    return store.last_source() if store is not None and store.on else ""


def first_loop_line(source: str) -> str:
    """The cell's ``for`` line, to name the loop in a message."""
    return next((ln.strip() for ln in source.splitlines() if ln.lstrip().startswith("for ")), "")
