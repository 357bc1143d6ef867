"""When a run's journal writes its batches: soon while the run is young, then at most every
`FLUSH_SECONDS`, and everything by the end of `finish` (a real SQLite file, a test clock)."""

from __future__ import annotations

from dask_magic.engine.journal import Journal
from dask_magic.engine.results import ItemOutcome
from dask_magic.engine.resume import FLUSH_SECONDS, PassJournal
from dask_magic.rewrite import rewrite_loop


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _journal(tmp_path, clock: Clock, n: int) -> tuple[Journal, PassJournal]:
    store = Journal(tmp_path)
    plan = rewrite_loop("for x in xs:\n    out.append(x + 1)\n")
    run = PassJournal(store, plan, {"xs": list(range(n)), "out": []}, list(range(n)), clock=clock)
    restored, to_run = run.split(range(n))
    assert restored == [] and to_run == list(range(n))
    return store, run


def _stored(store: Journal, run: PassJournal) -> int:
    """Items written so far (what a dead kernel would find)."""
    store.settle()
    return sum(len(batch.keys) for batch in store.listing(run.run_key, run.env_key))


def _done(*indices: int) -> list[ItemOutcome]:
    return [ItemOutcome(index=i, status="done") for i in indices]


def test_a_young_run_writes_its_first_batch_at_once_and_then_ever_less_often(tmp_path):
    clock = Clock()
    store, run = _journal(tmp_path, clock, 8)
    clock.now += 0.010
    run.record(_done(0, 1))  # the first batch of a young run: written behind, now
    assert _stored(store, run) == 2
    clock.now += 0.005  # 15 ms into the run, 5 ms after the last write: not yet
    run.record(_done(2, 3))
    assert _stored(store, run) == 2
    clock.now += 0.006  # 21 ms in, 11 since the last write (which was 10 ms in): due
    run.record(_done(4, 5))
    assert _stored(store, run) == 6
    clock.now += 0.001
    run.record(_done(6, 7))
    assert _stored(store, run) == 6
    run.finish({}, {})  # the cell ends with everything written
    assert _stored(store, run) == 8
    store.close()


def test_an_old_run_writes_every_flush_seconds(tmp_path):
    clock = Clock()
    store, run = _journal(tmp_path, clock, 6)
    clock.now += 10 * FLUSH_SECONDS
    run.record(_done(0, 1))
    clock.now += FLUSH_SECONDS * 0.9  # the run is old: its writes wait their FLUSH_SECONDS
    run.record(_done(2, 3))
    assert _stored(store, run) == 2
    clock.now += FLUSH_SECONDS * 0.2
    run.record(_done(4, 5))
    assert _stored(store, run) == 6
    store.close()
