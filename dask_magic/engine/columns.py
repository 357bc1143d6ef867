"""A batch's outcomes as columns: what a task sends back to the kernel, and how it is decoded.

The per-item cost is what ``%%parallel_for`` over 10,000 tiny items pays 10,000 times, so a
batch's outcomes do not travel as one pickled dataclass per item: the fields most items share
are lists, everything unusual is sparse (`Columns`), and unpickling keeps them as columns
in the kernel (`unpack`, `engine.loaded_batch`). An item whose contribution cannot be pickled
fails alone (`dumps`). Stdlib and cloudpickle only: this runs inside Dask workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cloudpickle

from .errorinfo import _safe_str, _type_name
from .loaded_batch import LoadedBatch, compact_ops
from .results import ErrorInfo


class Columns:
    """A batch's outcomes, field by field.

    Most items of a batch look alike (done, silent, the same names bound), so the common
    fields are lists and everything unusual (a failure, output, warnings, names deleted) is a
    sparse ``{position: {field: value}}``. Pickled, it is rebuilt as a `LoadedBatch` *while it
    is loaded* (`__reduce__` names `unpack`): ``cloudpickle.loads(blob)`` in the kernel is the
    whole decoding step, and plain lists of tuples load at C speed.
    """

    __slots__ = ("durations", "extras", "indices", "inline", "names", "ops", "values", "worker")

    def __init__(self, worker: str | None, loop: bool) -> None:
        self.worker = worker
        self.indices: list[int] = []
        self.durations: list[float] = []
        # each item's operations as a tuple: once its contents are plain data the cyclic
        # collector stops tracking it, where a kept list is walked at every full collection
        self.ops: list[tuple[tuple, ...]] | None = [] if loop else None
        self.values: list[Any] | None = None if loop else []
        self.names: list[tuple[str, ...] | None] = []  # names whose values stayed here
        self.inline: dict[int, dict[str, Any]] = {}  # position -> bound values that travel
        self.extras: dict[int, dict[str, Any]] = {}  # position -> unusual ItemOutcome fields

    def add(self, index: int, duration: float, ops: list[tuple], value: Any) -> int:
        """A new item (its recorded operations, or its return value); returns its position."""
        self.indices.append(index)
        self.durations.append(duration)
        if self.ops is not None:
            self.ops.append(tuple(ops))
        else:
            self.values.append(value)  # type: ignore[union-attr]
        return len(self.indices) - 1

    def fields(self) -> tuple:
        return (
            self.worker,
            self.indices,
            self.durations,
            None if self.ops is None else compact_ops(self.ops),
            self.values,
            self.names,
            self.inline,
            self.extras,
        )

    def __reduce__(self) -> tuple:
        return (unpack, self.fields())


def unpack(worker, indices, durations, ops, values, names, inline, extras) -> LoadedBatch:
    """`Columns` back in the kernel (inside ``loads``): a `LoadedBatch`, with an `ItemOutcome`
    made only for each item that is not a plain done, silent one."""
    batch = LoadedBatch(worker, indices, durations, ops, values, names)
    for pos in sorted({*inline, *extras}):
        outcome = batch[pos]
        if pos in inline:
            outcome.bound = inline[pos]
        for name, value in extras.get(pos, {}).items():
            setattr(outcome, name, value)
        batch.unusual[pos] = outcome
    return batch


def picklable_only(local_names: dict[str, Any]) -> dict[str, Any]:
    """The bound values that can travel; e.g. a closed file from `with open(f) as fh` cannot,
    and that name is left alone rather than failing the item."""
    inline = {}
    for name, value in local_names.items():
        try:
            cloudpickle.dumps(value)
        except Exception:
            continue
        inline[name] = value
    return inline


def dumps(columns: Columns) -> bytes:
    """Pickle a batch's outcomes; an unpicklable contribution turns only its item into a failure."""
    try:
        return cloudpickle.dumps(columns)
    except Exception:  # one item's unpicklable result must not take the batch down with it
        pass
    for pos in range(len(columns.indices)):
        contribution = columns.ops[pos] if columns.ops is not None else columns.values[pos]  # type: ignore[index]
        try:
            cloudpickle.dumps(contribution)
        except Exception as exc:
            _mark_unpicklable(columns, pos, exc)
    return cloudpickle.dumps(columns)


def _mark_unpicklable(columns: Columns, pos: int, exc: Exception) -> None:
    if columns.ops is not None:
        culprit = _unpicklable_part(columns.ops[pos])
        columns.ops[pos] = ()
    else:
        culprit = "the item's return value"
        columns.values[pos] = None  # type: ignore[index]
    columns.names[pos] = None
    columns.inline.pop(pos, None)
    fields = columns.extras.setdefault(pos, {})
    fields.pop("deleted", None)
    fields["status"] = "failed"
    fields["error"] = ErrorInfo(
        type_name="dask_magic.UnpicklableResult",
        message=f"{culprit} cannot be sent back to the notebook: "
        f"{_type_name(exc)}: {_safe_str(exc)}",
        hint="Return or collect plain data (numbers, strings, lists, dicts, arrays, "
        "DataFrames), not open files, locks, connections or generators.",
    )


def _unpicklable_part(ops: Sequence[tuple]) -> str:
    for op in ops:
        try:
            cloudpickle.dumps(op)
        except Exception:
            return f"the value added to `{op[1]}`"
    return "the item's result"
