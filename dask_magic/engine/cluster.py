"""Which Dask cluster a run uses, and the one local cluster dask-magic may start.

`get_client` picks the cluster in this order:

1. an explicit ``client`` object (a `distributed.Client`, or a cluster object such as
   `LocalCluster`, wrapped in a Client once and cached),
2. an explicit ``scheduler`` address,
3. ``DASK_SCHEDULER_ADDRESS`` or dask config ``scheduler-address``,
4. a default Client that already exists in this process (the user's own ``Client()``),
5. one `LocalCluster` that this module starts on first use and re-uses for every later call.

The local cluster's shape (workers by CPU count and free memory, one thread each, 127.0.0.1
only) and its processes are `local_cluster`'s; this module decides when to start, scale,
restart or close it.

What this module does not do: it never closes, scales or restarts a cluster it did not
start, never makes its clients the process-wide default (so starting a cluster for the magic
does not re-route the user's own ``dask.compute`` calls), and never submits work.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import dask.config
from dask.system import CPU_COUNT
from dask.utils import format_bytes
from distributed import Client, LocalCluster

from dask_magic.errors import ClusterError

from . import handoffs
from .identity import scheduler_identity
from .local_cluster import (
    MEMORY_ENV_VAR,
    MIN_WORKER_MEMORY,
    SCALE_TIMEOUT,
    WORKER_CONFIG,
    Local,
    default_workers,
    environ_kept,
    local_cluster_size,
    memory_budget,
    new_local_cluster,
    scale,
    start_processes,
    wait_for_workers,
)
from .results import ClusterInfo
from .spawn import ensure_main_spawnable, start_failure_advice

__all__ = [
    "MEMORY_ENV_VAR",
    "MIN_WORKER_MEMORY",
    "close_cluster",
    "cluster_info",
    "current_cluster_info",
    "default_workers",
    "get_client",
    "new_local_cluster",
    "restart_cluster",
    "scale_cluster",
]

_CLOSE_TIMEOUT = 20


@dataclass
class _State:
    lock: threading.RLock = field(default_factory=threading.RLock)
    local: Local | None = None
    by_address: dict[str, Client] = field(default_factory=dict)
    # id(cluster object) -> (the object, our Client on it); the object is held so the id
    # cannot be re-used by another object while the entry exists.
    wrapped: dict[int, tuple[Any, Client]] = field(default_factory=dict)
    last: Client | None = None
    atexit_registered: bool = False


_STATE = _State()


def get_client(
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    connect_timeout: float = 10,
) -> Client:
    """The Client a run should use, connecting or starting a cluster only when needed.

    Parameters
    ----------
    client:
        A `distributed.Client`, or a cluster object with a ``scheduler_address`` (for example
        `LocalCluster`); a cluster object is wrapped in a Client once and the Client re-used.
    scheduler:
        Address of a running scheduler (``tcp://10.0.0.5:8786``; ``tcp://`` may be left out).
    workers, threads:
        Shape of the local cluster: ``workers`` scales it, a different ``threads`` restarts
        it. They only apply to the cluster this module starts; with any other source they are
        ignored with a warning.
    connect_timeout:
        Seconds to wait for a scheduler given by address before raising `ClusterError`.

    Raises
    ------
    ClusterError
        The scheduler cannot be reached, the client object is closed or is not a client, or
        the local cluster failed to start.
    """
    with _STATE.lock:
        chosen = _choose(client, scheduler, connect_timeout)
        if chosen is None:
            chosen = _ensure_local(workers, threads)
        elif workers is not None or threads is not None:
            warnings.warn(
                "--workers and --threads only shape the local cluster dask-magic starts; "
                f"they were ignored for the cluster at {_address_of(chosen)}.",
                UserWarning,
                stacklevel=2,
            )
        _STATE.last = chosen
        return chosen


def _choose(client: Any, scheduler: str | None, timeout: float) -> Client | None:
    """Steps 1-4 of the precedence; None means "use the local cluster"."""
    if client is not None:
        return _from_object(client, timeout)
    if scheduler:
        return _connect(scheduler, timeout, source="--scheduler")
    # The environment is read here, not only through dask.config, because dask reads DASK_*
    # variables once at import and a notebook may set one later.
    address = os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        return _connect(address, timeout, source="DASK_SCHEDULER_ADDRESS")
    address = dask.config.get("scheduler-address", default=None)
    if address:
        return _connect(address, timeout, source="dask config 'scheduler-address'")
    return _default_client()


def _from_object(obj: Any, timeout: float) -> Client:
    if isinstance(obj, Client):
        if obj.status not in ("running", "connecting"):
            raise ClusterError(
                f"The client passed to dask-magic is {obj.status}; create a new "
                "`Client(...)` or leave out --client to use a local cluster."
            )
        return obj
    if not hasattr(obj, "scheduler_address"):
        raise ClusterError(
            f"--client expects a distributed.Client or a cluster object such as LocalCluster, "
            f"not {type(obj).__name__}."
        )
    cached = _STATE.wrapped.get(id(obj))
    if cached is not None and cached[0] is obj and cached[1].status == "running":
        return cached[1]
    try:
        wrapped = Client(obj, timeout=timeout, set_as_default=False)
    except Exception as exc:  # any failure here means the same thing: that cluster is unusable
        raise ClusterError(
            f"Cannot connect to the cluster object passed with --client ({type(obj).__name__} "
            f"at {getattr(obj, 'scheduler_address', '?')}): {type(exc).__name__}: {exc}. "
            "Is it closed? Start it again, or leave out --client to use a local cluster."
        ) from exc
    _STATE.wrapped[id(obj)] = (obj, wrapped)
    return wrapped


def _normalize_address(address: str) -> str:
    address = address.strip()
    return address if "://" in address else f"tcp://{address}"


def _connect(address: str, timeout: float, *, source: str) -> Client:
    """A Client on ``address``, cached per address; `ClusterError` after about ``timeout``."""
    key = _normalize_address(address)
    cached = _STATE.by_address.get(key)
    if cached is not None and cached.status == "running":
        return cached
    try:
        connected = Client(key, timeout=timeout, set_as_default=False)
    except Exception as exc:  # refused, timed out, malformed, or not a scheduler at all
        raise ClusterError(_unreachable_message(key, source, timeout, exc)) from exc
    _STATE.by_address[key] = connected
    return connected


def _unreachable_message(address: str, source: str, timeout: float, exc: BaseException) -> str:
    undo = {
        "--scheduler": "drop --scheduler",
        "DASK_SCHEDULER_ADDRESS": "unset DASK_SCHEDULER_ADDRESS",
    }.get(source, "remove 'scheduler-address' from the dask config")
    return (
        f"Cannot reach the Dask scheduler at {address} (from {source}; waited {timeout:g} s: "
        f"{type(exc).__name__}: {exc}).\n"
        f"Start one with `dask scheduler` (and `dask worker {address}`), check the address "
        f"and port, or {undo} to use a local cluster that dask-magic starts for you."
    )


def _default_client() -> Client | None:
    """The user's own default Client in this process, if there is a live one."""
    try:
        current = Client.current(allow_global=True)
    except ValueError:
        return None
    local = _STATE.local
    if current.status != "running" or (local is not None and current is local.client):
        return None
    return current


# -- the local cluster ---------------------------------------------------------------------


def _ensure_local(workers: int | None, threads: int | None) -> Client:
    # every start, scale and nanny restart spawns processes: %reset may have broken that
    ensure_main_spawnable()
    local = _STATE.local
    if local is not None and local.client.status != "running":  # closed behind our back
        _shutdown_local()
        local = None
    if local is not None and threads is not None and threads != local.threads:
        # A worker's thread count is fixed when its process starts.
        _shutdown_local()
        local = None
    if local is None:
        local = _start_local(workers, threads)
    elif workers is not None and workers != len(local.cluster.worker_spec):
        scale(local, workers)
    return local.client


def _start_local(workers: int | None, threads: int | None) -> Local:
    size = local_cluster_size(CPU_COUNT, memory_budget(), workers=workers, threads=threads)
    try:
        with dask.config.set(WORKER_CONFIG), environ_kept():
            cluster = start_processes(size)
    except Exception as exc:  # whatever broke, the message names its real cause and fix
        raise ClusterError(
            f"Could not start a local Dask cluster ({size.workers} workers x {size.threads} "
            f"threads, {format_bytes(size.memory_limit)} each): {type(exc).__name__}: "
            f"{str(exc).rstrip('.')}; {start_failure_advice(exc)}"
        ) from exc
    try:
        client = Client(cluster, set_as_default=False)
    except Exception:
        cluster.close(timeout=_CLOSE_TIMEOUT)
        raise
    _STATE.local = Local(cluster, client, size.threads)
    handoffs.lower_while_local()  # its scheduler now shares the kernel's GIL
    if not _STATE.atexit_registered:
        atexit.register(_close_at_exit)
        _STATE.atexit_registered = True
    return _STATE.local


def _shutdown_local() -> bool:
    local, _STATE.local = _STATE.local, None
    if local is None:
        return False
    handoffs.restore_after_local()
    _close_quietly(local.client)
    _close_quietly(local.cluster)
    return True


def _close_quietly(closeable: Client | LocalCluster) -> None:
    if _STATE.last is closeable:
        _STATE.last = None
    try:
        closeable.close(timeout=_CLOSE_TIMEOUT)
    except Exception:  # already closed or half-dead: nothing is left to release
        logging.getLogger(__name__).debug("closing %r failed", closeable, exc_info=True)


def _close_at_exit() -> None:
    try:
        close_cluster()
    except Exception:  # never turn interpreter exit into a traceback
        pass


# -- management: what %dask_cluster and the sidebar call ------------------------------------


def close_cluster() -> bool:
    """Close the local cluster and the clients this module created; True if any was open.

    A cluster or Client the user made is never closed (only our Client on it is).
    """
    with _STATE.lock:
        closed = _shutdown_local()
        ours = [*_STATE.by_address.values(), *(c for _, c in _STATE.wrapped.values())]
        _STATE.by_address.clear()
        _STATE.wrapped.clear()
        for client in ours:
            closed = closed or client.status == "running"
            _close_quietly(client)
        return closed


def restart_cluster() -> ClusterInfo | None:
    """Restart the local cluster's workers (clears their memory); None if there is none."""
    with _STATE.lock:
        local = _STATE.local
        if local is None or local.client.status != "running":
            return None
        ensure_main_spawnable()
        local.client.restart(wait_for_workers=True, timeout=SCALE_TIMEOUT)
        wait_for_workers(local, len(local.cluster.worker_spec))
        return cluster_info(local.client)


def scale_cluster(n: int) -> ClusterInfo:
    """Scale the local cluster to ``n`` workers, starting it if needed."""
    if n < 1:
        raise ValueError(f"a cluster needs at least one worker, not {n}")
    with _STATE.lock:
        return cluster_info(_ensure_local(n, None))


def current_cluster_info() -> ClusterInfo | None:
    """The cluster of the last `get_client` call (or the local one), without starting any."""
    with _STATE.lock:
        candidates = [_STATE.last, _STATE.local.client if _STATE.local else None]
    for client in candidates:
        if client is not None and client.status == "running":
            return cluster_info(client)
    return None


def cluster_info(client: Client) -> ClusterInfo:
    """Scheduler, workers, threads, memory and dashboard of ``client``'s cluster.

    For the local cluster this reads the worker list its cluster object keeps up to date from
    the scheduler's events: no round trip (every pass of a run asks, and a warm 1-item cell
    is only a few round trips long). Any other cluster is asked.
    """
    local = _STATE.local
    info = _local_scheduler_info(local) if local is not None and client is local.client else None
    if info is None:
        info = scheduler_identity(client)
    workers = info.get("workers", {}).values()
    return ClusterInfo(
        scheduler=info.get("address") or _address_of(client),
        workers=len(workers),
        threads=sum(int(w.get("nthreads", 0)) for w in workers),
        memory=sum(int(w.get("memory_limit") or 0) for w in workers),
        dashboard=client.dashboard_link if "dashboard" in info.get("services", {}) else None,
        local=local is not None and client is local.client,
    )


def _local_scheduler_info(local: Local) -> dict[str, Any] | None:
    try:
        info = dict(local.cluster.scheduler_info)
    except Exception:  # an older distributed, or a cluster being closed: ask the scheduler
        return None
    return info if info.get("workers") and info.get("address") else None


def _address_of(client: Client) -> str:
    try:
        return str(client.scheduler.address)
    except AttributeError:
        return "<unknown scheduler>"
