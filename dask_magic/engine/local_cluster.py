"""The local cluster's shape and processes: how many workers this machine can hold, and
starting, scaling and waiting for them.

Workers are processes with one thread each, sized from the CPU count *and* the memory that
is really free (every worker gets at least `MIN_WORKER_MEMORY`, so a 2 GB Binder box gets
one or two workers instead of four that die of ``KilledWorker``); scheduler, workers and
dashboard listen on 127.0.0.1 only. Which cluster a run uses, and the one local cluster
dask-magic keeps, are `cluster`'s business.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import dask.config
import psutil
from dask.system import CPU_COUNT
from dask.utils import parse_bytes
from distributed import Client, LocalCluster
from distributed.system import MEMORY_LIMIT

from dask_magic.errors import ClusterError

#: Every local worker gets at least this much memory; fewer workers beat workers that die.
MIN_WORKER_MEMORY = 2**30
#: Total memory for the local cluster's workers (``2GB``), instead of the detected amount.
MEMORY_ENV_VAR = "DASK_MAGIC_MEMORY_LIMIT"
#: Kept back for the kernel and the scheduler (which runs in the kernel's process).
_RESERVE_MIN, _RESERVE_MAX = 256 * 2**20, 2**30
SCALE_TIMEOUT = 120


class Size(NamedTuple):
    workers: int
    threads: int
    memory_limit: int  # bytes per worker


@dataclass
class Local:
    cluster: LocalCluster
    client: Client
    threads: int


def local_cluster_size(
    cpu_count: int,
    memory_bytes: int,
    *,
    workers: int | None = None,
    threads: int | None = None,
    min_worker_memory: int = MIN_WORKER_MEMORY,
) -> Size:
    """Workers, threads per worker and memory per worker for a local cluster.

    ``memory_bytes`` is what all workers together may use. Unless ``workers`` is given, the
    count is bounded by the cores (one process per ``threads`` cores) *and* by the memory
    (at least ``min_worker_memory`` each), and is never below one.
    """
    threads = max(1, threads or 1)
    if workers is None:
        by_cpu = max(1, cpu_count // threads)
        by_memory = max(1, memory_bytes // min_worker_memory)
        workers = min(by_cpu, by_memory)
    workers = max(1, workers)
    return Size(workers, threads, max(1, memory_bytes // workers))


def memory_budget(environ: Mapping[str, str] = os.environ) -> int:
    """Memory for all local workers: `MEMORY_ENV_VAR`, else free memory less a reserve."""
    configured = environ.get(MEMORY_ENV_VAR)
    if configured:
        try:
            return int(parse_bytes(configured))
        except ValueError as exc:
            raise ClusterError(
                f"{MEMORY_ENV_VAR}={configured!r} is not a size; use a value like '2GB'."
            ) from exc
    # MEMORY_LIMIT honours cgroup limits (Binder, Docker); `available` is what other
    # processes have left, which is what a worker can actually get.
    detected = min(MEMORY_LIMIT, psutil.virtual_memory().available)
    reserve = min(max(detected // 4, _RESERVE_MIN), _RESERVE_MAX)
    return max(MIN_WORKER_MEMORY // 2, detected - reserve)


def default_workers() -> int:
    """How many workers the local cluster gets on this machine when not told."""
    return local_cluster_size(CPU_COUNT, memory_budget()).workers


def new_local_cluster(workers: int | None = None, threads: int | None = None) -> LocalCluster:
    """A `LocalCluster` sized and configured like the one `get_client` starts.

    It is not registered here: the caller owns it and closes it (benchmarks compare against it).
    """
    size = local_cluster_size(CPU_COUNT, memory_budget(), workers=workers, threads=threads)
    with dask.config.set(WORKER_CONFIG), environ_kept():
        return start_processes(size)


@contextlib.contextmanager
def environ_kept() -> Iterator[None]:
    """Undo what the nannies write into this process's ``os.environ`` while starting workers.

    A nanny sets its ``pre-spawn-environ`` (``OMP_NUM_THREADS=1`` and friends) in its *own*
    process before it spawns a worker, and the local cluster's nannies live in the kernel: every
    process the notebook started later (a ``multiprocessing.Pool``, a shell command) inherited
    one-thread BLAS settings. The workers keep them; the kernel gets its environment back.
    """
    before = dict(os.environ)
    try:
        yield
    finally:
        for name in [name for name in os.environ if name not in before]:
            del os.environ[name]
        os.environ.update(before)


#: Worker settings for dask-magic's own cluster: the statistical profiler (every 10 ms) and
#: the 20 ms admin tick take the GIL from pure-Python items; measured in benchmarks/, they cost
#: about 8 % of CPU-bound throughput. The dashboard's profile page stays empty as a result.
#:
#: The nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` is left unset: any explicit glibc threshold
#: turns off glibc's dynamic mmap threshold, so every array over 128 KB that pandas allocates
#: and frees is a fresh ``mmap`` and its pages are faulted in again (a `read_csv` + groupby
#: item used 1.6-1.9x the CPU of the same item in the kernel; see benchmarks/README.md).
#: The nanny would also copy the variable into the kernel's own ``os.environ`` (it sets it
#: before spawning), so every process the notebook started later inherited it. Memory that
#: glibc keeps is still reported to the worker's memory monitor as unmanaged memory.
WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}


def start_processes(size: Size) -> LocalCluster:
    return LocalCluster(
        n_workers=size.workers,
        threads_per_worker=size.threads,
        memory_limit=size.memory_limit,
        processes=True,
        host="127.0.0.1",
        # Port 0: a second kernel on the same machine gets its own dashboard instead of
        # "Port 8787 is already in use"; the host keeps it off the network.
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.WARNING,
    )


def scale(local: Local, workers: int) -> None:
    """Scale to ``workers`` and wait until the scheduler sees that many (bounded).

    New workers get the memory limit the first ones got: asking for more workers than the
    memory allows is the user's explicit choice.
    """
    with dask.config.set(WORKER_CONFIG), environ_kept():  # new workers are spawned with it
        local.cluster.scale(workers)
        wait_for_workers(local, workers)


def wait_for_workers(local: Local, workers: int) -> None:
    deadline = time.monotonic() + SCALE_TIMEOUT
    # The cluster's own worker list (what cluster_info reads) follows the scheduler's
    # events a moment later than the scheduler itself: wait for both.
    while not has_workers(local, workers):
        if time.monotonic() > deadline:
            raise ClusterError(
                f"The local cluster did not reach {workers} workers within "
                f"{SCALE_TIMEOUT} s; the machine may be short of memory. Try fewer workers."
            )
        time.sleep(0.1)


def has_workers(local: Local, workers: int) -> bool:
    if len(local.client.nthreads()) != workers:
        return False
    try:
        return len(local.cluster.scheduler_info.get("workers", {})) == workers
    except Exception:  # an older distributed without the cluster's own list: asked above
        return True
