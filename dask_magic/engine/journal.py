"""The journal: an embedded SQLite store of finished items, so that a dead kernel loses nothing.

One row per *batch* of items (a task's outcomes as the worker sent them, compressed but
not pickled again: `journal_pack`), with the batch's item keys beside it (see
`dask_magic.engine.journal_keys`) and the positions of its failed items (so ``--why`` can
say "failed before"). An ``overrides`` row replaces one item's bound values (the last
values of a run, fetched from the workers after it) or strikes it out (its ordered part
failed after it was written). Rows are grouped by the *run key* (the loop's normalised
code) and the *env key* (what the body reads from the notebook), which is what a lookup
reads; ``%parallel_journal`` lists runs and the size cap evicts them, oldest first.

The database lives in ``.dask-magic/journal.sqlite`` under the kernel's working directory
(with a ``.gitignore`` of ``*``), or in ``~/.cache/dask-magic`` when that folder cannot be
written; ``dask-magic.journal.path`` (dask config) or ``DASK_MAGIC_JOURNAL`` (environment)
name another folder (`journal_setup.configured_folder`). WAL mode and a busy timeout let two
kernels share it.

Nothing here raises at the caller for a storage problem: a read-only folder, a full disk or
a locked file gives one warning line and the journal switches itself off; a damaged file is
set aside (``journal.sqlite.damaged-<time>``) and a fresh one started. This module knows
nothing of runs, plans or IPython.
"""

from __future__ import annotations

import pickle
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .journal_folder import pick_folder, usable
from .journal_pack import pack_blob, pack_keys, unpack_blob, unpack_keys
from .journal_sql import SCHEMA, chunks, damaged, transaction, writer

__all__ = ["FILENAME", "Batch", "Journal", "RunInfo", "pick_folder"]

FILENAME = "journal.sqlite"
#: seconds a writer waits for another kernel's transaction before giving up on one write
BUSY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Batch:
    """One batch of items as the journal keeps it.

    ``keys`` are the item keys by position, ``failed`` the positions of failed items, and
    ``blob`` the outcomes (whatever loads back as the list of them, in position order;
    empty where `Journal.listing` leaves them out).
    """

    id: str
    run_key: str
    env_key: str
    keys: list[str]
    failed: list[int]
    blob: bytes = b""


@dataclass(frozen=True)
class RunInfo:
    """One journaled loop, as ``%parallel_journal`` lists it."""

    run_key: str
    label: str
    items: int
    size: int
    used: float


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
        # one connection, used by the caller and by the writer thread (`behind`) in turn
        self._lock = threading.RLock()
        self._writes: list[Future] = []
        if self.folder is None:
            self._off("no writable folder for the journal (./.dask-magic, ~/.cache/dask-magic)")
        elif folder is not None and not usable(folder):
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
            if damaged(exc):
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
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            # IMMEDIATE: a deferred transaction that reads the schema and then writes fails
            # at once, without waiting, when another kernel wrote in between
            db.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")  # one commit, not per table
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            if "source" not in columns:  # a journal written before runs kept their cell
                db.execute("ALTER TABLE runs ADD COLUMN source TEXT NOT NULL DEFAULT ''")
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
        with self._lock:
            if self._db is not None:
                try:
                    self._db.close()
                finally:
                    self._db = None

    def _do(self, action: Callable[[sqlite3.Connection], Any], default: Any = None) -> Any:
        """Run ``action`` on the database; a storage error switches the journal off."""
        with self._lock:
            return self._do_locked(action, default)

    def _do_locked(self, action: Callable[[sqlite3.Connection], Any], default: Any) -> Any:
        db = self._connect()
        if db is None:
            return default
        try:
            return action(db)
        except sqlite3.DatabaseError as exc:
            if damaged(exc):
                self.close()
                self._set_aside(exc)
                return default
            self._off(f"the journal {self.path} cannot be used ({exc})")
            return default

    # -- reading and writing ---------------------------------------------------------------------
    def listing(self, run_key: str | None = None, env_key: str | None = None) -> list[Batch]:
        """The batches stored for ``run_key`` and ``env_key`` (every batch if ``run_key`` is
        None: what ``--why`` compares to; of any inputs if ``env_key`` is None), oldest first,
        without their outcomes."""

        def read(db: sqlite3.Connection) -> list[Batch]:
            query = "SELECT id, run_key, env_key, keys FROM batches"
            args: tuple[str, ...] = ()
            if run_key is not None and env_key is not None:
                query += " WHERE run_key=? AND env_key=?"
                args = (run_key, env_key)
            elif run_key is not None:
                query += " WHERE run_key=?"
                args = (run_key,)
            found = []
            for row_id, run, env, blob in db.execute(query + " ORDER BY rowid", args):
                item_keys, failed = unpack_keys(blob)
                found.append(Batch(row_id, run, env, item_keys, failed))
            return found

        return self._do(read, [])

    def outcomes(self, ids: Sequence[str]) -> tuple[dict[str, bytes], dict[tuple[str, int], Any]]:
        """The blobs of these batches, and their overrides: ``{(id, pos): bound or None}``."""

        def read(db: sqlite3.Connection) -> tuple[dict[str, bytes], dict[tuple[str, int], Any]]:
            blobs: dict[str, bytes] = {}
            overrides: dict[tuple[str, int], Any] = {}
            for chunk in chunks(list(dict.fromkeys(ids)), 500):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT id, blob FROM batches WHERE id IN ({marks})"
                blobs.update((i, unpack_blob(blob)) for i, blob in db.execute(query, chunk))
                query = f"SELECT batch, pos, bound FROM overrides WHERE batch IN ({marks})"
                for batch, pos, bound in db.execute(query, chunk):
                    overrides[(batch, pos)] = bound
            return blobs, overrides

        return self._do(read, ({}, {}))

    def put(
        self,
        batches: Iterable[Batch],
        overrides: Mapping[tuple[str, int], bytes | None] | None = None,
        labels: Mapping[str, str] | None = None,
        sources: Mapping[str, str] | None = None,
        envs: Mapping[str, Sequence[tuple[str, str, str]]] | None = None,
    ) -> bool:
        """Write ``batches`` and ``overrides`` (``None``: the item is struck out) and touch
        their runs (with their ``labels`` and cells' ``sources``, by run key), with what
        their env keys counted (``envs``: `journal_keys.env_parts`), in one transaction;
        False if it failed. Packing (`journal_pack`) happens here, on the
        writer thread where `behind` sends it."""
        now = self.clock()
        rows = []
        for b in batches:
            keys, blob = pack_keys(b.keys, b.failed), pack_blob(b.blob)
            size = len(keys) + len(blob)
            rows.append((b.id, b.run_key, b.env_key, len(b.keys), size, now, keys, blob))
        changes = [(batch, pos, bound) for (batch, pos), bound in (overrides or {}).items()]
        labels, sources = labels or {}, sources or {}
        env_rows = [
            (env, pickle.dumps(list(parts), protocol=5)) for env, parts in (envs or {}).items()
        ]
        runs = {
            (run, labels.get(run, ""), now, sources.get(run, "")) for run in {r[1] for r in rows}
        }

        def write(db: sqlite3.Connection) -> bool:
            with transaction(db):
                db.executemany("INSERT OR REPLACE INTO batches VALUES (?,?,?,?,?,?,?,?)", rows)
                db.executemany("INSERT OR REPLACE INTO overrides VALUES (?,?,?)", changes)
                db.executemany("INSERT OR IGNORE INTO envs VALUES (?,?)", env_rows)
                db.executemany(
                    "INSERT INTO runs (run_key, label, used, source) VALUES (?,?,?,?) "
                    "ON CONFLICT(run_key) DO UPDATE SET used=excluded.used, "
                    "label=CASE WHEN excluded.label='' THEN runs.label ELSE excluded.label END, "
                    "source=CASE WHEN excluded.source='' THEN runs.source "
                    "ELSE excluded.source END",
                    sorted(runs),
                )
            return True

        return bool(rows or changes) and self._do(write, False)

    def env_parts(self, env_keys: Iterable[str]) -> dict[str, list[tuple[str, str, str]]]:
        """What each of these env keys counted, where the journal has it (``--why``)."""

        def read(db: sqlite3.Connection) -> dict[str, list[tuple[str, str, str]]]:
            found: dict[str, list[tuple[str, str, str]]] = {}
            for chunk in chunks(sorted(set(env_keys)), 500):
                marks = ",".join("?" * len(chunk))
                query = f"SELECT env_key, parts FROM envs WHERE env_key IN ({marks})"
                found.update((env, pickle.loads(parts)) for env, parts in db.execute(query, chunk))
            return found

        return self._do(read, {})

    def behind(self, action: Callable[..., Any], *args: Any) -> None:
        """``action(*args)`` (`put`, `drop`) on the writer thread: the run goes on while
        SQLite writes (it releases the GIL). `settle` waits for every such write."""
        self._writes = [w for w in self._writes if not w.done()]
        self._writes.append(writer().submit(action, *args))

    def settle(self) -> None:
        """Wait until everything sent `behind` is written (or failed, with its warning)."""
        writes, self._writes = self._writes, []
        for write in writes:
            write.result()

    def drop(self, ids: Iterable[str]) -> None:
        """Forget these batches (a ``--fresh`` run wrote every one of their items again)."""
        rows = [(i,) for i in ids]

        def delete(db: sqlite3.Connection) -> None:
            with transaction(db):
                db.executemany("DELETE FROM batches WHERE id=?", rows)
                db.executemany("DELETE FROM overrides WHERE batch=?", rows)

        if rows:
            self._do(delete)

    def touch(self, run_key: str) -> None:
        """Mark a run as used now (restoring counts as use: eviction takes the oldest)."""
        self._do(
            lambda db: db.execute("UPDATE runs SET used=? WHERE run_key=?", (self.clock(), run_key))
        )

    def last_source(self) -> str:
        """The cell of the loop used last (``%parallel_retry`` in a new kernel); ``""``."""
        query = "SELECT source FROM runs WHERE source != '' ORDER BY used DESC LIMIT 1"
        return self._do(lambda db: (db.execute(query).fetchone() or ("",))[0], "")

    # -- what %parallel_journal shows and does --------------------------------------------------
    def runs(self) -> list[RunInfo]:
        """Journaled loops, most recently used first, with their item counts and sizes."""
        query = (
            "SELECT r.run_key, r.label, COALESCE(SUM(b.items), 0), COALESCE(SUM(b.size), 0), "
            "r.used FROM runs r LEFT JOIN batches b ON b.run_key = r.run_key "
            "GROUP BY r.run_key ORDER BY r.used DESC"
        )
        return self._do(lambda db: [RunInfo(*row) for row in db.execute(query)], [])

    def size(self) -> int:
        """Bytes of stored outcomes (the size cap counts these)."""
        return self._do(
            lambda db: db.execute("SELECT COALESCE(SUM(size), 0) FROM batches").fetchone()[0], 0
        )

    def evict(self, limit: int, keep: str = "") -> list[str]:
        """Drop the oldest runs (never ``keep``) until the items fit in ``limit`` bytes."""

        def drop(db: sqlite3.Connection) -> list[str]:
            total = db.execute("SELECT COALESCE(SUM(size), 0) FROM batches").fetchone()[0]
            dropped: list[str] = []
            if total <= limit:
                return dropped
            sizes = db.execute(
                "SELECT r.run_key, COALESCE(SUM(b.size), 0) FROM runs r LEFT JOIN batches b "
                "ON b.run_key = r.run_key GROUP BY r.run_key ORDER BY r.used ASC"
            ).fetchall()
            with transaction(db):
                for run_key, size in sizes:
                    if total <= limit:
                        break
                    if run_key == keep:
                        continue
                    db.execute(
                        "DELETE FROM overrides WHERE batch IN "
                        "(SELECT id FROM batches WHERE run_key=?)",
                        (run_key,),
                    )
                    db.execute("DELETE FROM batches WHERE run_key=?", (run_key,))
                    db.execute("DELETE FROM runs WHERE run_key=?", (run_key,))
                    total -= size
                    dropped.append(run_key)
                db.execute("DELETE FROM envs WHERE env_key NOT IN (SELECT env_key FROM batches)")
            return dropped

        return self._do(drop, [])

    def clear(self) -> None:
        """Forget everything (``%parallel_journal --clear``)."""

        def drop(db: sqlite3.Connection) -> None:
            with transaction(db):
                for table in ("batches", "overrides", "envs", "runs"):
                    db.execute(f"DELETE FROM {table}")
            db.execute("VACUUM")

        self._do(drop)
