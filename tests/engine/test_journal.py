"""The journal's SQLite store, on real files: write, read, evict, damage, read-only, two writers."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from dask_magic.engine.journal import FILENAME, Batch, Journal


def _entry(n: int, run: str = "r1", size: int = 10, status: str = "done") -> Batch:
    """A batch of one item ``i<n>`` (id ``k<n>``), done or failed."""
    failed = [0] if status == "failed" else []
    return Batch(f"k{n}", run, "e", [f"i{n}"], failed, bytes([n % 256]) * size)


def _get(store: Journal, ids: list[str]) -> dict[str, bytes]:
    return store.outcomes(ids)[0]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _journal(tmp_path, **kw) -> tuple[Journal, list[str]]:
    said: list[str] = []
    return Journal(tmp_path, warn=said.append, **kw), said


def test_write_then_read_back(tmp_path):
    store, said = _journal(tmp_path)
    batches = [_entry(1), _entry(2), _entry(3, status="failed")]
    assert store.put(batches, labels={"r1": "for x in xs:"})
    found = _get(store, ["k1", "k2", "k9"])
    assert found == {"k1": b"\x01" * 10, "k2": b"\x02" * 10}
    listed = store.listing("r1", "e")
    assert [(b.id, b.keys, b.failed) for b in listed] == [(b.id, b.keys, b.failed) for b in batches]
    assert store.listing("r1", "other") == [] and len(store.listing()) == 3
    (info,) = store.runs()
    assert (info.label, info.items, info.size) == ("for x in xs:", 3, store.size())
    assert store.size() > 30
    assert (tmp_path / ".gitignore").read_text() == "*\n"
    assert not said
    # a second connection (another kernel) sees the same rows
    assert _get(Journal(tmp_path), ["k1"]) == {"k1": b"\x01" * 10}


def test_overrides_drop_and_clear(tmp_path):
    store, _ = _journal(tmp_path)
    store.put([_entry(1), _entry(2)], {("k1", 0): b"bound"})
    store.put([], {("k2", 0): None})  # struck out later
    assert store.outcomes(["k1", "k2"])[1] == {("k1", 0): b"bound", ("k2", 0): None}
    store.drop(["k1"])
    assert set(_get(store, ["k1", "k2"])) == {"k2"} and store.outcomes(["k1"])[1] == {}
    store.clear()
    assert _get(store, ["k2"]) == {} and store.runs() == [] and store.size() == 0


def test_size_cap_evicts_the_oldest_runs(tmp_path):
    clock = _Clock()
    store, _ = _journal(tmp_path, clock=clock)
    for age, run in enumerate(["old", "middle", "new"]):
        clock.now = 1000.0 + age
        store.put([_entry(10 * age + n, run=run, size=100) for n in range(3)])
    clock.now = 2000.0
    store.touch("old")  # restored from just now: the oldest in use is "middle"
    sizes = {info.run_key: info.size for info in store.runs()}
    assert sum(sizes.values()) == store.size()
    assert store.evict(limit=store.size() - sizes["middle"], keep="new") == ["middle"]
    assert {i.run_key for i in store.runs()} == {"old", "new"}
    assert store.evict(limit=10, keep="new") == ["old"]  # never the run being written
    assert store.size() == sizes["new"]


def test_truncated_database_is_set_aside(tmp_path):
    store, _ = _journal(tmp_path)
    store.put([_entry(n, size=5000) for n in range(50)])
    store.close()
    path = tmp_path / FILENAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    for suffix in ("-wal", "-shm"):
        (tmp_path / (FILENAME + suffix)).unlink(missing_ok=True)
    again, said = _journal(tmp_path)
    assert _get(again, ["k1"]) == {}  # nothing read from the damaged file, no exception
    assert again.put([_entry(1)]) and _get(again, ["k1"])  # a fresh one works
    assert len(said) == 1 and "damaged" in said[0] and "set aside" in said[0]
    assert len(list(tmp_path.glob(f"{FILENAME}.damaged-*"))) == 1


def test_garbage_file_is_set_aside(tmp_path):
    (tmp_path / FILENAME).write_bytes(b"this is not sqlite" * 100)
    store, said = _journal(tmp_path)
    assert store.put([_entry(1)]) and _get(store, ["k1"])
    assert "damaged" in said[0]


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_folder_warns_once_and_goes_on(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        store, said = _journal(folder)
        assert not store.on
        assert store.put([_entry(1)]) is False
        assert _get(store, ["k1"]) == {} and store.runs() == []
        assert len(said) == 1 and "goes on without the journal" in said[0]
    finally:
        folder.chmod(stat.S_IRWXU)


def test_unwritable_folder_warns_once_and_goes_on(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # the journal folder would have to be inside a plain file
    store, said = _journal(blocker / "journal")
    assert not store.on and store.put([_entry(1)]) is False and _get(store, ["k1"]) == {}
    assert len(said) == 1 and "goes on without the journal" in said[0]


def test_a_failing_write_switches_it_off_with_one_warning(tmp_path, monkeypatch):
    store, said = _journal(tmp_path)
    store.put([_entry(1)])

    monkeypatch.setattr(store, "_connect", lambda: _Failing())
    assert store.put([_entry(2)]) is False
    assert store.put([_entry(3)]) is False
    assert len(said) == 1 and "disk is full" in said[0]


class _Failing:
    def execute(self, *args):
        raise sqlite3.OperationalError("database or disk is full")

    def close(self):
        pass


def _writer(folder: str, start: int, count: int) -> None:
    store = Journal(Path(folder), warn=print)
    for n in range(start, start + count, 10):
        store.put([_entry(k, run=f"p{start}") for k in range(n, n + 10)])
    store.close()


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    Journal(tmp_path).close()  # the schema exists before they race
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s, 500)) for s in (0, 10_000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    keys = [f"k{n}" for n in [*range(500), *range(10_000, 10_500)]]
    found = _get(Journal(tmp_path), keys)
    assert len(found) == 1000
    db = sqlite3.connect(tmp_path / FILENAME)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_packed_rows_read_back_and_rows_of_older_versions_too(tmp_path):
    import pickle

    store, said = _journal(tmp_path)
    outcomes = pickle.dumps([("call", "out", (), "append", (i,), {}) for i in range(2000)])
    keys = [repr(i) for i in range(2000)]
    batch = Batch("big", "r1", "e", keys, [3], outcomes)
    assert store.put([batch])
    (listed,) = store.listing("r1", "e")
    assert (listed.keys, listed.failed) == (keys, [3])
    assert _get(store, ["big"]) == {"big": outcomes}
    assert store.size() < len(outcomes) / 2  # stored compressed
    # a row as an older version wrote it: keys pickled as a list, outcomes raw
    with sqlite3.connect(tmp_path / FILENAME) as db:
        old_keys = pickle.dumps((["a", "b"], []), protocol=5)
        row = ("old", "r1", "e", 2, 10, 0.0, old_keys, outcomes)
        db.execute("INSERT INTO batches VALUES (?,?,?,?,?,?,?,?)", row)
    assert [b.keys for b in store.listing("r1", "e")] == [keys, ["a", "b"]]
    assert _get(store, ["old"]) == {"old": outcomes}
    assert store.put([Batch("none", "r1", "e", [], [])])  # a batch of no items
    assert [b.keys for b in store.listing("r1", "e")][-1] == []
    assert not said


def test_a_folder_found_usable_is_looked_at_again_each_time(tmp_path):
    import shutil

    from dask_magic.engine.journal_folder import usable

    folder = tmp_path / ".dask-magic"
    assert usable(folder) and (folder / ".gitignore").read_text() == "*\n"
    assert usable(folder)  # the cheap look: still there
    shutil.rmtree(folder)  # deleted between two cells: made again
    assert usable(folder) and (folder / ".gitignore").is_file()
    shutil.rmtree(folder)
    folder.write_text("")  # now a plain file: not usable, whatever an earlier look found
    assert not usable(folder)
