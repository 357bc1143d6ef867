"""The peers: the same work through the other ways of running a loop in parallel.

Each peer is warm before it is timed (pools started, the loky executor re-used, the Dask
cluster the one ``%%parallel_for`` uses), and every peer returns the results to the caller's
process, as the serial loop leaves them.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import bench_work


class Elapsed(float):
    """A peer that times itself (the physical limit) returns this instead of its results."""


def tuned_chunksize(n_items: int, workers: int) -> int:
    """Four chunks per worker: what ``multiprocessing`` recommends and what balances well."""
    return max(1, math.ceil(n_items / (4 * workers)))


# -- Dask ------------------------------------------------------------------------------------


def dask_delayed(client: Any, fn: Callable, args: Sequence[tuple]) -> list[Any]:
    """The plain Dask recipe: ``dask.delayed`` per item + ``Client.compute(list, sync=True)``."""
    import dask

    lazy = [dask.delayed(fn)(*a) for a in args]
    return client.compute(lazy, sync=True)


def client_map(
    client: Any, fn: Callable, columns: Sequence[Sequence[Any]], **kwargs: Any
) -> list[Any]:
    """``Client.map`` + ``as_completed(with_results=True)`` (results in completion order)."""
    from distributed import as_completed

    futures = client.map(fn, *columns, pure=False, **kwargs)
    out = [result for _future, result in as_completed(futures, loop=client.loop, with_results=True)]
    del futures
    return out


# -- joblib --------------------------------------------------------------------------------


def joblib_run(workers: int, fn: Callable, args: Sequence[tuple]) -> list[Any]:
    """joblib's default: the loky backend, ``batch_size='auto'`` (the executor is re-used)."""
    from joblib import Parallel, delayed

    return Parallel(n_jobs=workers)(delayed(fn)(*a) for a in args)


# -- stdlib pools ------------------------------------------------------------------------------


class Pools:
    """``ProcessPoolExecutor`` and ``multiprocessing.Pool`` of ``workers`` spawned processes,
    started before anything is timed and closed at the end of a workload."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._ppe: ProcessPoolExecutor | None = None
        self._pool: Any = None

    def ppe(self) -> ProcessPoolExecutor:
        if self._ppe is None:
            self._ppe = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
            list(self._ppe.map(bench_work.inc, range(4 * self.workers)))  # every process up
        return self._ppe

    def pool(self) -> Any:
        if self._pool is None:
            self._pool = mp.get_context("spawn").Pool(self.workers)
            self._pool.map(bench_work.inc, range(4 * self.workers), chunksize=1)
        return self._pool

    def close(self) -> None:
        if self._ppe is not None:
            self._ppe.shutdown()
            self._ppe = None
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


def ppe_map(
    pools: Pools, fn: Callable, columns: Sequence[Sequence[Any]], chunksize: int
) -> list[Any]:
    return list(pools.ppe().map(fn, *columns, chunksize=chunksize))


def pool_imap_unordered(
    pools: Pools, fn: Callable, items: Sequence[Any], chunksize: int
) -> list[Any]:
    return list(pools.pool().imap_unordered(fn, items, chunksize=chunksize))


# -- the physical limit --------------------------------------------------------------------------


class Physical:
    """The best any scheduler could do here: ``workers`` processes started in advance, every
    item (and the big object) delivered before the clock starts, one message back from each
    process, nothing per item but the work. Three ways of handing the items out (one at a
    time or in guided chunks from a shared counter, or equal shares in advance): the report
    takes the best of them as the limit."""

    def __init__(self, workers: int) -> None:
        ctx = mp.get_context("spawn")
        self.counter = ctx.Value("q", 0)
        self.conns = []
        self.procs = []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=bench_work.physical_worker, args=(child, self.counter), daemon=True
            )
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def load(self, big: Any) -> None:
        """Give every process the big object before anything is timed."""
        for conn in self.conns:
            conn.send(("load", big))
        for conn in self.conns:
            conn.recv()

    def run(
        self,
        kind: str,
        items: Sequence[Any],
        args: dict[str, Any] | None = None,
        mode: str = "one",
    ) -> Elapsed:
        """Time one run of ``items``; ``mode`` is how they are handed out (see
        `bench_work.physical_worker`): ``one``, ``guided`` or ``static``."""
        n = len(self.conns)
        items = list(items)
        with self.counter.get_lock():
            self.counter.value = 0
        for i, conn in enumerate(self.conns):
            share = items[i::n] if mode == "static" else []
            shared = [] if mode == "static" else items
            conn.send(("run", kind, shared, args or {}, mode, share, n))
        for conn in self.conns:
            conn.recv()  # "ready"
        start = time.perf_counter()
        for conn in self.conns:
            conn.send_bytes(b"go")
        results = [conn.recv() for conn in self.conns]
        elapsed = Elapsed(time.perf_counter() - start)
        elapsed.results = results  # type: ignore[attr-defined]
        return elapsed

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
