"""Send big objects to the workers once, and re-use them while they are unchanged.

A name the loop body reads that is bigger than `SCATTER_THRESHOLD` (a model, a lookup table,
a reference DataFrame) is scattered once and every task gets the future, instead of each task
pickling its own copy. Re-running the cell re-uses that future as long as the object is the
same object *and* its content is unchanged; an in-place change (``arr[0] = 1``) is noticed by a
content fingerprint and the object is scattered anew.

A pass fingerprints each value once: inside `one_fingerprint_per_value` (the pass's
journal keys, then its scatter), `fingerprint` remembers what it computed for each object.

This module decides and caches; it does not decide which names the body reads, and it never
scatters modules, functions or classes (they travel inside the pickled body).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import threading
import types
from collections import Counter, OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cloudpickle
import dask.config
import xxhash
from dask.sizeof import sizeof
from dask.utils import parse_bytes
from distributed import Client, Future

__all__ = [
    "SCATTER_THRESHOLD",
    "ScatterCache",
    "default_cache",
    "fingerprint",
    "one_fingerprint_per_value",
    "scatter_threshold",
    "should_scatter",
]

#: Objects bigger than this (bytes, by `dask.sizeof`) are scattered once instead of pickled
#: into every task. dask config ``dask-magic.scatter-threshold`` overrides it.
SCATTER_THRESHOLD = 1_000_000

_NEVER_SCATTERED = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    type,
    Future,
)


def scatter_threshold() -> int:
    """The threshold in force: dask config ``dask-magic.scatter-threshold`` or the default."""
    value = dask.config.get("dask-magic.scatter-threshold", default=SCATTER_THRESHOLD)
    return int(parse_bytes(value)) if isinstance(value, str) else int(value)


def should_scatter(obj: Any, threshold: int | None = None) -> bool:
    """Whether ``obj`` is big enough to send once rather than with every task.

    Modules, functions, methods and classes are never scattered: they are pickled by
    reference or with the body, and a scattered function would arrive as a future.
    """
    if isinstance(obj, _NEVER_SCATTERED):
        return False
    limit = scatter_threshold() if threshold is None else threshold
    try:
        size = sizeof(obj)
    except Exception:  # a broken __sizeof__ must not stop the run: treat it as small
        return False
    return size > limit


#: how many fingerprints this process computed (``COUNTS["fingerprint"]``): what a test of
#: "once per value" reads
COUNTS: Counter[str] = Counter()
# id(obj) -> (obj, its fingerprint) while a pass fingerprints; the object is held so that
# its id is not re-used by another one before the pass ends
_PASS_MEMO: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar(
    "dask_magic_fingerprints", default=None
)


@contextlib.contextmanager
def one_fingerprint_per_value() -> Iterator[None]:
    """While a pass builds its journal keys and its job: each value is fingerprinted once.

    Only for that stretch, when no code of the notebook runs between the two; afterwards an
    in-place change must be seen, so every later `fingerprint` hashes again.
    """
    token = _PASS_MEMO.set({}) if _PASS_MEMO.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _PASS_MEMO.reset(token)


def pass_memo() -> dict[Any, Any] | None:
    """The memo of `one_fingerprint_per_value` while one is open (else None), for other
    things a pass computes twice from the same values (the local modules' digests)."""
    return _PASS_MEMO.get()


def fingerprint(obj: Any) -> str | None:
    """A content hash of ``obj`` (once per object inside `one_fingerprint_per_value`)."""
    memo = _PASS_MEMO.get()
    if memo is None:
        return _fingerprint(obj)
    if id(obj) not in memo:
        memo[id(obj)] = (obj, _fingerprint(obj))
    return memo[id(obj)][1]


def _fingerprint(obj: Any) -> str | None:
    """A content hash of ``obj``, or None when it cannot be computed (then never re-used).

    The object is pickled with protocol 5 into a sink that hashes in-band bytes as they are
    written, while large buffers (numpy, pandas, Arrow) come out of band and are hashed in
    place, without a copy, a big one in pieces on several threads (`_buffer_digest`). Hashing
    is XXH3 (128 bits, `xxhash`, a dependency for this reason): a 200 MB array took about 10
    ms in one thread on a busy 2-core machine (in pieces on 2 cores, half), against 28-30 ms with
    the XXH64 that `dask.hashing` picks, and 0.1 s with SHA-1; `dask.base.tokenize` costs as
    much as SHA-1 there, and ten times more on a big dict or list, which it normalises element
    by element in Python.
    """
    COUNTS["fingerprint"] += 1
    digests: list[str] = []
    sink = _HashingFile(digests)
    try:
        pickler = cloudpickle.CloudPickler(
            sink, protocol=5, buffer_callback=lambda b: digests.append(_buffer_digest(b.raw()))
        )
        pickler.dump(obj)
    except Exception:  # unpicklable (scatter will say why) or a non-contiguous buffer
        return None
    sink.flush()
    return "-".join(digests)


def _hex(data: bytes | memoryview) -> str:
    return xxhash.xxh3_128_hexdigest(data)


#: A buffer of at least two pieces is hashed piece by piece on `_hashing_pool`'s threads:
#: XXH3 lets the GIL go, so a 200 MB array takes half the time on 2 cores (before the
#: submit, the workers are idle). The pieces' size is fixed, so that the digest (which the
#: journal stores) is the same on every machine, whatever its number of cores.
_PIECE = 16 * 2**20


def _buffer_digest(data: memoryview) -> str:
    if data.nbytes < 2 * _PIECE:
        return _hex(data)
    pieces = [data[start : start + _PIECE] for start in range(0, data.nbytes, _PIECE)]
    return _hex("".join(_hashing_pool().map(_hex, pieces)).encode())


@functools.cache
def _hashing_pool() -> ThreadPoolExecutor:
    threads = min(os.cpu_count() or 1, 8)  # past 8, the memory's bandwidth is the limit
    return ThreadPoolExecutor(threads, thread_name_prefix="dask-magic-hash")


if hasattr(os, "register_at_fork"):  # a forked child has the pool but none of its threads
    os.register_at_fork(after_in_child=_hashing_pool.cache_clear)


class _HashingFile:
    """Collects pickled bytes in chunks and hashes each full chunk, bounding memory."""

    _CHUNK = 8 * 2**20

    def __init__(self, digests: list[str]) -> None:
        self._digests = digests
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | memoryview) -> int:
        self._parts.append(bytes(data))
        self._size += len(data)
        if self._size >= self._CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._parts:
            self._digests.append(_hex(b"".join(self._parts)))
            self._parts, self._size = [], 0


@dataclass
class _Entry:
    obj_id: int
    fingerprint: str
    future: Future
    client_id: str
    nbytes: int


class ScatterCache:
    """Scattered futures by name, re-used while the object is the same and unchanged.

    Parameters
    ----------
    max_entries, max_bytes:
        Bounds on what the cache keeps alive on the cluster; the least recently used entries
        are dropped first (dropping the future lets the cluster release the data).

    Notes
    -----
    Objects are scattered with ``hash=False``: with content-hashed keys, two equal objects
    share one key, and releasing one of the futures can release the data under the other
    (dask/distributed#3703; joblib's dask backend makes the same choice). The cache keeps no
    reference to the objects themselves, so a deleted 200 MB array is freed in the kernel.
    """

    def __init__(self, max_entries: int = 32, max_bytes: int = 4 * 2**30) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, client: Client, name: str, obj: Any) -> Future:
        """The future holding ``obj`` on ``client``'s cluster, scattering it only if needed."""
        digest = fingerprint(obj)
        with self._lock:
            self._drop_dead()
            entry = self._entries.get(name)
            if entry is not None and self._reusable(entry, client, obj, digest):
                self._entries.move_to_end(name)
                return entry.future
            self._entries.pop(name, None)
        future = client.scatter(obj, hash=False)
        if digest is not None:  # without a fingerprint a change could not be noticed
            with self._lock:
                self._entries[name] = _Entry(id(obj), digest, future, client.id, _size(obj))
                self._evict()
        return future

    @staticmethod
    def _reusable(entry: _Entry, client: Client, obj: Any, digest: str | None) -> bool:
        return (
            entry.client_id == client.id
            and entry.obj_id == id(obj)
            and digest is not None
            and entry.fingerprint == digest
            and entry.future.status == "finished"  # "lost" when its worker died
        )

    def _drop_dead(self) -> None:
        """Forget entries whose client was closed or whose data was lost."""
        for name in [
            n
            for n, e in self._entries.items()
            if e.future.client.status != "running" or e.future.status != "finished"
        ]:
            del self._entries[name]

    def _evict(self) -> None:
        total = sum(e.nbytes for e in self._entries.values())
        while self._entries and (len(self._entries) > self.max_entries or total > self.max_bytes):
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.nbytes

    def discard(self, name: str) -> None:
        """Forget ``name`` (its data is released once no task holds the future)."""
        with self._lock:
            self._entries.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _size(obj: Any) -> int:
    try:
        return int(sizeof(obj))
    except Exception:  # counted as free rather than failing the run
        return 0


#: The cache the engine uses unless given another (one per kernel).
default_cache = ScatterCache()
