"""Small SQLite helpers of the journal: one transaction, a damaged file, chunks of keys, and
the thread that writes behind the run."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error): one batched commit."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        else:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:  # the failed statement may have ended it already
                pass


def damaged(exc: Exception) -> bool:
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


def chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


_WRITER: ThreadPoolExecutor | None = None


def writer() -> ThreadPoolExecutor:
    """One thread for every journal of the process: writes land in the order they were sent."""
    global _WRITER
    if _WRITER is None:
        _WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dask-magic-journal")
    return _WRITER
