"""`Run`: the state of one parallel loop, live while it runs and kept afterwards.

A run receives outcomes from the executor (it is the executor's `Sink`), keeps counts, turns
failures into `Failure` records on demand, and tells its observers (the panel, the sidebar
bridge, the text progress line) about it at most ~10 times a second plus once at the end.
A retry continues the same run: the retried items go back to *queued* and the views that
watch the run update in place.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .loaded_batch import LoadedBatch
from .outcome_store import Outcomes
from .results import (
    ClusterInfo,
    Counts,
    ErrorInfo,
    Failure,
    ItemOutcome,
    PartialResult,
    RunningItem,
    RunSnapshot,
    RunStatus,
)
from .tracebacks import short_repr

#: Observers are told at most this often while a run is live.
UPDATE_INTERVAL = 0.1


class Run:
    """One ``%%parallel_for`` loop (or `dask_magic.parallel_for` call) and what became of it.

    Attributes
    ----------
    run_id, name:
        Identity; ``name`` is ``--name NAME`` (the notebook variable bound to the run).
    status:
        A `RunStatus`.
    items:
        The listed loop values, in order.
    outcomes:
        ``{index: ItemOutcome}`` for every item that has ended (done, failed or cancelled);
        an `Outcomes`, which keeps a batch of plain done items as columns until one is read.

    ``clock`` gives the time in seconds (``time.time`` by default): snapshots' ``started``,
    durations, rates and the throttle of observer updates all read it.
    """

    def __init__(
        self,
        items: Sequence[Any],
        *,
        name: str | None = None,
        describe: Callable[[ItemOutcome, Any], Failure] | None = None,
        cell_id: str | None = None,
        on_error: str = "continue",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.run_id = uuid.uuid4().hex[:12]
        self.name = name
        self.items = list(items)
        self.outcomes = Outcomes()
        self.status = RunStatus.PENDING
        self.message = ""
        self.cell_id = cell_id
        self.cluster: ClusterInfo | None = None
        self.on_error = on_error
        self.observers: list[Any] = []
        self.passes = 0
        self.pass_indices: set[int] = set()
        self._loop_state: Any = None
        self._describe = describe
        self._failures: dict[int, tuple[ItemOutcome, Failure]] = {}
        self._tally = {"done": 0, "failed": 0, "timeout": 0, "cancelled": 0}
        self._running = 0
        self._running_now: tuple[tuple[int, float], ...] = ()
        self._pass_start = self._started = self._ended = 0.0
        self._pass_finished = 0
        self._last_emit = 0.0
        self._cancel_requested = False
        self._retry_hook: Callable[..., Run] | None = None
        #: the pass's in-order commit of the ordered part (`engine.commit`), fed by `add`
        self.committer: Any = None
        #: why the run was slower than it could be (the ordered part bounded it), or ""
        self.note = ""
        self._broken_observers: set[int] = set()
        #: the run's side of the journal (`engine.resume.PassJournal`), or None when it is off
        self.journal: Any = None
        #: items taken from the journal instead of run (in this run's latest passes)
        self.restored = 0
        self._clock = clock  # wall-clock seconds; tests pass a fake (as `Bridge` takes one)

    # -- the executor's sink ----------------------------------------------------------------
    def add(
        self,
        outcomes: Sequence[ItemOutcome] = (),
        sent: Sequence[tuple[LoadedBatch, bytes]] = (),
    ) -> None:
        """Items that ended: ``outcomes``, and the batches in ``sent`` with the bytes a worker
        sent each as (the journal keeps those as they are)."""
        kept, tally = self.outcomes, self._tally  # 10,000 tiny items pay each look-up
        ended = list(outcomes)
        for batch, _ in sent:
            plain = kept.add_batch(batch)  # first: it may make an item unusual
            ended += batch.unusual.values()
            tally["done"] += len(plain)
            self._pass_finished += len(plain)
        for outcome in ended:
            previous = kept.status(outcome.index)
            if previous is not None:
                tally[previous] -= 1
            kept[outcome.index] = outcome
            tally[outcome.status] += 1
        self._pass_finished += len(ended)
        if self.journal is not None:
            self.journal.record(outcomes, sent)  # before the commit, which may drop the ops
        if self.committer is not None:
            self.committer.offer(outcomes)
            for batch, _ in sent:
                self.committer.offer_batch(batch)

    def add_restored(self, outcomes: Sequence[ItemOutcome]) -> None:
        """Items taken from the journal: done, committed in order like the others."""
        for outcome in outcomes:
            previous = self.outcomes.status(outcome.index)
            if previous is not None:
                self._tally[previous] -= 1
            self.outcomes[outcome.index] = outcome
            self._tally["done"] += 1
        self.restored += len(outcomes)
        if self.committer is not None:
            self.committer.offer(outcomes)

    def explain(self, index: int) -> str:
        """Why item ``index`` ran in the last pass: new, input changed, code changed, ..."""
        if self.journal is None:
            return "journal off"
        return self.journal.explain(index)

    def clear_views(self) -> None:
        """Before the loop's output is printed: views drawing on the same stream step aside."""
        for observer in self.observers:
            clear = getattr(observer, "clear", None)
            if clear is not None:
                clear()

    def commit_failed(self, index: int, error: ErrorInfo) -> None:
        """Item ``index`` ran, but its ordered part raised in the kernel: it counts as failed."""
        outcome = self.outcomes.get(index)
        if outcome is None:
            return
        if outcome.status != "failed":
            self._tally[outcome.status] -= 1
            self._tally["failed"] += 1
        outcome.status, outcome.error = "failed", error
        outcome.bound, outcome.ops = {}, ()  # what it left bound or recorded does not count
        if self.journal is not None:
            self.journal.forget(index)
        self._failures.pop(index, None)

    def tick(self, running: int, running_now: Sequence[tuple[int, float]] = ()) -> None:
        """``running_now``: (index, seconds running) of the longest-running items, longest first."""
        self._running = running
        self._running_now = tuple(running_now)
        self._emit()

    def should_stop(self) -> bool:
        failed = self._tally["failed"] + self._tally["timeout"]
        return self._cancel_requested or (self.on_error == "raise" and failed > 0)

    # -- life cycle ----------------------------------------------------------------------------
    def begin(self, indices: Sequence[int]) -> None:
        """Start a pass over ``indices`` (all items, or the ones being retried)."""
        for index in indices if self.outcomes else ():  # a first pass has nothing to forget
            previous = self.outcomes.status(index)
            if previous is not None:
                del self.outcomes[index]
                self._tally[previous] -= 1
        self.passes += 1
        self.pass_indices = set(indices)
        self.status = RunStatus.RUNNING
        self.message = ""
        self._cancel_requested = False
        self._pass_start = self._clock()
        self._started = self._started or self._pass_start
        self._pass_finished = 0
        self._emit(force=True)

    def end(self, how: str, message: str = "") -> None:
        """Close the pass: ``how`` is the executor's verdict (completed, interrupted, ...)."""
        self._running = 0
        self._running_now = ()
        self._ended = self._clock()
        if how == "interrupted":
            self.status = RunStatus.INTERRUPTED
        elif how == "lost" or message:
            self.status = RunStatus.ERROR
        elif self._tally["failed"] or self._tally["timeout"] or self._tally["cancelled"]:
            self.status = RunStatus.FAILED
        else:
            self.status = RunStatus.FINISHED
        self.message = message or self._default_message(how) or self.note
        snapshot = self.snapshot()
        for observer in list(self.observers):
            self._notify(observer, "finish", snapshot)

    def _default_message(self, how: str) -> str:
        if how == "interrupted":
            kept = self._tally["done"] + self._tally["failed"] + self._tally["timeout"]
            return f"interrupted: {kept} finished items kept, {self._tally['cancelled']} cancelled"
        cancelled = self._tally["cancelled"]
        if how == "completed" and cancelled:
            which = "1 item was" if cancelled == 1 else f"{cancelled} items were"
            return (
                f"{which} cancelled during the run: the notebook holds the serial loop's "
                f"result without {'it' if cancelled == 1 else 'them'}"
            )
        if how == "lost":
            return "lost the connection to the Dask scheduler; finished items were kept"
        if how == "stopped" and self.on_error == "raise":
            return "stopped at the first failure (--on-error raise)"
        return ""

    def cancel(self) -> None:
        """Ask a live run to stop; finished items are kept (use from another thread)."""
        self._cancel_requested = True

    def retry(self, **options: Any) -> Run:
        """Run the failed and cancelled items again (after a fix) and replay them in order."""
        if self._retry_hook is None:
            raise RuntimeError("this run cannot be retried: it was not started by dask-magic")
        return self._retry_hook(self, **options)

    # -- what views read --------------------------------------------------------------------------
    @property
    def counts(self) -> Counts:
        return Counts(
            total=len(self.items),
            done=self._tally["done"],
            failed=self._tally["failed"],
            running=self._running if self.status is RunStatus.RUNNING else 0,
            cancelled=self._tally["cancelled"],
            restored=self.restored,
            timeout=self._tally["timeout"],
        )

    @property
    def duration(self) -> float:
        """Seconds from the first submit to the end of the last pass (or now, if live)."""
        if not self._started:
            return 0.0
        end = self._clock() if self.status is RunStatus.RUNNING else self._ended
        return max(0.0, end - self._started)

    @property
    def failures(self) -> list[Failure]:
        """Failed and timed-out items in item order, rendered against the notebook's source."""
        found = []
        ended = ("failed", "timeout")
        made = self.outcomes.made()  # a failed item is always made, never columns
        for index in sorted(i for i, o in made.items() if o.status in ended):
            found.append(self._failure(self.outcomes[index]))
        return found

    def _failure(self, outcome: ItemOutcome) -> Failure:
        cached = self._failures.get(outcome.index)
        if cached is not None and cached[0] is outcome:
            return cached[1]
        if self._describe is None:
            raise RuntimeError("no describer for failures")
        failure = self._describe(outcome, self.items[outcome.index])
        self._failures[outcome.index] = (outcome, failure)
        return failure

    @property
    def pending_indices(self) -> list[int]:
        """Items not done: failed, cancelled or never run."""
        return [i for i in range(len(self.items)) if self.outcomes.status(i) != "done"]

    @property
    def results(self) -> list[Any]:
        """Return values of the items that succeeded, in item order (the function API)."""
        peek = self.outcomes.peek
        return [o.value for i in sorted(self.outcomes) if (o := peek(i)) and o.status == "done"]

    def partial(self) -> list[PartialResult]:
        """Every item in item order, with what is known of it now: safe from another thread.

        Meant for a second console on the kernel while the run goes on: done items carry
        their value (the function API's return value), failed and timed-out ones their error,
        the others say ``pending``.
        """
        outcomes = self.outcomes.copy()  # C-level copies: the run's thread may add meanwhile
        found = []
        for index, item in enumerate(self.items):
            outcome = outcomes.peek(index)
            if outcome is None:
                found.append(PartialResult(index, item, "pending"))
                continue
            done = outcome.status == "done"
            error = outcome.error.summary if outcome.error is not None else ""
            found.append(
                PartialResult(index, item, outcome.status, outcome.value if done else None, error)
            )
        return found

    def snapshot(self) -> RunSnapshot:
        counts = self.counts
        elapsed = self.duration
        pass_elapsed = max(
            1e-9,
            (self._clock() if self.status is RunStatus.RUNNING else self._ended) - self._pass_start,
        )
        rate = self._pass_finished / pass_elapsed if self._pass_finished else None
        left = counts.total - counts.finished
        eta = left / rate if rate and self.status is RunStatus.RUNNING else None
        return RunSnapshot(
            run_id=self.run_id,
            name=self.name,
            status=self.status,
            counts=counts,
            started=self._started,
            elapsed=elapsed,
            rate=rate,
            eta=eta,
            cell_id=self.cell_id,
            cluster=self.cluster,
            failures=tuple(self.failures),
            message=self.message,
            running_items=self._running_items(),
        )

    def _running_items(self) -> tuple[RunningItem, ...]:
        if self.status is not RunStatus.RUNNING:
            return ()
        return tuple(
            RunningItem(index, short_repr(self.items[index]), elapsed)
            for index, elapsed in self._running_now
            if 0 <= index < len(self.items) and index not in self.outcomes
        )

    # -- observers --------------------------------------------------------------------------------
    def _emit(self, force: bool = False) -> None:
        now = self._clock()
        # a clock set back (wall time) emits at once rather than holding updates back
        recent = 0 <= now - self._last_emit < UPDATE_INTERVAL
        if not self.observers or (not force and recent):
            return
        self._last_emit = now
        snapshot = self.snapshot()
        for observer in list(self.observers):
            self._notify(observer, "update", snapshot)

    def _notify(self, observer: Any, method: str, snapshot: RunSnapshot) -> None:
        try:
            getattr(observer, method)(snapshot)
        except Exception as exc:  # a broken view must not lose the user's run
            if id(observer) not in self._broken_observers:
                self._broken_observers.add(id(observer))
                warnings.warn(
                    f"dask-magic: a progress view failed: {exc!r}", RuntimeWarning, stacklevel=2
                )

    # -- text -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        c = self.counts
        label = f" {self.name!r}" if self.name else ""
        parts = [f"{c.done} done", f"{c.failed} failed"]
        if c.timeout:
            parts.append(f"{c.timeout} timed out")
        if c.cancelled:
            parts.append(f"{c.cancelled} cancelled")
        restored = f", {c.restored} restored from the journal" if c.restored else ""
        return (
            f"<Run{label} {self.status}: {', '.join(parts)} of {c.total} in {self.duration:.1f} s"
            f"{restored}>"
        )
