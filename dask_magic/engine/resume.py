"""One pass of a run and the journal: restore what is known, write what ends, say why.

Before a pass, `PassJournal.split` reads the batches stored for the loop's code and inputs
and looks up every item's key among them: items found come back as done `ItemOutcome`s
(they go through the same in-order commit as items that ran, so their additions, ordered
part and printed output land exactly as if they had run), the rest are submitted. While the
pass runs, `record` keeps each task's outcomes *as the worker sent them* (the bytes, not
pickled again: the journal costs next to nothing per item) and writes them on the journal's
writer thread every `FLUSH_SECONDS` (sooner while the run is young) or `FLUSH_ITEMS`;
`finish` writes the rest, with the last bound values brought back from the workers, and
applies the size cap.

Bound values usually stay on the workers (`STASHED`); after the pass an override keeps the
last values fetched (or notes them lost). A restored item whose stashed values would be the
final ones (no later item binds them) cannot give them back: it runs again.

Nothing here knows about IPython; storage problems never stop the run (see `journal`).
"""

from __future__ import annotations

import copy
import itertools
import operator
import pickle
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cloudpickle

from . import journal_keys as keys
from . import journal_why
from .journal import Batch, Journal
from .journal_batches import cap_size, collector_off, load_outcomes, positions, put_kept
from .journal_setup import journal_text, label, max_size, print_why, shared_journal
from .loaded_batch import LoadedBatch
from .results import STASHED, ItemOutcome

FLUSH_SECONDS = 0.5
FLUSH_ITEMS = 50_000  # or sooner: every FLUSH_SECONDS (what a crash may lose)
_INDEX = operator.attrgetter("index")
_STATUS = operator.attrgetter("status")
__all__ = ["PassJournal", "for_run", "journal_text", "print_why"]


def for_run(
    plan: Any,
    ns: Mapping[str, Any],
    items: Sequence[Any],
    seed: int | None,
    fresh: bool,
    any_inputs: bool = False,
) -> PassJournal | None:
    """The journal of a new run, or None where it is off (``any_inputs``: see `PassJournal`).

    An ordered part that draws or writes into notebook objects (plots, open files) runs in
    the kernel at commit time from the item's recorded values, so a restored item's values
    are committed the same way: such loops are journaled too, unless the items themselves
    are objects (``zip(axes.flat, items)``): a stored copy would not draw on the new ones.
    """
    store = shared_journal()
    off = ""
    if plan.external and not keys.plain_items(items):
        store, off = None, "the ordered part draws or writes on items that are objects"
    journal = PassJournal(
        store,
        plan,
        ns,
        items,
        seed=seed,
        read=not fresh,
        label=label(plan),
        any_inputs=any_inputs,
    )
    journal.off_reason = off
    return journal


class PassJournal:
    """The journal's side of one run (all its passes); see the module docstring.

    Parameters
    ----------
    store:
        The `Journal`, or None when the journal is off for this run.
    read:
        Restore items found (False for ``--fresh``: items run, and are written again).
    any_inputs:
        Restore the latest done outcome of each item whatever the notebook values were
        (``%parallel_retry`` in a new kernel: the failed items run after a fix, the done
        ones are kept, as a retry in the same kernel keeps them).
    clock:
        ``time.monotonic`` unless a test passes its own: when to write a batch.
    """

    def __init__(
        self,
        store: Journal | None,
        plan: Any,
        ns: Mapping[str, Any],
        items: Sequence[Any],
        *,
        seed: int | None = None,
        read: bool = True,
        label: str = "",
        any_inputs: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store if store is not None and store.on else None
        self.read = read
        self.clock = clock
        self.label = label
        self.any_inputs = any_inputs
        self.off_reason = ""  # why the journal is off for this run, where it says
        self.plan, self.ns, self.items = plan, ns, items
        self.seed = seed
        self.run_key = keys.run_key(plan, seed) if self.store else ""
        self.env_key = ""
        self.env_parts: list[keys.Part] = []  # what the env key counted (``--why``)
        self.keys: list[str] = []  # the item key of each index
        self.restored: set[int] = set()
        self.at_risk: set[int] = set()
        self.reasons: dict[int, str] = {}
        # (batch, indices, failed positions, blob): the writer thread looks up their keys
        self.buffer: list[tuple[str, list[int], list[int], bytes]] = []
        self.buffered = 0  # items in `buffer`
        self.overrides: dict[tuple[str, int], bytes | None] = {}
        # (batch, its indices) as kept: no object per item, which the collector would walk
        self.kept: list[tuple[str, list[int]]] = []
        self.forgotten: set[int] = set()  # kept, then struck out (`forget`)
        self.older: list[str] = []  # batches a --fresh run writes anew
        self._started = self._last_flush = clock()
        self._unpicklable_said = False
        # batch ids: one random prefix per run and a counter (a uuid per batch cost more)
        self._batch_ids = map(f"{uuid.uuid4().hex}-{{}}".format, itertools.count())

    # -- before a pass ------------------------------------------------------------------------
    def split(self, indices: Sequence[int]) -> tuple[list[ItemOutcome], list[int]]:
        """``(restored outcomes, indices to run)`` for a pass over ``indices``."""
        if self.store is None:
            return [], list(indices)
        try:
            self.env_key = keys.env_key(self.plan, self.ns)
            self.env_parts = keys.env_parts(self.plan, self.ns)
            self.keys = keys.item_keys(self.items)
        except Exception as exc:
            self.store.warn(f"the journal keys could not be computed ({exc!r}); run without it")
            self.store = None
            return [], list(indices)
        stored = self.store.listing(self.run_key, None if self.any_inputs else self.env_key)
        if not self.read:
            self.older = [batch.id for batch in stored]
            return [], list(indices)
        with collector_off():
            return self._restore(indices, stored)

    def _restore(
        self, indices: Sequence[int], stored: Sequence[Batch]
    ) -> tuple[list[ItemOutcome], list[int]]:
        where, failed = positions(stored)
        if not where:  # nothing stored for this code and these inputs: a new run
            self._note_failed(indices, failed)
            return [], list(indices)
        item_keys = self.keys
        hits = {i: where[item_keys[i]] for i in indices if item_keys[i] in where}
        found, lost = self._load(hits)
        self._drop_at_risk(found, lost, indices)
        if found and self.store is not None:
            self.store.touch(self.run_key)
        self.restored |= set(found)
        to_run = [i for i in indices if i not in found]
        self.restored -= set(to_run)
        self._note_failed(to_run, failed)
        return [found[i] for i in sorted(found)], to_run

    def _note_failed(self, to_run: Sequence[int], failed: set[str]) -> None:
        if failed:
            self.reasons.update({i: "failed before" for i in to_run if self.keys[i] in failed})

    def _load(
        self, hits: Mapping[int, tuple[str, int]]
    ) -> tuple[dict[int, ItemOutcome], dict[int, frozenset[str]]]:
        """The stored outcomes of ``hits`` as these indices, and the names each could not
        bring back; a batch that cannot be loaded is a miss."""
        assert self.store is not None
        blobs, overrides = self.store.outcomes(sorted({batch for batch, _ in hits.values()}))
        loaded: dict[str, list[ItemOutcome | None] | None] = {}
        found: dict[int, ItemOutcome] = {}
        lost: dict[int, frozenset[str]] = {}
        used: set[tuple[str, int]] = set()
        nothing_lost: frozenset[str] = frozenset()
        for index, place in sorted(hits.items()):  # ``place``: the tuple `positions` made
            batch, pos = place
            if batch not in loaded:
                loaded[batch] = load_outcomes(blobs.get(batch))
            outcomes = loaded[batch]
            outcome = outcomes[pos] if outcomes is not None and pos < len(outcomes) else None
            if outcome is None:
                continue
            bound: dict[str, Any] = {}
            lost[index] = nothing_lost
            if overrides and place in overrides:
                override = overrides[place]
                if override is None:  # struck out
                    continue
                bound, lost[index] = pickle.loads(override)
            if place in used:  # the same item twice in this run: each its own copy
                outcome = copy.deepcopy(outcome)
            else:
                used.add(place)
            outcome.index, outcome.status, outcome.worker = index, "done", "journal"
            if bound:
                outcome.bound = bound
            found[index] = outcome
        return found, lost

    def _drop_at_risk(
        self, found: dict[int, ItemOutcome], lost: dict[int, frozenset[str]], indices: Sequence[int]
    ) -> None:
        """Restored items whose stashed values would be final run again (module docstring)."""
        covered: set[str] = set()
        for index in sorted(indices, reverse=True):
            outcome = found.get(index)
            if outcome is None:
                return  # an item after these runs: their values are not the last ones
            if outcome.bound.keys() <= covered and outcome.deleted <= covered:
                continue  # the usual case: nothing new bound
            stashed = {n for n, v in outcome.bound.items() if v is STASHED} - lost[index]
            if stashed - covered:
                del found[index]
                self.at_risk.add(index)
                return
            covered |= set(outcome.bound) | set(outcome.deleted)

    # -- while it runs ----------------------------------------------------------------------------
    def record(
        self,
        outcomes: Sequence[ItemOutcome] = (),
        sent: Sequence[tuple[LoadedBatch, bytes]] = (),
    ) -> None:
        """Keep the items that ended (done, or failed for ``--why``); write a batch when due.

        The batches in ``sent`` are kept as the bytes their worker sent them as. The other
        ``outcomes`` (items run in the kernel, tasks that failed as a whole) are pickled here.
        """
        if self.store is None or not self.keys:
            return
        for batch, blob in sent:
            self._keep(list(batch.indices), batch.statuses(), blob)
        rest = [o for o in outcomes if o.status in ("done", "failed")]
        pickled = self._pickle_rest(rest) if rest else None
        if pickled is not None:
            self._keep(list(map(_INDEX, rest)), list(map(_STATUS, rest)), pickled)
        if self.buffered >= FLUSH_ITEMS or self._flush_due():
            self.flush()

    def _flush_due(self) -> bool:
        """Every `FLUSH_SECONDS`, and sooner while the run is young: what waited as long as
        the run had run when it was last written goes now. A cell of a few tasks so writes
        its first batches behind while its last ones run, instead of all of them at its end
        (where the cell waits for the write); later writes come at most twice as often."""
        now = self.clock()
        waited = now - self._last_flush
        return waited >= FLUSH_SECONDS or waited >= (self._last_flush - self._started)

    def _keep(self, indices: list[int], statuses: list[str], blob: bytes) -> None:
        batch = next(self._batch_ids)
        failed: list[int] = []
        if statuses.count("done") != len(statuses):
            failed = [pos for pos, status in enumerate(statuses) if status != "done"]
        for pos in failed:
            if statuses[pos] != "failed":  # not an end: nothing to say about it later
                self.overrides[(batch, pos)] = None
        self.buffer.append((batch, indices, failed, blob))
        self.buffered += len(indices)
        self.kept.append((batch, indices))

    def _pickle_rest(self, outcomes: list[ItemOutcome]) -> bytes | None:
        """Outcomes that did not come as bytes: the done ones pickled (a failed one only
        counts as failed); an item that cannot be pickled is not journaled."""
        kept: list[ItemOutcome | None] = [o if o.status == "done" else None for o in outcomes]
        try:
            return cloudpickle.dumps(kept, protocol=5)
        except Exception:
            pass
        for pos, outcome in enumerate(kept):
            try:
                cloudpickle.dumps(outcome, protocol=5)
            except Exception as exc:
                assert outcome is not None
                self._say_unpicklable(outcome.index, exc)
                kept[pos] = None
        return cloudpickle.dumps(kept, protocol=5)

    def _say_unpicklable(self, index: int, exc: Exception) -> None:
        if not self._unpicklable_said and self.store is not None:
            self._unpicklable_said = True
            self.store.warn(
                f"item {index} cannot be pickled for the journal ({type(exc).__name__}: {exc}); "
                "such items are not journaled and run again next time"
            )

    def forget(self, index: int) -> None:
        """Item ``index`` failed in the ordered part after it ended: not done after all."""
        place = self._place(index)
        if self.store is not None and place is not None:
            self.overrides[place] = None
            self.forgotten.add(index)

    def _place(self, index: int) -> tuple[str, int] | None:
        """Where item ``index`` was last kept: ``(batch, position)`` (a scan from the latest
        batch: the items whose values are final usually come last)."""
        if index not in self.forgotten:
            for batch, indices in reversed(self.kept):
                if index in indices:
                    return batch, indices.index(index)
        return None

    def _all_kept(self) -> bool:
        """Whether every item of the run was kept (and not struck out)."""
        kept: set[int] = set()
        for _, indices in self.kept:
            kept.update(indices)
        return len(kept - self.forgotten) == len(self.items)

    def flush(self, now: bool = False) -> None:
        """Write the kept batches (and overrides) in one transaction: on the writer thread,
        or ``now`` on this one (the caller waits for it anyway: no hand-off to that thread)."""
        self._last_flush = self.clock()
        if self.store is None or not (self.buffer or self.overrides):
            return
        kept, self.buffer, self.buffered = self.buffer, [], 0
        overrides, self.overrides = self.overrides, {}
        names, sources = {self.run_key: self.label}, {self.run_key: self.plan.source}
        envs = {self.env_key: self.env_parts}
        write = (self.store, (self.keys, self.run_key, self.env_key, kept), overrides)
        if now:
            put_kept(*write, names, sources, envs)
        else:
            self.store.behind(put_kept, *write, names, sources, envs)

    # -- after it -------------------------------------------------------------------------------
    def finish(
        self, outcomes: Mapping[int, ItemOutcome], final: Mapping[str, tuple[int, Any]]
    ) -> None:
        """Write what is left with the last values that came back; apply the size cap on the
        writer thread (the cell does not wait for it)."""
        if self.store is None or not self.keys:
            return
        for index in sorted({i for i, _ in final.values()} - self.forgotten):
            outcome = outcomes.get(index)
            if outcome is None or outcome.status != "done":
                continue
            lost = frozenset(n for n, (i, v) in final.items() if i == index and v is STASHED)
            place = self._place(index)
            if place is None:
                continue
            try:
                self.overrides[place] = cloudpickle.dumps((dict(outcome.bound), lost), protocol=5)
            except Exception as exc:
                self._say_unpicklable(index, exc)
                self.forget(index)
        self.store.settle()  # the writes sent behind land first, in their order
        self.flush(now=True)  # the cell ends with everything written
        if self.older and self._all_kept():
            self.store.behind(self.store.drop, self.older)  # --fresh wrote them all again
            self.older = []
        # the size cap, behind the cell too (the next run's writes wait for it)
        self.store.behind(cap_size, self.store, max_size(), self.run_key)

    # -- why an item runs -----------------------------------------------------------------------
    def explain(self, index: int) -> str:
        """Why item ``index`` ran (or that it was restored), in a few words."""
        return journal_why.explain(self, index)

    def explain_all(self, indices: Sequence[int]) -> dict[int, str]:
        """`explain` for many items with one read of the journal."""
        return journal_why.explain_all(self, indices)
