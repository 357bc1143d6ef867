"""`Run` against a fake clock: durations, rates and the observer throttle read the clock given."""

from __future__ import annotations

from helpers import FakeClock

from dask_magic.engine.results import ItemOutcome, RunSnapshot
from dask_magic.engine.run import UPDATE_INTERVAL, Run


class Recorder:
    def __init__(self) -> None:
        self.updates: list[RunSnapshot] = []
        self.finished: list[RunSnapshot] = []

    def update(self, snapshot: RunSnapshot) -> None:
        self.updates.append(snapshot)

    def finish(self, snapshot: RunSnapshot) -> None:
        self.finished.append(snapshot)


def _run(clock: FakeClock, items: int = 10) -> tuple[Run, Recorder]:
    run = Run(list(range(items)), clock=clock)
    view = Recorder()
    run.observers.append(view)
    return run, view


def test_elapsed_rate_and_eta_come_from_the_clock() -> None:
    clock = FakeClock(1000.0)
    run, view = _run(clock)
    run.begin(range(10))
    clock.advance(2.0)
    run.add([ItemOutcome(i, "done") for i in range(4)])
    snapshot = run.snapshot()
    assert (snapshot.started, snapshot.elapsed) == (1000.0, 2.0)
    assert (snapshot.rate, snapshot.eta) == (2.0, 3.0)
    clock.advance(1.0)
    run.add([ItemOutcome(i, "done") for i in range(4, 10)])
    run.end("completed")
    clock.advance(50.0)  # after the end, the duration stays put
    assert run.duration == 3.0 and view.finished[-1].elapsed == 3.0


def test_updates_are_throttled_to_one_per_interval() -> None:
    clock = FakeClock()
    run, view = _run(clock)
    run.begin(range(10))  # the first update is forced
    for _ in range(9):
        clock.advance(0.4 * UPDATE_INTERVAL)
        run.tick(running=1)
    # ticks 0.4 interval apart: an update on every third tick (1.2 intervals) after the first
    assert len(view.updates) == 1 + 3


def test_a_clock_set_back_does_not_hold_updates_back() -> None:
    clock = FakeClock()
    run, view = _run(clock)
    run.begin(range(10))
    clock.advance(-3600.0)  # the wall clock jumps back an hour
    run.tick(running=1)
    assert len(view.updates) == 2
