"""The journal: an embedded SQLite store of finished items, so that a dead kernel loses nothing.

One row per item key (see `dask_magic.engine.journal_keys`): the pickled `ItemOutcome` of a
done item, or a marker row for a failed one (so ``--why`` can say "failed before"). Rows are
grouped by the *run key* (the loop's normalised code), which is what ``%parallel_journal``
lists and what the size cap evicts, oldest first.

The database lives in ``.dask-magic/journal.sqlite`` under the kernel's working directory
(with a ``.gitignore`` of ``*``), or in ``~/.cache/dask-magic`` when that folder cannot be
written; ``dask-magic.journal.path`` (dask config) or ``DASK_MAGIC_JOURNAL`` (environment)
name another folder (`resume.configured_folder`). WAL mode and a busy timeout let two
kernels share it.

Nothing here raises at the caller for a storage problem: a read-only folder, a full disk or
a locked file gives one warning line and the journal switches itself off; a damaged file is
set aside (``journal.sqlite.damaged-<time>``) and a fresh one started. This module knows
nothing of runs, plans or IPython.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILENAME = "journal.sqlite"
#: seconds a writer waits for another kernel's transaction before giving up on one write
BUSY_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    run_key TEXT NOT NULL,
    item_key TEXT NOT NULL,
    env_key TEXT NOT NULL,
    file_key TEXT NOT NULL,
    status TEXT NOT NULL,
    size INTEGER NOT NULL,
    used REAL NOT NULL,
    blob BLOB
);
CREATE INDEX IF NOT EXISTS items_item ON items (item_key);
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    used REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Entry:
    """One item as the journal keeps it (``blob`` is None for a failed item)."""

    key: str
    run_key: str
    item_key: str
    env_key: str
    file_key: str
    status: str  # "done" or "failed"
    blob: bytes | None = None


@dataclass(frozen=True)
class RunInfo:
    """One journaled loop, as ``%parallel_journal`` lists it."""

    run_key: str
    label: str
    items: int
    size: int
    used: float


def _usable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def pick_folder(configured: Path | None = None, cwd: Path | None = None) -> Path | None:
    """Where the journal lives: ``configured``, else ``./.dask-magic``, else the user cache."""
    candidates = (
        [configured]
        if configured
        else [
            (cwd or Path.cwd()) / ".dask-magic",
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dask-magic",
        ]
    )
    return next((folder for folder in candidates if _usable(folder)), None)


def _warn(message: str) -> None:
    print(f"dask-magic: {message}", file=sys.stderr)


class Journal:
    """The SQLite store (see the module docstring); every method is safe to call when off.

    Parameters
    ----------
    folder:
        Where ``journal.sqlite`` lives (see `pick_folder`); None: the journal is off.
    warn:
        Called with one line when the journal has to switch itself off or set a file aside.
    clock:
        ``time.time`` unless a test passes its own: the age of rows, for eviction.
    """

    def __init__(
        self,
        folder: Path | None = None,
        *,
        warn: Callable[[str], None] = _warn,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.warn = warn
        self.clock = clock
        self.folder = folder
        self.problem = ""  # why the journal is off, once it is
        self._db: sqlite3.Connection | None = None
        if self.folder is None:
            self._off("no writable folder for the journal (./.dask-magic, ~/.cache/dask-magic)")
        elif folder is not None and not _usable(folder):
            self._off(f"cannot write the journal folder {folder}")

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / FILENAME

    @property
    def on(self) -> bool:
        return not self.problem

    def _off(self, why: str) -> None:
        if not self.problem:
            self.problem = why
            self.warn(f"{why}; the run goes on without the journal")
        self.close()

    # -- the connection ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection | None:
        if self._db is not None or not self.on:
            return self._db
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if _damaged(exc):
                self._set_aside(exc)
                try:
                    self._db = self._open()
                except sqlite3.Error as again:
                    self._off(f"the journal {self.path} cannot be opened ({again})")
            else:
                self._off(f"the journal {self.path} cannot be opened ({exc})")
        return self._db

    def _open(self) -> sqlite3.Connection:
        assert self.path is not None  # only called while the journal is on
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _set_aside(self, exc: Exception) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.path
        assert path is not None
        target = path.with_name(f"{path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{path}{suffix}")
            if part.exists():
                part.replace(Path(f"{target}{suffix}"))
        self.warn(
            f"the journal {path} was damaged ({exc}): set aside as {target.name}, started anew"
        )

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            finally:
                self._db = None

    def _do(self, action: Callable[[sqlite3.Connection], Any], default: Any = None) -> Any:
        """Run ``action`` on the database; a storage error switches the journal off."""
        db = self._connect()
        if db is None:
            return default
        try:
            return action(db)
        except sqlite3.DatabaseError as exc:
            if _damaged(exc):
                self.close()
                self._set_aside(exc)
                return default
            self._off(f"the journal {self.path} cannot be used ({exc})")
            return default

    # -- reading and writing ---------------------------------------------------------------------
    def get(self, keys: Sequence[str], failed: set[str] | None = None) -> dict[str, bytes]:
        """The stored outcomes of the done items among ``keys``: ``{key: blob}``.

        ``failed``, if given, receives the keys among ``keys`` stored as failed.
        """

        def read(db: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for chunk in _chunks(list(dict.fromkeys(keys)), 500):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, blob FROM items WHERE key IN ({marks})"
                for key, blob in db.execute(query, chunk):
                    if blob is not None:
                        found[key] = blob
                    elif failed is not None:
                        failed.add(key)
            return found

        return self._do(read, {})

    def history(self, item_keys: Sequence[str]) -> list[Entry]:
        """Every row (done or failed, any code) of these items: what ``--why`` compares to."""

        def read(db: sqlite3.Connection) -> list[Entry]:
            found: list[Entry] = []
            for chunk in _chunks(list(dict.fromkeys(item_keys)), 500):
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    "SELECT key, run_key, item_key, env_key, file_key, status FROM items "
                    f"WHERE item_key IN ({marks})",
                    chunk,
                )
                found.extend(Entry(*row) for row in rows)
            return found

        return self._do(read, [])

    def put(self, entries: Iterable[Entry], labels: dict[str, str] | None = None) -> bool:
        """Write ``entries`` (and touch their runs) in one transaction; False if it failed."""
        now = self.clock()
        rows = [
            (
                e.key,
                e.run_key,
                e.item_key,
                e.env_key,
                e.file_key,
                e.status,
                len(e.blob or b""),
                now,
                e.blob,
            )
            for e in entries
        ]
        runs = {
            (run_key, (labels or {}).get(run_key, ""), now) for run_key, *_ in (r[1:] for r in rows)
        }

        def write(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                db.executemany("INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?,?,?)", rows)
                db.executemany(
                    "INSERT INTO runs VALUES (?,?,?) ON CONFLICT(run_key) DO UPDATE SET "
                    "used=excluded.used, label=CASE WHEN excluded.label='' THEN runs.label "
                    "ELSE excluded.label END",
                    sorted(runs),
                )
            return True

        return bool(rows) and self._do(write, False)

    def forget(self, keys: Iterable[str]) -> None:
        """Drop these items (an item whose ordered part failed after it was written)."""
        keys = list(keys)

        def drop(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany("DELETE FROM items WHERE key=?", [(k,) for k in keys])

        if keys:
            self._do(drop)

    def touch(self, run_key: str) -> None:
        """Mark a run as used now (restoring counts as use: eviction takes the oldest)."""
        self._do(
            lambda db: db.execute("UPDATE runs SET used=? WHERE run_key=?", (self.clock(), run_key))
        )

    # -- what %parallel_journal shows and does --------------------------------------------------
    def runs(self) -> list[RunInfo]:
        """Journaled loops, most recently used first, with their item counts and sizes."""
        query = (
            "SELECT r.run_key, r.label, COUNT(i.key), COALESCE(SUM(i.size), 0), r.used "
            "FROM runs r LEFT JOIN items i ON i.run_key = r.run_key "
            "GROUP BY r.run_key ORDER BY r.used DESC"
        )
        return self._do(lambda db: [RunInfo(*row) for row in db.execute(query)], [])

    def size(self) -> int:
        """Bytes of stored outcomes (the size cap counts these)."""
        return self._do(
            lambda db: db.execute("SELECT COALESCE(SUM(size), 0) FROM items").fetchone()[0], 0
        )

    def evict(self, limit: int, keep: str = "") -> list[str]:
        """Drop the oldest runs (never ``keep``) until the items fit in ``limit`` bytes."""

        def drop(db: sqlite3.Connection) -> list[str]:
            total = db.execute("SELECT COALESCE(SUM(size), 0) FROM items").fetchone()[0]
            dropped: list[str] = []
            if total <= limit:
                return dropped
            sizes = db.execute(
                "SELECT r.run_key, COALESCE(SUM(i.size), 0) FROM runs r LEFT JOIN items i "
                "ON i.run_key = r.run_key GROUP BY r.run_key ORDER BY r.used ASC"
            ).fetchall()
            with _transaction(db):
                for run_key, size in sizes:
                    if total <= limit:
                        break
                    if run_key == keep:
                        continue
                    db.execute("DELETE FROM items WHERE run_key=?", (run_key,))
                    db.execute("DELETE FROM runs WHERE run_key=?", (run_key,))
                    total -= size
                    dropped.append(run_key)
            return dropped

        return self._do(drop, [])

    def clear(self) -> None:
        """Forget everything (``%parallel_journal --clear``)."""

        def drop(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute("DELETE FROM items")
                db.execute("DELETE FROM runs")
            db.execute("VACUUM")

        self._do(drop)


class _transaction:
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


def _damaged(exc: Exception) -> bool:
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
