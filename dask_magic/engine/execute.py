"""Send batches of items to Dask (or run them in the kernel) and stream their outcomes.

`DaskRun` submits one task per batch: a call of the worker-side `run_batch` (what
``dask.delayed(run_batch)(...)`` would build, submitted with one ``Client.map`` so that the
graph is not traversed item by item). Every task shares one *bundle* (the compiled body and
the small names it reads): a small bundle is a literal of each task, so a task never waits
for a transfer; a big one is scattered to every worker once. The items of a batch travel as
one pickled blob, and the scattered big names as futures. Completions are put, on the client's
event loop, into a queue the kernel thread waits on with a short timeout: that keeps the
progress display ticking while long items run and lets Ctrl-C in.

Nothing here knows about IPython, widgets or namespaces: outcomes go to a `Sink`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import io
import marshal
import operator
import pickle
import queue
import signal
import threading
import types
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cloudpickle

from . import batching, controls, errorinfo, live_actions, timeouts, worker
from .results import ErrorInfo, ItemOutcome

#: How long the kernel waits for a completion before refreshing the progress display.
TICK_SECONDS = 0.1
#: After Ctrl-C, how long to wait for results that had already finished on the cluster.
SALVAGE_SECONDS = 5.0
#: A bundle up to this size rides along with every task; a bigger one is scattered once.
INLINE_BUNDLE_BYTES = 256 * 1024
_INDEX = operator.attrgetter("index")


@dataclass
class Job:
    """What every task of a run shares."""

    token: str
    blob: bytes
    big_env: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    batch: int | str = "auto"
    key_prefix: str = "parallel_for"
    timeout: float | None = None  # --timeout, seconds per item


class Sink(Protocol):
    """Receives outcomes as they arrive (implemented by `dask_magic.engine.run.Run`)."""

    def add(
        self, outcomes: Sequence[ItemOutcome], sent: Sequence[tuple[list, bytes]] = ()
    ) -> None: ...

    def tick(self, running: int) -> None: ...

    def should_stop(self) -> bool: ...


def make_job(bundle: dict[str, Any], *, pickle: bool = True, **options: Any) -> Job:
    """Pickle ``bundle`` once; its content hash names it, so workers unpickle it once.

    With ``pickle=False`` (``--serial``) the bundle is handed to this process's worker-side
    cache as it is: nothing travels, so names that cannot be pickled are fine.
    """
    if not pickle:
        token = f"local-{uuid.uuid4().hex}"
        worker.register_bundle(token, bundle)
        return Job(token=token, blob=b"", **options)
    blob = dumps_keeping_filenames(bundle)
    token = hashlib.blake2b(blob, digest_size=16).hexdigest()
    return Job(token=token, blob=blob, **options)


class _FilenameKeepingPickler(cloudpickle.Pickler):
    """cloudpickle, except that code objects keep their filename.

    cloudpickle >= 3.1 renames every pickled code object's file to ``<dynamic-code>`` (for
    deterministic payloads). Tracebacks from the workers then no longer point at the
    notebook's cells; marshal keeps ``co_filename`` and line numbers intact.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.CodeType):
            return marshal.loads, (marshal.dumps(obj),)
        return super().reducer_override(obj)


def dumps_keeping_filenames(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _FilenameKeepingPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


# -- in the kernel (--serial) -------------------------------------------------------------------


def run_in_kernel(job: Job, pairs: Sequence[tuple[int, Any]], sink: Sink) -> str:
    """Run the same body item by item in this process; returns how the run ended."""
    big_env = dict(job.big_env)
    for position, pair in enumerate(pairs):
        try:
            outcomes = worker.run_batch(
                job.token,
                job.blob,
                big_env,
                [pair],
                -1,
                None,
                worker="kernel",
                retries=job.retries,
                serialize=False,
            )
        except KeyboardInterrupt:
            sink.add([ItemOutcome(index=i, status="cancelled") for i, _ in pairs[position:]])
            return "interrupted"
        sink.add(outcomes)  # type: ignore[arg-type]
        sink.tick(0)
        if sink.should_stop():
            sink.add([ItemOutcome(index=i, status="cancelled") for i, _ in pairs[position + 1 :]])
            return "stopped"
    return "completed"


# -- on the cluster ------------------------------------------------------------------------------


def _run_on_worker(
    token, blob, big_env, items, last_index, stash_key, retries, budget=None, timeout=None
):
    """The task: `worker.run_batch` over the pickled ``items``, told which worker it runs on."""
    from distributed import get_worker

    try:
        here = get_worker()
    except ValueError:  # run outside a worker (a synchronous scheduler in tests)
        here = None
    address = None if here is None else here.address
    batch = cloudpickle.loads(items) if isinstance(items, bytes) else items
    if timeout is not None and here is not None:  # the watchdog reports overruns as events
        report = functools.partial(here.log_event, timeouts.TOPIC)
        timeouts.arm(timeout, report, str(here.get_current_task()), address)
    try:
        return worker.run_batch(
            token, blob, big_env, batch, last_index, stash_key, address, retries, budget=budget
        )
    finally:
        if timeout is not None:
            timeouts.disarm()


def total_threads(client: Any) -> int:
    """Worker threads the scheduler knows of, from the client's cached scheduler info."""
    info = (
        client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
    )
    return sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()) or 1


def _takes_n_workers(client: Any) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block is done, then raise it.

    Inside ``Client.map`` an interrupt can land after the scheduler took the tasks but before
    their futures exist here; nothing could cancel them then. Only the main thread can
    change signal handlers, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


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
        self.last_index = max((i for i, _ in self.pairs), default=-1)
        known = getattr(sink, "cluster", None)  # the run's ClusterInfo: no second round trip
        self.threads = getattr(known, "threads", 0) or total_threads(client)
        self.run_key = uuid.uuid4().hex[:8]
        self.in_flight: dict[Any, list[tuple[int, Any]]] = {}
        self.timed: set[Any] = set()  # first-wave tasks, which run only a head of their items
        self.order: list[Any] = []  # submission order, for the running estimate
        self.done_queue: queue.SimpleQueue = queue.SimpleQueue()
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

    def _add(self, outcomes: list[ItemOutcome], sent: Sequence[tuple[list, bytes]] = ()) -> None:
        self.reported.update(map(_INDEX, outcomes))
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
                _run_on_worker,
                [self.job.token] * n,
                [self.bundle] * n,
                [self.job.big_env] * n,
                payloads,
                [self.last_index] * n,
                [self.stash_key] * n,
                [self.job.retries] * n,
                [budget] * n,
                [self.job.timeout] * n,
                key=keys,
                pure=False,
            )
            for future, batch in zip(futures, batches, strict=True):
                self.in_flight[future] = batch
                self.order.append(future)
                if budget is not None:
                    self.timed.add(future)
                _when_done(self.client, future, self.done_queue.put)
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
        kept, payloads, failed = [], [], []
        for batch in batches:
            try:
                payloads.append(cloudpickle.dumps(batch))
                kept.append(batch)
                continue
            except Exception:
                pass
            for pair in batch:
                try:
                    payloads.append(cloudpickle.dumps([pair]))
                except Exception as exc:
                    failed.append(_unsendable_item(pair[0], exc))
                    continue
                kept.append([pair])
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
        if self.job.timeout is not None:
            self.guard = timeouts.TimeoutGuard(self.client, self.job.timeout, self.job.retries)
        if self.run_id is not None:
            controls.default.open(self.run_id)
        try:
            self.submit_first_wave()
            while self.in_flight or self.held or self.quarantine:
                ready = self._wait()
                if ready:
                    self._collect(ready)
                if self.guard is not None:
                    self.guard.step(self)
                if self.quarantine and not self.in_flight and not self.held:
                    self.submit([[self.quarantine.pop(0)]])  # alone: nothing else can die with it
                if self.held and (self.probe_durations or not self.in_flight):
                    self._submit_rest()
                self.sink.tick(self.running_items())
                if self.run_id is not None and self._act_on_controls():
                    return "interrupted"  # cancelled from a button: as Ctrl-C, but at once
                if self.sink.should_stop():
                    self._cancel_all()
                    return "stopped"
                if self.client.status not in ("running", "connecting", "newly-created"):
                    self._cancel_all()
                    return "lost"
        except KeyboardInterrupt:
            self._salvage()
            return "interrupted"
        finally:
            self.bundle = None
            if self.guard is not None:
                self.guard.close()
            if self.run_id is not None:
                controls.default.close(self.run_id)
        if self.cancelled_elsewhere and self.client.status != "running":
            return "lost"
        return "completed"

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
        outcomes: list[ItemOutcome] = []
        sent: list[tuple[list, bytes]] = []  # the head of outcomes, with the bytes they came as
        if finished:
            blobs = self.client.gather(finished, errors="skip")
            if len(blobs) != len(finished):  # some result was lost in between: fetch one by one
                finished = [f for f in finished if f.status == "finished"]
                blobs = [f.result() for f in finished]
            collecting = gc.isenabled()
            # loading 10,000 outcomes would run the collector a dozen times for nothing
            gc.disable()
            try:
                for future, blob in zip(finished, blobs, strict=True):
                    got = cloudpickle.loads(blob)
                    batch = self.in_flight.pop(future, None)
                    self.timed.discard(future)
                    if batch is not None and len(got) < len(batch):  # a timed task's unrun tail
                        self.held += batch[len(got) :]
                    outcomes += got
                    sent.append((got, blob))
            finally:
                if collecting:
                    gc.enable()
        for future in ready:
            if future not in self.in_flight:
                continue
            if future.status not in ("error", "cancelled"):
                # a result lost with its worker before we fetched it: the scheduler computes
                # it again, so wait for the next completion instead of calling it failed
                _when_done(self.client, future, self.done_queue.put)
                continue
            outcomes += self._failed_batch(future, self.in_flight.pop(future))
        if len(self.probe_durations) < 2 * self.threads:
            self.probe_durations += [o.duration for o in outcomes if o.status == "done"]
        if outcomes:
            self._add(outcomes, sent)

    def _failed_batch(self, future: Any, batch: list[tuple[int, Any]]) -> list[ItemOutcome]:
        """A task that failed as a whole (worker died, bundle not loadable, cancelled)."""
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
        self.submit(
            batching.chunk_sizes(rest, batching.guided_sizes(per_item, len(rest), self.threads))
        )

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


def _when_done(client: Any, future: Any, put: Any) -> None:
    """Call ``put(future)`` on the client's event loop once ``future`` is no longer pending.

    ``Future.add_done_callback`` does the same through distributed's callback thread: one
    more thread hand-off per task, and its ``ThreadPoolExecutor.submit`` was the largest single
    cost in the kernel's profile of the file loop. ``put`` here is a ``SimpleQueue.put``, which
    never blocks the loop.
    """
    from distributed.client import done_callback

    client.loop.add_callback(done_callback, future, put)


def _unsendable_item(index: int, exc: BaseException) -> ItemOutcome:
    error = ErrorInfo(
        type_name="dask_magic.UnpicklableItem",
        message=f"item {index} cannot be sent to a worker: {type(exc).__name__}: {exc}",
        hint="Loop over things that can be pickled (paths, numbers, keys) and create open "
        "files, locks or connections inside the loop body.",
    )
    return ItemOutcome(index=index, status="failed", error=error)


def infrastructure_error(exc: BaseException) -> ErrorInfo:
    """Describe a failure of the cluster rather than of the user's code."""
    name = type(exc).__name__
    hints = {
        "KilledWorker": "The worker running this item died (out of memory, a crash or os._exit). "
        "Give workers more memory (`%dask_cluster --close`, then fewer workers with "
        "`%%parallel_for --workers N`) or make the item use less memory.",
        "ModuleNotFoundError": "The workers cannot import a module the loop uses. Install it "
        "on the workers, or keep it next to the notebook so dask-magic can upload it.",
        "CancelledError": "The task was cancelled on the cluster, or the scheduler was lost.",
    }
    info = errorinfo.error_info(exc, kind="infrastructure", hint=hints.get(name, ""))
    return info


def fetch_final_values(
    client: Any, stash_key: str, wanted: dict[str | None, dict[str, int]]
) -> dict[str, Any]:
    """Bring back the stashed last bindings in ``wanted`` and clear the run's stash everywhere.

    One ``client.run`` round trip when something is wanted; a fire-and-forget clean-up when not.
    """
    if not any(wanted.values()):
        _drop_everywhere(client, stash_key)
        return {}
    by_worker = {addr: names for addr, names in wanted.items() if addr}
    replies = client.run(_fetch_here, stash_key, by_worker)
    values: dict[str, Any] = {}
    for reply in replies.values():
        values.update(reply)
    return values


def _drop_everywhere(client: Any, stash_key: str) -> None:
    """Clear the run's stash on every worker without waiting for the round trip.

    The workers' stash is bounded anyway (`stash._STASH_RUNS_KEPT`), so a lost message costs
    nothing; ``client.run(..., wait=False)`` would still wait for the scheduler's reply.
    """
    if getattr(client, "asynchronous", False) or client.status != "running":
        return

    async def send() -> None:
        try:
            await client._run(_drop_here, stash_key, wait=False)
        except Exception:
            pass

    client.loop.add_callback(send)


async def _drop_here(stash_key: str) -> None:
    worker.drop_stash(stash_key)


def _fetch_here(
    stash_key: str, by_worker: dict[str, dict[str, int]], dask_worker: Any = None
) -> dict[str, Any]:
    address: str = getattr(dask_worker, "address", "")  # no worker: no stash of its own
    return worker.fetch_stash(stash_key, by_worker.get(address, {}))
