"""Send batches of items to Dask and stream their outcomes: one pass of a run (`DaskRun`).

`DaskRun` submits one task per batch: a call of the worker-side `run_batch` (what
``dask.delayed(run_batch)(...)`` would build, submitted with one ``Client.map`` so that the
graph is not traversed item by item). Every task shares one *bundle* (the compiled body and
the small names it reads): a small bundle is a literal of each task, so a task never waits
for a transfer; a big one is scattered to every worker once. The items of a batch travel as
one pickled blob, and the scattered big names as futures. Completions are put, on the client's
event loop, into a queue the kernel thread waits on with a short timeout: that keeps the
progress display ticking while long items run and lets Ctrl-C in.

The job (`jobs`), the ``--serial`` runner (`jobs.run_in_kernel`), the task itself (`tasks`)
and the final values (`final_values`) live next door; their names are importable from here.
Nothing here knows about IPython, widgets or namespaces: outcomes go to a `Sink`.
"""

from __future__ import annotations

import functools
import gc
import operator
import queue
import uuid
from collections.abc import Sequence
from typing import Any

import cloudpickle

from . import batching, controls, live_actions, lost_inputs, result_push, timeouts, worker_healing
from .final_values import fetch_final_values, salvage_stash
from .jobs import Job, Sink, dumps_keeping_filenames, make_job, run_in_kernel
from .loaded_batch import LoadedBatch
from .restarts import WorkerRestarts
from .results import ItemOutcome
from .tasks import (
    deferred_interrupt,
    infrastructure_error,
    interrupts_held,
    pickle_batches,
    run_on_worker,
    total_threads,
    when_done,
)

__all__ = [
    "DaskRun",
    "Job",
    "Sink",
    "deferred_interrupt",
    "dumps_keeping_filenames",
    "fetch_final_values",
    "infrastructure_error",
    "make_job",
    "run_in_kernel",
    "total_threads",
]

#: How long the kernel waits for a completion before refreshing the progress display.
TICK_SECONDS = 0.1
#: After Ctrl-C, how long to wait for results that had already finished on the cluster.
SALVAGE_SECONDS = 5.0
#: A bundle up to this size rides along with every task; a bigger one is scattered once.
INLINE_BUNDLE_BYTES = 256 * 1024
_INDEX = operator.attrgetter("index")
_FIRST = operator.itemgetter(0)


class DaskRun:
    """One pass of a run over ``pairs`` on a Dask cluster."""

    def __init__(
        self, client: Any, job: Job, pairs: Sequence[tuple[int, Any]], sink: Sink, stash_key: str
    ) -> None:
        self.client = client
        self.job = job
        self.sink = sink
        self.stash_key = stash_key
        self.pairs = list(pairs)
        self.last_index = max(self.pairs, key=_FIRST)[0] if self.pairs else -1
        known = getattr(sink, "cluster", None)  # the run's ClusterInfo: no second round trip
        self.threads = getattr(known, "threads", 0) or total_threads(client)
        self.run_key = uuid.uuid4().hex[:8]
        self.in_flight: dict[Any, list[tuple[int, Any]]] = {}
        self.timed: set[Any] = set()  # first-wave tasks, which run only a head of their items
        self.order: list[Any] = []  # submission order, for the running estimate
        self.done_queue: queue.SimpleQueue = queue.SimpleQueue()
        self.fetched: dict[Any, bytes] = {}  # results gathered on the loop (`when_done`), by key
        self.bundle: Any = None
        self.held: list[tuple[int, Any]] = []
        self.probe_durations: list[float] = []
        self.cancelled_elsewhere = False  # the scheduler (or a lost connection) cancelled tasks
        self.quarantine: list[tuple[int, Any]] = []  # items that were on a worker that died
        self.quarantined: set[int] = set()
        self.reported: set[int] = set()  # items whose outcome the sink has
        self.unrecorded_keys: list[str] = []
        self.batch_counter = 0
        self.guard: timeouts.TimeoutGuard | None = None  # --timeout's side of the pass
        self.run_id = getattr(sink, "run_id", None)  # live actions for this run (`controls`)
        self.inputs = lost_inputs.LostInputs()  # scattered inputs lost with a worker are sent again
        self.started_at: dict[Any, float] = {}  # in-flight task -> when it began to run
        self.restarts = WorkerRestarts(client, functools.partial(salvage_stash, client, stash_key))
        self.push_to = result_push.target(client)  # small results come with the completion

    def _add(
        self, outcomes: list[ItemOutcome], sent: Sequence[tuple[LoadedBatch, bytes]] = ()
    ) -> None:
        self.reported.update(map(_INDEX, outcomes))
        for batch, _ in sent:
            self.reported.update(batch.indices)
        self.sink.add(outcomes, sent)

    # submission
    def submit(
        self,
        batches: list[list[tuple[int, Any]]],
        budget: float | None = None,
        payloads: list[bytes] | None = None,
    ) -> None:
        if not batches:
            return
        if self.bundle is None:
            self.bundle = self._ship_bundle()
        if payloads is None:
            batches, payloads = self._pickle(batches)
            if not batches:
                return
        n = len(batches)
        keys = [
            f"{self.job.key_prefix}-{self.run_key}-{self.batch_counter + i + 1}" for i in range(n)
        ]
        self.batch_counter += n
        self.unrecorded_keys = keys  # if Ctrl-C lands inside map(), these still get cancelled
        with deferred_interrupt():  # a Ctrl-C inside map() could leave tasks nobody tracks
            futures = self.client.map(
                run_on_worker,
                [self.job.token] * n,
                [self.bundle] * n,
                [self.job.big_env] * n,
                payloads,
                [self.last_index] * n,
                [self.stash_key] * n,
                [self.job.retries] * n,
                [budget] * n,
                [self.job.timeout] * n,
                [self.push_to] * n,
                key=keys,
                pure=False,
            )
            for future, batch in zip(futures, batches, strict=True):
                self.in_flight[future] = batch
                self.order.append(future)
                if budget is not None:
                    self.timed.add(future)
            when_done(self.client, futures, self.done_queue.put, self.fetched)
            self.inputs.note(futures)
            self.unrecorded_keys = []

    def submit_first_wave(self) -> None:
        """Shares of the items, each run until its time budget is spent (see `batching`)."""
        wave, self.held, budget = batching.timed_first_wave(
            self.pairs, self.threads, self.job.batch
        )
        if budget is None:
            self.submit(wave)
            return
        wave, payloads = self._pickle(wave)
        if sum(map(len, payloads)) > batching.FIRST_WAVE_MAX_BYTES:
            # big items: a probe of single items, so that none is sent twice
            wave, self.held = batching.first_wave(self.pairs, self.threads, self.job.batch)
            self.submit(wave)
            return
        self.submit(wave, budget, payloads)

    def _pickle(
        self, batches: list[list[tuple[int, Any]]]
    ) -> tuple[list[list[tuple[int, Any]]], list[bytes]]:
        """Each batch's items as one blob; an item that cannot be pickled fails alone."""
        kept, payloads, failed = pickle_batches(batches)
        if failed:
            self._add(failed)
        return kept, payloads

    def _ship_bundle(self) -> Any:
        """The bundle as every task will get it: the bytes, or a future of them on every worker."""
        if len(self.job.blob) <= INLINE_BUNDLE_BYTES:
            return self.job.blob
        return self.client.scatter(self.job.blob, broadcast=True, hash=False)

    def running_items(self) -> int:
        live = [f for f in self.order if f in self.in_flight][: self.threads]
        return sum(1 if f in self.timed else len(self.in_flight[f]) for f in live)

    # the loop
    def run(self) -> str:
        """Submit, then tick until every item has an outcome; returns how the pass ended."""
        self._open()
        try:
            with interrupts_held() as interrupts:  # Ctrl-C is looked at once per tick
                self.submit_first_wave()
                while self.in_flight or self.held or self.quarantine:
                    if interrupts:
                        raise KeyboardInterrupt
                    ended = self._tick()
                    if ended is not None:
                        return ended
        except KeyboardInterrupt:
            self._salvage()
            return "interrupted"
        finally:
            self._close()
        if self.cancelled_elsewhere and self.client.status != "running":
            return "lost"
        return "completed"

    def _open(self) -> None:
        job = self.job
        if job.timeout is not None:
            self.guard = timeouts.TimeoutGuard(self.client, job.timeout, self.restarts, job.retries)
        if self.run_id is not None:
            controls.default.open(self.run_id)
        worker_healing.watch(self.client)  # workers a LocalCluster drops are started again

    def _close(self) -> None:
        self.bundle = None
        if self.guard is not None:
            self.guard.close()
        self.restarts.settle()  # the pass ends with the cluster as big as it found it
        if self.run_id is not None:
            controls.default.close(self.run_id)

    def _tick(self) -> str | None:
        """One turn of the loop: take completions, submit what is due, report; None: go on."""
        ready = self._wait()
        if ready:
            self._collect(ready)
        if self.guard is not None:
            self.guard.step(self)
        self._submit_due()
        self.sink.tick(self.running_items(), live_actions.running_now(self))
        return self._ending()

    def _submit_due(self) -> None:
        if self.quarantine and not self.in_flight and not self.held:
            self.submit([[self.quarantine.pop(0)]])  # alone: nothing else can die with it
        if self.held and (self.probe_durations or not self.in_flight):
            self._submit_rest()

    def _ending(self) -> str | None:
        """How the pass ends now (a button, the sink, a lost client), or None to go on."""
        if self.run_id is not None and self._act_on_controls():
            return "interrupted"  # cancelled from a button: as Ctrl-C, but at once
        if self.sink.should_stop():
            self._cancel_all()
            return "stopped"
        if self.client.status not in ("running", "connecting", "newly-created"):
            self._cancel_all()
            return "lost"
        return None

    def _act_on_controls(self) -> bool:
        """Apply the live actions posted for this run since the last tick; True: cancelled."""
        assert self.run_id is not None  # run() only calls this for a run with an id
        return live_actions.act(self, controls.default.take(self.run_id))

    def _wait(self) -> list[Any]:
        try:
            ready = [self.done_queue.get(timeout=TICK_SECONDS)]
        except queue.Empty:
            return []
        while True:  # drain everything that finished meanwhile: one gather for all of them
            try:
                ready.append(self.done_queue.get_nowait())
            except queue.Empty:
                return [f for f in ready if f in self.in_flight]

    def _collect(self, ready: list[Any]) -> None:
        finished = [f for f in ready if f.status == "finished"]
        sent = self._load_finished(finished) if finished else []  # batches, with their bytes
        outcomes = self._settle_unfinished(ready)
        if len(self.probe_durations) < batching.PROBE_SAMPLES:  # each tail's plan: all so far
            for batch, _ in sent:
                self.probe_durations += batch.done_durations()
            self.probe_durations += [o.duration for o in outcomes if o.status == "done"]
        if outcomes or sent:
            self._add(outcomes, sent)

    def _load_finished(self, finished: list[Any]) -> list[tuple[LoadedBatch, bytes]]:
        """The outcomes of finished tasks, each batch with the bytes it came as."""
        sent: list[tuple[LoadedBatch, bytes]] = []
        fetched = [self.fetched.pop(f.key, None) for f in finished]  # most, on the loop
        missing = [f for f, blob in zip(finished, fetched, strict=True) if blob is None]
        gathered = self.client.gather(missing, errors="skip") if missing else []
        if len(gathered) == len(missing):
            rest = iter(gathered)
            blobs = [blob if blob is not None else next(rest) for blob in fetched]
        else:  # some result was lost in between: fetch one by one
            finished = [f for f in finished if f.status == "finished"]
            blobs = [f.result() for f in finished]
        collecting = gc.isenabled()
        # loading 10,000 items' columns would run the collector a few times for nothing
        gc.disable()
        try:
            for future, blob in zip(finished, blobs, strict=True):
                got = cloudpickle.loads(blob)
                batch = self.in_flight.pop(future, None)
                self.timed.discard(future)
                if batch is not None and len(got) < len(batch):  # a timed task's unrun tail
                    self.held += batch[len(got) :]
                sent.append((got, blob))
        finally:
            if collecting:
                gc.enable()
        return sent

    def _settle_unfinished(self, ready: list[Any]) -> list[ItemOutcome]:
        """Tasks that completed without a result: failed ones fail, lost results are awaited."""
        outcomes: list[ItemOutcome] = []
        for future in ready:
            if future not in self.in_flight:
                continue
            if future.status not in ("error", "cancelled"):
                # a result lost with its worker before we fetched it: the scheduler computes
                # it again, so wait for the next completion instead of calling it failed
                when_done(self.client, [future], self.done_queue.put, self.fetched)
                continue
            outcomes += self._failed_batch(future, self.in_flight.pop(future))
        return outcomes

    def _failed_batch(self, future: Any, batch: list[tuple[int, Any]]) -> list[ItemOutcome]:
        """A task that failed as a whole (worker died, bundle not loadable, cancelled)."""
        if future.status == "cancelled" and self.inputs.send_again(self, future):
            self.submit([batch])
            return []
        if future.status == "cancelled":  # not by us: _cancel_all forgets futures first
            self.cancelled_elsewhere = True
            return [ItemOutcome(index=i, status="cancelled") for i, _ in batch]
        try:
            exc = future.exception(timeout=SALVAGE_SECONDS)
        except Exception as lookup_error:  # the scheduler is gone: describe what we know
            exc = lookup_error
        if type(exc).__name__ == "KilledWorker" and len(batch) > 1:
            # one item of the batch may have killed the worker: run them one per task
            self.submit([[pair] for pair in batch])
            return []
        if type(exc).__name__ == "KilledWorker":
            # Dask blames every task that was on a worker when it died, so an innocent item
            # can be "killed" by its neighbour: give each such item one run of its own, alone
            # on the cluster; an item that still kills its worker then is the culprit.
            fresh = [pair for pair in batch if pair[0] not in self.quarantined]
            self.quarantined.update(i for i, _ in fresh)
            self.quarantine.extend(fresh)
            batch = [pair for pair in batch if pair not in fresh]
            if not batch:
                return []
        info = infrastructure_error(exc)
        return [ItemOutcome(index=i, status="failed", error=info) for i, _ in batch]

    def _submit_rest(self) -> None:
        per_item = batching.median(self.probe_durations)
        rest, self.held = self.held, []
        budget = batching.FIRST_WAVE_SECONDS
        tails = sum(
            batching.expected_unrun(len(self.in_flight[f]), per_item, budget)
            for f in self.timed
            if f in self.in_flight
        )
        sizes = batching.rest_sizes(per_item, len(rest), len(rest) + tails, self.threads)
        self.submit(batching.chunk_sizes(rest, sizes))

    def _cancel_all(self) -> None:
        pending = list(self.in_flight)
        if pending:
            self.client.cancel(pending)
        cancelled = (
            [pair for f in pending for pair in self.in_flight.pop(f)] + self.held + self.quarantine
        )
        self.held, self.quarantine = [], []
        if cancelled:
            self._add([ItemOutcome(index=i, status="cancelled") for i, _ in cancelled])

    def _salvage(self) -> None:
        """After Ctrl-C: keep whatever already finished, cancel the rest."""
        finished = [f for f in self.in_flight if f.status == "finished"]
        pending = [f for f in self.in_flight if f.status != "finished"]
        if pending:
            self.client.cancel(pending)
        if finished:
            try:
                self._collect(finished)
            except Exception:
                pass
        self._cancel_all()
        if self.unrecorded_keys:
            from distributed import Future

            self.client.cancel([Future(key, self.client) for key in self.unrecorded_keys])
        # a Ctrl-C can land between creating futures and recording them: no item may go missing
        missing = [i for i, _ in self.pairs if i not in self.reported]
        if missing:
            self._add([ItemOutcome(index=i, status="cancelled") for i in missing])
