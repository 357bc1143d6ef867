"""Digests that tell whether the loop body changed an object in place, whatever its size.

A method call on a notebook object (``model.fit(X)``, ``big.fill(0)``) or on a loop item
(``row.append(x)``, ``d["seen"] = True``) may change it, and no reading of the code can tell
that from a pure call. On a worker such a change only touches the worker's copy: the serial
loop would have changed the notebook's object. The worker therefore takes a digest of the
names the body reads and of the batch's own items before the batch, and again after it; a
difference is reported in the kernel before the run's results are used.

What a digest covers, at a cost bounded per object:

* numpy arrays up to `FULL_BYTES`, and everything that is not an array or a frame: the
  whole pickle (cloudpickle), hashed as it is written, never held in memory;
* bigger numpy arrays, wherever they sit (a model's weights, a list of arrays): shape, dtype,
  strides and `SAMPLED_BLOCKS` blocks of `BLOCK_BYTES` at evenly spaced offsets, first and
  last included. A change to much of the array (``fit``, ``fill``, ``sort``, normalising,
  shuffling) is seen; a change to a few elements between the blocks may not be;
* pandas frames and series: columns, dtypes, index and a hash of their rows by value
  (`pandas.util.hash_pandas_object`), all rows up to `FRAME_ROWS`, else `SAMPLED_BLOCKS`
  evenly spaced runs of rows. Values, not memory layout: reading a frame may consolidate its
  blocks, which must not look like a change.

Hashing is XXH3 (`xxhash`): the digests are compared inside one worker process, never
stored. Measured on a 2-core container, per digest: 0.08 ms for a 200 MB float64 array
(1.6 ms for a strided view of it, whose sampled elements are copied), 0.08 ms for a 1 MB one
(hashed whole), 0.7 ms for an object holding 50 MB of weights, 1 ms for a 2-million-row frame
of four columns, 3 µs for a small dict; blake2b took 1.5-2.2 ms for the 200 MB array, most of
a re-run's time on the workers when each item reads it. A batch pays two digests per object
it reads and per mutable item. numpy and pandas are used only when the process has already
imported them.

Runs in worker processes: stdlib, cloudpickle and xxhash only at import.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

import cloudpickle
import xxhash

from .results import ITEM_MUTATED

__all__ = [
    "BLOCK_BYTES",
    "FRAME_ROWS",
    "FULL_BYTES",
    "SAMPLED_BLOCKS",
    "BatchWatch",
    "digest",
    "fingerprints",
]

#: Arrays up to this size are hashed whole; bigger ones are sampled.
FULL_BYTES = 1 << 20
#: A big array contributes this many blocks of `BLOCK_BYTES` (1 MiB hashed in all).
SAMPLED_BLOCKS = 64
BLOCK_BYTES = 16 << 10
#: Frames and series up to this many rows are hashed whole, bigger ones by runs of rows.
FRAME_ROWS = 4096

#: Values that cannot change in place (or whose change is not data: modules, functions).
_NEVER_CHANGE = (
    int,
    float,
    complex,
    str,
    bytes,
    bool,
    type(None),
    frozenset,
    range,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    type,
)


#: The exact types of the usual items (numbers, strings, paths as text): a set look-up instead
#: of `_immutable`'s call per item, for a batch of 5,000 tiny items.
_PLAIN_TYPES = frozenset({int, float, str, bytes, bool, type(None)})


def _immutable(value: Any) -> bool:
    if isinstance(value, _NEVER_CHANGE):
        return True
    return type(value) is tuple and all(isinstance(v, _NEVER_CHANGE) for v in value)


class _Summary:
    """Stands for a big array or a frame in the pickle stream: only its digest is written."""

    def __init__(self, digest: bytes) -> None:
        self.digest = digest


class _HashSink:
    """A file for the pickler that hashes what is written instead of keeping it."""

    def __init__(self) -> None:
        self.hash = xxhash.xxh3_128()

    def write(self, data: bytes | pickle.PickleBuffer) -> int:
        # protocol 5 hands over big contiguous buffers (arrays) as PickleBuffer, uncopied
        self.hash.update(data)
        return memoryview(data).nbytes


class _DigestPickler(cloudpickle.Pickler):
    """cloudpickle, with big arrays and every frame replaced by their bounded summaries."""

    def reducer_override(self, obj: Any) -> Any:
        summary = _bounded_summary(obj)
        if summary is not None:
            return _Summary, (summary,)
        return super().reducer_override(obj)


def digest(obj: Any) -> bytes | None:
    """A 16-byte digest of ``obj`` (see the module docstring); None if it cannot be pickled."""
    sink = _HashSink()
    try:
        _DigestPickler(sink, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    except Exception:  # what cannot be pickled cannot be compared either
        return None
    return sink.hash.digest()


def fingerprints(env: Mapping[str, Any]) -> dict[str, bytes]:
    """A digest of each object in ``env`` that could change in place (others are skipped)."""
    found = {}
    for name, value in env.items():
        if _immutable(value):
            continue
        print_ = digest(value)
        if print_ is not None:
            found[name] = print_
    return found


# -- big arrays and frames --------------------------------------------------------------------


def _bounded_summary(obj: Any) -> bytes | None:
    """The summary digest of a big numpy array or of a pandas frame/series, else None."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.ndarray):
        return _array_summary(obj, numpy) if obj.nbytes > FULL_BYTES else None
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(obj, (pandas.DataFrame, pandas.Series)):
        return _frame_summary(obj, pandas)
    return None


def _offsets(total: int, block: int) -> list[int]:
    """`SAMPLED_BLOCKS` starts of ``block``-long runs spread evenly over ``total``."""
    last = max(0, total - block)
    return sorted({round(k * last / (SAMPLED_BLOCKS - 1)) for k in range(SAMPLED_BLOCKS)})


def _array_summary(array: Any, numpy: Any) -> bytes:
    hasher = xxhash.xxh3_128(repr((array.shape, array.dtype.str, array.strides)).encode())
    if array.dtype.hasobject:  # pointers say nothing about the objects: pickle a sample
        hasher.update(digest(_sample_elements(array, numpy, 256).tolist()) or b"?")
    elif array.flags.c_contiguous or array.flags.f_contiguous:
        raw = array.ravel(order="K").view(numpy.uint8)  # a view: nothing is copied
        for start in _offsets(raw.size, BLOCK_BYTES):
            hasher.update(raw[start : start + BLOCK_BYTES])
    else:  # a strided view: gather the sampled elements (a copy of only those)
        per_block = max(1, BLOCK_BYTES // max(1, array.itemsize))
        hasher.update(_sample_elements(array, numpy, per_block).tobytes())
    return hasher.digest()


def _sample_elements(array: Any, numpy: Any, per_block: int) -> Any:
    starts = _offsets(array.size, per_block)
    positions = numpy.concatenate([numpy.arange(s, min(s + per_block, array.size)) for s in starts])
    return array.flat[positions]


def _frame_summary(frame: Any, pandas: Any) -> bytes:
    rows = len(frame)
    if rows > FRAME_ROWS:
        per_block = max(1, FRAME_ROWS // SAMPLED_BLOCKS)
        positions = [p for s in _offsets(rows, per_block) for p in range(s, s + per_block)]
        frame = frame.iloc[positions]
    columns = getattr(frame, "columns", None)
    head = (rows, type(frame).__name__, list(columns) if columns is not None else frame.name)
    hasher = xxhash.xxh3_128(repr((head, repr(frame.dtypes))).encode())
    try:
        hashed = pandas.util.hash_pandas_object(frame, index=True).to_numpy()
        hasher.update(hashed.tobytes())
    except TypeError:  # unhashable cells (lists, dicts): pickle their values instead
        hasher.update(digest(frame.to_numpy(dtype=object).tolist()) or b"?")
    return hasher.digest()


# -- around a batch ---------------------------------------------------------------------------


class BatchWatch:
    """Digests of the notebook names a batch reads and of its items, taken before it runs.

    ``changes()`` after the batch gives the names whose object changed and the positions
    (in the batch) of the items that changed.
    """

    def __init__(self, namespace: Mapping[str, Any], names: Iterable[str], items: list) -> None:
        self._namespace = namespace
        self._names = fingerprints({n: namespace[n] for n in names if n in namespace})
        self._items = {
            pos: print_
            for pos, (_, item) in enumerate(items)
            if type(item) not in _PLAIN_TYPES
            and not _immutable(item)
            and (print_ := digest(item)) is not None
        }
        self._batch = items

    def changes(self, ran: int) -> tuple[tuple[str, ...], list[int]]:
        """Changed names, and positions of changed items among the first ``ran`` items."""
        now = fingerprints({n: self._namespace[n] for n in self._names})
        names = tuple(n for n, print_ in self._names.items() if now.get(n) != print_)
        items = [
            pos
            for pos, print_ in self._items.items()
            if pos < ran and digest(self._batch[pos][1]) != print_
        ]
        return names, items

    def record(self, extras: dict[int, dict[str, Any]], ran: int) -> None:
        """Write the changes into a batch's unusual outcome fields (``mutated``): the names on
        its first item, `ITEM_MUTATED` on each item that changed."""
        names, items = self.changes(ran)
        if names and ran:
            extras.setdefault(0, {})["mutated"] = names
        for pos in items:
            fields = extras.setdefault(pos, {})
            fields["mutated"] = (*fields.get("mutated", ()), ITEM_MUTATED)
