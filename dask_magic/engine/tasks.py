"""One Dask task of a pass, and the plumbing around it in the kernel.

`run_on_worker` is the task itself (a call of `worker.run_batch`, with the ``--timeout``
watch armed); `when_done` reports its completion on the client's event loop;
`deferred_interrupt` keeps a Ctrl-C from landing inside ``Client.map``; and the failures of
the cluster rather than of the user's code are described here (`infrastructure_error`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import signal
import threading
from collections.abc import Iterator
from typing import Any

import cloudpickle

from . import errorinfo, result_push, timeouts, worker
from .identity import scheduler_identity
from .results import ErrorInfo, ItemOutcome


def run_on_worker(
    token,
    blob,
    big_env,
    items,
    last_index,
    stash_key,
    retries,
    budget=None,
    timeout=None,
    push_to=None,
):
    """The task: `worker.run_batch` over the pickled ``items``, told which worker it runs on.

    ``push_to``: the client to send the result to with the completion (`result_push`)."""
    from distributed import get_worker

    try:
        here = get_worker()
    except ValueError:  # run outside a worker (a synchronous scheduler in tests)
        here = None
    address = None if here is None else here.address
    if here is not None and not _HEAP_FROZEN and here.nanny is not None:
        _freeze_heap()  # a nanny's worker is a process of its own, never the kernel
    batch = cloudpickle.loads(items) if isinstance(items, bytes) else items
    if timeout is not None and here is not None:  # the watchdog reports overruns as events
        report = functools.partial(here.log_event, timeouts.TOPIC)
        timeouts.arm(timeout, report, str(here.get_current_task()), address)
    try:
        result = worker.run_batch(
            token, blob, big_env, batch, last_index, stash_key, address, retries, budget=budget
        )
        if push_to is not None and here is not None and isinstance(result, bytes):
            result_push.send(here, push_to, result)
        return result
    finally:
        if timeout is not None:
            timeouts.disarm()


#: whether this worker process has frozen what it held before its first task (`_freeze_heap`)
_HEAP_FROZEN = False


def _freeze_heap() -> None:
    """Once per worker process: what it holds before its first task of ours (the worker
    itself, its imports) leaves the cyclic collector's sight (``gc.freeze``).

    A batch of 10,000 tiny items allocates enough to set off full collections, and each one
    walked every object of the worker: 30-40 ms apiece on a 2-core machine, about one per 7
    cells of 10,000 items. Frozen objects are never collected; they were alive and are few
    to become garbage, so this costs a bounded amount of memory at most. Never done in the
    kernel: ``--serial`` and synchronous schedulers run without a worker, and only a worker
    that a nanny started (a process of its own) freezes, not one of threads in the kernel's
    process (``LocalCluster(processes=False)``) nor one started with ``--no-nanny``.
    """
    global _HEAP_FROZEN
    _HEAP_FROZEN = True
    gc.freeze()


def total_threads(client: Any) -> int:
    """Worker threads the scheduler knows of."""
    workers = scheduler_identity(client).get("workers", {}).values()
    return sum(w.get("nthreads", 1) for w in workers) or 1


@contextlib.contextmanager
def interrupts_held() -> Iterator[list[int]]:
    """Record a Ctrl-C (SIGINT) in the yielded list instead of raising it where it lands.

    Raised asynchronously, a KeyboardInterrupt can land inside a finalizer (a Future's
    ``__del__``, a garbage-collection callback), where Python only prints "Exception ignored"
    and the run would go on as if nothing was pressed; a loop that looks at the list on each
    tick never misses one. Only the main thread can change signal handlers, so elsewhere the
    list stays empty and Ctrl-C behaves as usual.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block is done, then raise it.

    Inside ``Client.map`` an interrupt can land after the scheduler took the tasks but before
    their futures exist here; nothing could cancel them then.
    """
    with interrupts_held() as received:
        yield
    if received:
        raise KeyboardInterrupt


def when_done(client: Any, futures: list[Any], put: Any, fetched: dict[Any, Any]) -> None:
    """Call ``put(future)`` on the client's event loop once each of ``futures`` is no longer
    pending, a finished one's result already in ``fetched`` (by key).

    ``Future.add_done_callback`` does the same through distributed's callback thread: one
    more thread hand-off per task, and its ``ThreadPoolExecutor.submit`` was the largest single
    cost in the kernel's profile of the file loop. The result is gathered on the loop as soon
    as the task ends, as ``Future.result`` does, so the kernel's thread wakes once for it
    (not once for the completion and again for a gather). A result that could not be gathered
    there is not in ``fetched``: the kernel gathers it itself, and says why if that fails.
    ``put`` is a ``SimpleQueue.put``, which never blocks the loop.
    """
    client.loop.add_callback(_watch_all, client, list(futures), put, fetched)


#: the loop's watches of tasks not yet ended (asyncio keeps only weak references to them)
_WATCHES: set[Any] = set()


async def _watch_all(client: Any, futures: list[Any], put: Any, fetched: dict[Any, Any]) -> None:
    import asyncio

    for future in futures:  # each on its own: they end in any order
        result_push.expect(future.key, fetched)
        watch = asyncio.ensure_future(_done_then_gather(client, future, put, fetched))
        _WATCHES.add(watch)
        watch.add_done_callback(_WATCHES.discard)


async def _done_then_gather(client: Any, future: Any, put: Any, fetched: dict[Any, Any]) -> None:
    import asyncio

    from distributed.client import done_callback

    try:
        await done_callback(future, _ignore)
        if future.status == "finished" and future.key not in fetched:  # not pushed
            got = await client.gather([future], errors="skip", asynchronous=True)
            if got:
                fetched[future.key] = got[0]
    except (Exception, asyncio.CancelledError):  # the kernel's own gather tries again
        pass
    finally:
        result_push.forget(future.key)
        put(future)  # always: the kernel waits for every future it sent


def _ignore(future: Any) -> None:
    """`done_callback` calls back; the waiting was what was wanted."""


def pickle_batches(
    batches: list[list[tuple[int, Any]]],
) -> tuple[list[list[tuple[int, Any]]], list[bytes], list[ItemOutcome]]:
    """Each batch's items as one blob, the batches sent, and the items that cannot be sent:
    an item that cannot be pickled fails alone, its batch's other items go one by one."""
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
                failed.append(unsendable_item(pair[0], exc))
                continue
            kept.append([pair])
    return kept, payloads, failed


def unsendable_item(index: int, exc: BaseException) -> ItemOutcome:
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
