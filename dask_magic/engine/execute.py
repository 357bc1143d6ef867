"""Send batches of items to Dask (or run them in the kernel) and stream their outcomes.

`run_on_dask` builds one `dask.delayed` call of the worker-side `run_batch` per batch, all
sharing one *bundle* (the compiled body and the small names it reads) that travels once as a
graph literal, and the scattered big names as futures. Completions arrive through
``Future.add_done_callback`` into a queue the kernel thread waits on with a short timeout:
that keeps the progress display ticking while long items run and lets Ctrl-C in.

Nothing here knows about IPython, widgets or namespaces: outcomes go to a `Sink`.
"""

from __future__ import annotations

import hashlib
import io
import marshal
import pickle
import queue
import types
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cloudpickle
import dask

from . import batching, worker
from .results import ErrorInfo, ItemOutcome

#: How long the kernel waits for a completion before refreshing the progress display.
TICK_SECONDS = 0.1
#: After Ctrl-C, how long to wait for results that had already finished on the cluster.
SALVAGE_SECONDS = 5.0


@dataclass
class Job:
    """What every task of a run shares."""

    token: str
    blob: bytes
    big_env: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    batch: int | str = "auto"
    key_prefix: str = "parallel_for"


class Sink(Protocol):
    """Receives outcomes as they arrive (implemented by `dask_magic.engine.run.Run`)."""

    def add(self, outcomes: Sequence[ItemOutcome]) -> None: ...

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
                job.token, job.blob, big_env, [pair], -1, None,
                worker="kernel", retries=job.retries, serialize=False,
            )
        except KeyboardInterrupt:
            sink.add([ItemOutcome(index=i, status="cancelled") for i, _ in pairs[position:]])
            return "interrupted"
        sink.add(outcomes)  # type: ignore[arg-type]
        sink.tick(0)
        if sink.should_stop():
            sink.add([ItemOutcome(index=i, status="cancelled") for i, _ in pairs[position + 1:]])
            return "stopped"
    return "completed"


# -- on the cluster ------------------------------------------------------------------------------

def _run_on_worker(token, blob, big_env, batch, last_index, stash_key, retries):  # noqa: ANN001, ANN202
    """The task: `worker.run_batch`, told which worker it runs on (for the panel)."""
    from distributed import get_worker

    try:
        address = get_worker().address
    except ValueError:  # run outside a worker (a synchronous scheduler in tests)
        address = None
    return worker.run_batch(token, blob, big_env, batch, last_index, stash_key, address, retries)


def total_threads(client: Any) -> int:
    """Worker threads the scheduler knows of, from the client's cached scheduler info."""
    info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
    return sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()) or 1


def _takes_n_workers(client: Any) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


class DaskRun:
    """One pass of a run over ``pairs`` on a Dask cluster."""

    def __init__(self, client: Any, job: Job, pairs: Sequence[tuple[int, Any]], sink: Sink, stash_key: str) -> None:
        self.client = client
        self.job = job
        self.sink = sink
        self.stash_key = stash_key
        self.pairs = list(pairs)
        self.last_index = max((i for i, _ in self.pairs), default=-1)
        self.threads = total_threads(client)
        self.run_key = uuid.uuid4().hex[:8]
        self.in_flight: dict[Any, list[tuple[int, Any]]] = {}
        self.order: list[Any] = []  # submission order, for the running estimate
        self.done_queue: queue.SimpleQueue = queue.SimpleQueue()
        self.bundle: Any = None
        self.held: list[tuple[int, Any]] = []
        self.probe_durations: list[float] = []
        self.split_once: set[int] = set()
        self.batch_counter = 0

    # submission
    def _task(self, batch: list[tuple[int, Any]]) -> Any:
        self.batch_counter += 1
        key = f"{self.job.key_prefix}-{self.run_key}-{self.batch_counter}"
        return dask.delayed(_run_on_worker, pure=False)(
            self.job.token, self.bundle, self.job.big_env, batch, self.last_index,
            self.stash_key, self.job.retries, dask_key_name=key,
        )

    def submit(self, batches: list[list[tuple[int, Any]]]) -> None:
        if not batches:
            return
        first = self.bundle is None
        if first:
            self.bundle = dask.delayed(self.job.blob, name=f"dask-magic-bundle-{self.run_key}")
        tasks = [self._task(b) for b in batches]
        futures = self.client.compute([self.bundle, *tasks] if first else tasks)
        if first:
            self.bundle, futures = futures[0], futures[1:]
        for future, batch in zip(futures, batches):
            self.in_flight[future] = batch
            self.order.append(future)
            future.add_done_callback(self.done_queue.put)

    def running_items(self) -> int:
        live = [f for f in self.order if f in self.in_flight][: self.threads]
        return sum(len(self.in_flight[f]) for f in live)

    # the loop
    def run(self) -> str:
        wave, self.held = batching.first_wave(self.pairs, self.threads, self.job.batch)
        try:
            self.submit(wave)
            while self.in_flight or self.held:
                ready = self._wait()
                if ready:
                    self._collect(ready)
                if self.held and (self.probe_durations or not self.in_flight):
                    self._submit_rest()
                self.sink.tick(self.running_items())
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
        return "completed"

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
        if finished:
            blobs = self.client.gather(finished, errors="skip")
            if len(blobs) != len(finished):  # some result was lost in between: fetch one by one
                finished = [f for f in finished if f.status == "finished"]
                blobs = [f.result() for f in finished]
            for future, blob in zip(finished, blobs):
                outcomes += cloudpickle.loads(blob)
                self.in_flight.pop(future, None)
        for future in ready:
            if future in self.in_flight:
                outcomes += self._failed_batch(future, self.in_flight.pop(future))
        if len(self.probe_durations) < 2 * self.threads:
            self.probe_durations += [o.duration for o in outcomes if o.status == "done"]
        if outcomes:
            self.sink.add(outcomes)

    def _failed_batch(self, future: Any, batch: list[tuple[int, Any]]) -> list[ItemOutcome]:
        """A task that failed as a whole (worker died, bundle not loadable, cancelled)."""
        if future.status == "cancelled":
            return [ItemOutcome(index=i, status="cancelled") for i, _ in batch]
        try:
            exc = future.exception(timeout=SALVAGE_SECONDS)
        except Exception as lookup_error:  # the scheduler is gone: describe what we know
            exc = lookup_error
        if len(batch) > 1 and type(exc).__name__ == "KilledWorker":
            # one item may have killed the worker: run the batch's items one by one
            self.submit([[pair] for pair in batch])
            return []
        info = infrastructure_error(exc)
        return [ItemOutcome(index=i, status="failed", error=info) for i, _ in batch]

    def _submit_rest(self) -> None:
        per_item = batching.median(self.probe_durations)
        size = batching.batch_size(per_item, len(self.held), self.threads)
        rest, self.held = self.held, []
        self.submit(batching.chunk(rest, size))

    def _cancel_all(self) -> None:
        pending = list(self.in_flight)
        if pending:
            self.client.cancel(pending)
        cancelled = [pair for f in pending for pair in self.in_flight.pop(f)] + self.held
        self.held = []
        if cancelled:
            self.sink.add([ItemOutcome(index=i, status="cancelled") for i, _ in cancelled])

    def _salvage(self) -> None:
        """After Ctrl-C: keep whatever already finished, cancel the rest."""
        finished = [f for f in self.in_flight if f.status == "finished"]
        pending = [f for f in self.in_flight if f.status != "finished"]
        if pending:
            self.client.cancel(pending)
        if finished:
            try:
                self._collect(finished)
            except Exception:  # noqa: BLE001 - what cannot be fetched in time is cancelled below
                pass
        self._cancel_all()


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
    info = worker.error_info(exc, kind="infrastructure", hint=hints.get(name, ""))
    return info


def fetch_final_values(client: Any, stash_key: str, wanted: dict[str | None, dict[str, int]]) -> dict[str, Any]:
    """Bring back the stashed last bindings in ``wanted`` and clear the run's stash everywhere.

    One ``client.run`` round trip when something is wanted; a fire-and-forget clean-up when not.
    """
    if not any(wanted.values()):
        client.run(_drop_here, stash_key, wait=False)  # distributed runs only coroutines unwaited
        return {}
    by_worker = {addr: names for addr, names in wanted.items() if addr}
    replies = client.run(_fetch_here, stash_key, by_worker)
    values: dict[str, Any] = {}
    for reply in replies.values():
        values.update(reply)
    return values


async def _drop_here(stash_key: str) -> None:
    worker.drop_stash(stash_key)


def _fetch_here(stash_key: str, by_worker: dict[str, dict[str, int]], dask_worker: Any = None) -> dict[str, Any]:
    address = getattr(dask_worker, "address", None)
    return worker.fetch_stash(stash_key, by_worker.get(address, {}))
