"""A task's outcomes in the kernel, kept as the columns they came in (`LoadedBatch`).

10,000 tiny items would otherwise be 10,000 `ItemOutcome` objects in the kernel, made when
the batch is loaded and walked again by every full collection of the cyclic collector for as
long as the run is kept. Most items of a batch are alike: done, silent, the same names left on
the worker. Those stay columns (lists of indices, durations, operations, shared name tuples:
nothing per item that the collector tracks); an `ItemOutcome` is made only for an item that
is read. The other items (a failure, output, values that travel, names deleted, an in-place
change) are `ItemOutcome`s from the start.

Stdlib only (it is what ``cloudpickle.loads`` of a worker's columns builds, see
`engine.columns`), and it imports nothing but `engine.results` and the contract.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from typing import Any, overload

from dask_magic import contract as C

from .results import STASHED, ItemOutcome

_EMPTY_NAMES: frozenset[str] = frozenset()
_DONE = ItemOutcome(index=-1, status="done")  # what a plain position's status reads as
#: `ItemOutcome`'s fields as `_done_by_slots` sets them; checked against the dataclass at
#: import, so that a field added later falls back to the dataclass's own ``__init__``.
_POSITIONAL = (
    "index",
    "status",
    "ops",
    "bound",
    "deleted",
    "value",
    "stdout",
    "stderr",
    "warnings",
    "error",
    "duration",
    "worker",
    "mutated",
)
_BY_POSITION = tuple(f.name for f in dataclasses.fields(ItemOutcome)) == _POSITIONAL


class AppendColumn(Sequence[tuple[tuple, ...]]):
    """A batch's operations when each item made exactly one ``root.append(value)``: the
    values in one list instead of an operation tuple per item (`compact_ops`).

    Read by position it is the operations the items recorded, so every reader of a batch's
    ``ops`` sees what it would have seen; the in-order commit extends the list in one call
    instead (`engine.replay.Appends.take_column`). 10,000 tiny items then pickle, travel,
    load and commit as one list of values.
    """

    __slots__ = ("root", "values")

    def __init__(self, root: str, values: list[Any]) -> None:
        self.root = root
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, pos: int) -> tuple[tuple, ...]: ...
    @overload
    def __getitem__(self, pos: slice) -> list[tuple[tuple, ...]]: ...
    def __getitem__(self, pos: int | slice) -> tuple[tuple, ...] | list[tuple[tuple, ...]]:
        if isinstance(pos, slice):
            return [self._op(v) for v in self.values[pos]]
        return self._op(self.values[pos])

    def __iter__(self) -> Iterator[tuple[tuple, ...]]:
        return map(self._op, self.values)

    def _op(self, value: Any) -> tuple[tuple, ...]:
        return ((C.OP_CALL, self.root, (), "append", (value,), None),)

    def __reduce__(self) -> tuple:
        return (AppendColumn, (self.root, self.values))


def compact_ops(ops: list[tuple[tuple, ...]]) -> Sequence[tuple[tuple, ...]]:
    """``ops`` as an `AppendColumn` when every item made one plain append to the same root
    (``("call", root, (), "append", (value,), None)``); otherwise ``ops`` itself."""
    if not ops or len(ops[0]) != 1 or len(ops[0][0]) != 6:
        return ops
    root = ops[0][0][1]
    try:
        values = [
            args[0]
            for ((kind, name, path, method, args, kwargs),) in ops
            if kind == C.OP_CALL
            and name == root
            and method == "append"
            and not path
            and kwargs is None
            and len(args) == 1
        ]
    except (TypeError, ValueError):  # an item with no operation, several, or another kind
        return ops
    return AppendColumn(root, values) if len(values) == len(ops) else ops


class LoadedBatch(Sequence[ItemOutcome]):
    """One task's outcomes, by position in the batch; a sequence of `ItemOutcome`.

    ``unusual`` holds the items that are not plain (position -> `ItemOutcome`); every other
    position is a done, silent item read from the columns. Reading a position makes a new
    `ItemOutcome` each time: whoever keeps or changes one stores it (`engine.outcome_store`).
    The ``bound`` dict of a plain item is shared by the items of its shape (never changed in
    place), and its operations are ``()`` once `drop_ops` let them go.
    """

    __slots__ = (
        "_positions",
        "_shapes",
        "durations",
        "indices",
        "names",
        "ops",
        "taken",
        "unusual",
        "values",
        "worker",
    )

    def __init__(
        self,
        worker: str | None,
        indices: list[int],
        durations: list[float],
        ops: Sequence[tuple] | None,
        values: list[Any] | None,
        names: list[tuple[str, ...] | None],
    ) -> None:
        self.worker = worker
        self.indices = indices
        self.durations = durations
        self.ops = ops  # None for a function's items (their values are in `values`), or dropped
        self.values = values
        self.names = names  # per position: the names whose values stayed on the worker
        self.unusual: dict[int, ItemOutcome] = {}
        #: positions whose item a run's store no longer holds as columns (made, or replaced)
        self.taken: set[int] = set()
        self._shapes: dict[tuple[str, ...], dict[str, Any]] = {}
        self._positions: dict[int, int] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, pos: int) -> ItemOutcome: ...
    @overload
    def __getitem__(self, pos: slice) -> list[ItemOutcome]: ...
    def __getitem__(self, pos: int | slice) -> ItemOutcome | list[ItemOutcome]:
        if isinstance(pos, slice):
            return [self[p] for p in range(len(self))[pos]]
        if pos < 0:
            pos += len(self.indices)
        found = self.unusual.get(pos)
        if found is not None:
            return found
        if not 0 <= pos < len(self.indices):
            raise IndexError(pos)
        return self._plain(pos)

    def __iter__(self) -> Iterator[ItemOutcome]:
        made = self._all_plain()
        for pos, outcome in self.unusual.items():
            made[pos] = outcome
        return iter(made)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so unhashable like one

    def __repr__(self) -> str:
        return f"<LoadedBatch of {len(self)} items, {len(self.unusual)} unusual>"

    # -- what the kernel reads without making an ItemOutcome ---------------------------------
    def plain_indices(self) -> list[int]:
        """The item indices of the plain positions, in batch order."""
        if not self.unusual:
            return self.indices
        unusual = self.unusual
        return [index for pos, index in enumerate(self.indices) if pos not in unusual]

    def statuses(self) -> list[str]:
        """Each position's status."""
        statuses = ["done"] * len(self.indices)
        for pos, outcome in self.unusual.items():
            statuses[pos] = outcome.status
        return statuses

    def done_durations(self) -> list[float]:
        if not self.unusual:
            return self.durations
        unusual = self.unusual  # an unusual item's duration is its column's, too
        return [
            d for pos, d in enumerate(self.durations) if unusual.get(pos, _DONE).status == "done"
        ]

    def position(self, index: int) -> int:
        """The position of item ``index`` in the batch (a look-up built on first use)."""
        if self._positions is None:
            self._positions = dict(zip(self.indices, range(len(self.indices)), strict=True))
        return self._positions[index]

    def ops_at(self, pos: int) -> Sequence[tuple]:
        return self.ops[pos] if self.ops is not None else ()

    def bound_at(self, pos: int) -> dict[str, Any]:
        """A plain position's ``bound``: one shared dict per shape of names."""
        names = self.names[pos]
        if not names:
            return {}
        shared = self._shapes.get(names)
        if shared is None:
            shared = self._shapes[names] = dict.fromkeys(names, STASHED)
        return shared

    def shape_ends(self) -> list[tuple[int, int]]:
        """For each shape of names the plain positions not `taken` leave on the worker: the
        positions of its first and last item (all a final binding needs to know of them)."""
        plain_names = self.names
        skip = self.unusual.keys() | self.taken
        shape = next(filter(None, plain_names), None)
        if shape is None:
            return []
        n = len(plain_names)
        if plain_names.count(shape) + plain_names.count(None) + plain_names.count(()) == n:
            # one shape, the usual batch: its first and last position that counts
            first = next((p for p in range(n) if plain_names[p] and p not in skip), None)
            if first is None:
                return []
            last = next(p for p in reversed(range(n)) if plain_names[p] and p not in skip)
            return [(first, last)]
        ends: dict[tuple[str, ...], list[int]] = {}
        for pos, names in enumerate(plain_names):
            if names and pos not in skip:
                span = ends.get(names)
                if span is None:
                    ends[names] = [pos, pos]
                else:
                    span[1] = pos
        return [(first, last) for first, last in ends.values()]

    def drop_ops(self) -> None:
        """The operations were committed and nothing replays them: let them go."""
        if self.ops is not None:
            self.ops = None

    # -- making ItemOutcomes -------------------------------------------------------------------
    def _plain(self, pos: int) -> ItemOutcome:
        value = self.values[pos] if self.values is not None else None
        return ItemOutcome(
            index=self.indices[pos],
            status="done",
            ops=self.ops_at(pos),
            bound=self.bound_at(pos),
            value=value,
            duration=self.durations[pos],
            worker=self.worker,
        )

    def _all_plain(self) -> list[ItemOutcome]:
        n = len(self.indices)
        ops = self.ops if self.ops is not None else itertools.repeat((), n)
        values = self.values if self.values is not None else itertools.repeat(None, n)
        bounds = map(self.bound_at, range(n))
        rows = zip(self.indices, ops, bounds, values, self.durations, strict=False)
        make = _done_by_slots if _BY_POSITION else _done_by_keyword
        return make(rows, self.worker)


def _done_by_slots(rows: Any, worker: str | None) -> list[ItemOutcome]:
    """Done outcomes, every field set directly: about half the time of calling the dataclass
    (reading a whole batch of 10,000 tiny items pays it 10,000 times); only while the fields
    are `_POSITIONAL`."""
    new, cls, empty = object.__new__, ItemOutcome, _EMPTY_NAMES
    outcomes: list[ItemOutcome] = []
    append = outcomes.append
    for index, item_ops, bound, value, duration in rows:
        outcome = new(cls)
        outcome.index, outcome.status, outcome.ops, outcome.bound = index, "done", item_ops, bound
        outcome.deleted, outcome.value, outcome.stdout, outcome.stderr = empty, value, "", ""
        outcome.warnings, outcome.error, outcome.duration = (), None, duration
        outcome.worker, outcome.mutated = worker, ()
        append(outcome)
    return outcomes


def _done_by_keyword(rows: Any, worker: str | None) -> list[ItemOutcome]:
    """Done outcomes through the dataclass: right whatever its fields are."""
    return [
        ItemOutcome(
            index=index,
            status="done",
            ops=item_ops,
            bound=bound,
            value=value,
            duration=duration,
            worker=worker,
        )
        for index, item_ops, bound, value, duration in rows
    ]
