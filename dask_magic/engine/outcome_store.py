"""`Outcomes`: a run's ``{index: ItemOutcome}``, with whole batches kept as columns.

A run keeps every item's outcome for as long as the session keeps the run (the sidebar's
history, IPython's ``Out``). A batch of plain done items (`engine.loaded_batch`) is stored
as itself, one look-up entry per item pointing at it; an item's `ItemOutcome` is made the
first time someone reads it and kept from then on (so a change made to it stays). The run's
own bookkeeping (counts, the commit, the final bindings, failures) reads the batches without
making any.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from .loaded_batch import LoadedBatch
from .results import STASHED, ItemOutcome


class Outcomes(MutableMapping[int, ItemOutcome]):
    """``{index: ItemOutcome}`` for the items that ended; see the module docstring."""

    __slots__ = ("_batches", "_lazy", "_one")

    def __init__(self) -> None:
        self._one: dict[int, ItemOutcome] = {}  # made (or read) as ItemOutcomes
        self._lazy: dict[int, LoadedBatch] = {}  # still columns: index -> its batch
        self._batches: list[LoadedBatch] = []  # the batches stored, in their order

    # -- the mapping ------------------------------------------------------------------------
    def __getitem__(self, index: int) -> ItemOutcome:
        found = self._one.get(index)
        if found is not None:
            return found
        if index not in self._lazy:
            raise KeyError(index)
        outcome = self._one[index] = self._release(index)
        return outcome

    def __setitem__(self, index: int, outcome: ItemOutcome) -> None:
        if index in self._lazy:
            self._release(index)
        self._one[index] = outcome

    def __delitem__(self, index: int) -> None:
        if self._one.pop(index, None) is None:
            if index not in self._lazy:
                raise KeyError(index)
            self._release(index)

    def _release(self, index: int) -> ItemOutcome:
        """Item ``index`` stops being columns of its batch; returns it made."""
        batch = self._lazy.pop(index)
        pos = batch.position(index)
        batch.taken.add(pos)
        return batch[pos]

    def __contains__(self, index: object) -> bool:
        return index in self._one or index in self._lazy

    def __iter__(self) -> Iterator[int]:
        yield from list(self._one)
        yield from list(self._lazy)

    def __len__(self) -> int:
        return len(self._one) + len(self._lazy)

    def __repr__(self) -> str:
        return f"<Outcomes: {len(self._one)} made, {len(self._lazy)} as columns>"

    def copy(self) -> Outcomes:
        """A shallow copy (two C-level dict copies: safe against a run adding meanwhile)."""
        copied = Outcomes()
        copied._one, copied._lazy = self._one.copy(), self._lazy.copy()
        copied._batches = self._batches.copy()
        return copied

    # -- reading without making ItemOutcomes ----------------------------------------------------
    def status(self, index: int) -> str | None:
        """The item's status, or None if it has not ended."""
        found = self._one.get(index)
        if found is not None:
            return found.status
        return "done" if index in self._lazy else None

    def peek(self, index: int) -> ItemOutcome | None:
        """The item's outcome, made if need be but not kept (for readers on other threads)."""
        found = self._one.get(index)
        if found is not None:
            return found
        batch = self._lazy.get(index)
        return None if batch is None else batch[batch.position(index)]

    def worker_of(self, index: int) -> str | None:
        found = self._one.get(index)
        if found is not None:
            return found.worker
        batch = self._lazy.get(index)
        return None if batch is None else batch.worker

    def made(self) -> dict[int, ItemOutcome]:
        """The items that are `ItemOutcome`s: every one that is not a plain done item (a
        failure, output, a change in place) is among them. Read it, do not change it."""
        return self._one

    def batches(self) -> list[LoadedBatch]:
        """The batches that still hold some item as columns."""
        live = [b for b in self._batches if len(b.taken) + len(b.unusual) < len(b)]
        self._batches = live
        return live

    # -- adding -------------------------------------------------------------------------------
    def add_batch(self, batch: LoadedBatch) -> list[int]:
        """Store ``batch``'s plain items as columns; returns their indices. An item that has
        an outcome already (retried while the pass runs) is made `unusual` first: it is
        stored by the caller as itself, like the batch's other unusual items."""
        plain = batch.plain_indices()
        if not (self._one.keys().isdisjoint(plain) and self._lazy.keys().isdisjoint(plain)):
            for index in [i for i in plain if i in self]:
                pos = batch.position(index)
                batch.unusual[pos] = batch[pos]
            plain = batch.plain_indices()
        self._lazy.update(dict.fromkeys(plain, batch))
        if plain:
            self._batches.append(batch)
        return plain

    # -- what the final bindings read --------------------------------------------------------
    def binding_rows(self) -> list[ItemOutcome]:
        """Done items enough to find every name's first and last binding: every made one,
        and per batch and shape of names its first and last item (made, not kept)."""
        rows = [o for o in self._one.values() if o.status == "done"]
        for batch in self.batches():
            for first, last in batch.shape_ends():
                rows += [batch[pos] for pos in sorted({first, last})]
        return rows

    def any_stashed(self) -> bool:
        """Whether some done item left a value on its worker."""
        if any(b.shape_ends() for b in self.batches()):
            return True
        return any(v is STASHED for o in self._one.values() for v in o.bound.values())

    def __reduce__(self) -> Any:  # pickled (a run saved with the notebook's objects) as a dict
        return (_from_dict, (dict(self.items()),))


def _from_dict(outcomes: dict[int, ItemOutcome]) -> Outcomes:
    store = Outcomes()
    store._one.update(outcomes)
    return store
