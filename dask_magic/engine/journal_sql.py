"""Small SQLite helpers of the journal: one transaction, a damaged file, chunks of keys, and
the thread that writes behind the run."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: ``batches``: one row per batch (`journal_pack`); ``overrides``: one item's last bound
#: values, or None (struck out); ``envs``: what each env key counted, by part (``--why``
#: names what changed); ``runs``: each loop's label, cell and last use.
SCHEMA = """
DROP TABLE IF EXISTS items;
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    run_key TEXT NOT NULL,
    env_key TEXT NOT NULL,
    items INTEGER NOT NULL,
    size INTEGER NOT NULL,
    used REAL NOT NULL,
    keys BLOB NOT NULL,
    blob BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_run ON batches (run_key, env_key);
CREATE TABLE IF NOT EXISTS overrides (
    batch TEXT NOT NULL,
    pos INTEGER NOT NULL,
    bound BLOB,
    PRIMARY KEY (batch, pos)
);
CREATE TABLE IF NOT EXISTS envs (
    env_key TEXT PRIMARY KEY,
    parts BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    used REAL NOT NULL,
    source TEXT NOT NULL DEFAULT ''
);
"""


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
