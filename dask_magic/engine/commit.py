"""The in-order commit: each item's share of the ordered part runs in the kernel, in item order.

Items end in any order on the cluster; the serial loop saw them in input order. An
`OrderedCommit` holds each ended item until every earlier item of its pass has ended, then
*commits* it: its operations in the order the item made them (recorded additions, ordered
steps run with the item's values, the output it printed before each step), then the rest of
its output. A failed item commits only its output (its failure is reported with it). An
ordered step that raises fails its item from there on; the items after it go on.

This is the only place where the ordered part touches the notebook's namespace, and it runs
on the kernel's main thread (plots and ``display`` land in the running cell's output).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from typing import Any

from dask_magic import contract as C

from .errorinfo import error_info
from .loaded_batch import AppendColumn, LoadedBatch
from .replay import Appends, apply_op
from .results import ErrorInfo, ItemOutcome
from .worker import not_assigned_here, unbound_name


class ContinueItem(Exception):
    """``continue`` of the parallel loop, raised by an ordered step: the item's part ends."""


class OrderedCommit:
    """Commit the items of one pass in item order as they end (see the module docstring)."""

    def __init__(
        self,
        plan: Any,
        ns: MutableMapping[str, Any],
        order: Sequence[int],
        on_failure: Callable[[int, ErrorInfo], None],
        *,
        keep_ops: bool = True,
        items: Sequence[Any] = (),
        before_output: Callable[[], None] | None = None,
    ) -> None:
        self.plan = plan
        self.ns = ns
        self.order = list(order)
        self.on_failure = on_failure
        self.keep_ops = keep_ops  # a retry may replay them; otherwise they are dropped once used
        self.codes = plan.step_codes() if plan is not None else []
        self.items = items
        self.before_output = before_output  # a text progress line steps aside first
        # a loop target that is notebook state (``for ax, f in zip(axes.flat, files)``) is
        # bound here from the kernel's own item: the worker only has a copy of it
        kernel_targets = (
            set(plan.target_names) & set(plan.kernel_names) if plan is not None else set()
        )
        self.bind_target = _target_binder(plan) if kernel_targets else None
        self.next = 0
        #: items that ended, not yet committed: (outcome, quiet), or the batch holding it
        self.ended: dict[int, tuple[ItemOutcome, bool] | LoadedBatch] = {}
        self.batches: list[LoadedBatch] = []  # offered this pass (their ops go at the end)
        #: whole batches of plain items waiting for their turn, by their first index (with
        #: their lowest and highest index)
        self.waiting: dict[int, tuple[LoadedBatch, int, int]] = {}
        self.busy = 0.0  # seconds the kernel spent in the ordered part
        self.step_seconds = [0.0] * len(self.codes)
        #: names of the items' own values put into the namespace, with what was there before
        self.injected: dict[str, Any] = {}
        self.missing: set[str] = set()  # the running step's names this item did not assign

    def offer(self, outcomes: Iterable[ItemOutcome], quiet: bool = False) -> None:
        """Items that ended; ``quiet`` ones replay without printing (already printed once)."""
        for outcome in outcomes:
            if self.waiting:
                self._spill_waiting(outcome.index, outcome.index)
            self.ended[outcome.index] = (outcome, quiet)
        self._advance()

    def offer_batch(self, batch: LoadedBatch) -> None:
        """A task's items; its plain ones are read from its columns, no `ItemOutcome` each.
        A batch whose items are all done and silent waits as itself for its turn, and is
        committed in one go from its columns (usually one ``extend``)."""
        self.batches.append(batch)
        indices = batch.indices
        if indices:
            low, high = min(indices), max(indices)
            if self.waiting:
                self._spill_waiting(low, high)
            if self._whole(batch, low):
                self.waiting[indices[0]] = (batch, low, high)
                self._advance()
                return
        self._spill(batch)
        self._advance()

    def _spill(self, batch: LoadedBatch) -> None:
        """``batch``'s items become entries of `ended`, one per item."""
        ended = self.ended
        for outcome in batch.unusual.values():
            ended[outcome.index] = (outcome, False)
        ended.update(dict.fromkeys(batch.plain_indices(), batch))

    def _whole(self, batch: LoadedBatch, low: int) -> bool:
        """Whether ``batch`` can be committed as one: no ordered part, every item done and
        silent, none committed yet (the order is ascending) or ended in another task."""
        return (
            self._plain_ok()
            and all(_is_plain(outcome) for outcome in batch.unusual.values())
            and self.next < len(self.order)
            and low >= self.order[self.next]
            and self.ended.keys().isdisjoint(batch.indices)
        )

    def _spill_waiting(self, low: int, high: int) -> None:
        """Waiting batches that hold an index in ``low..high`` become per-item entries, so
        that a later outcome of one of their items replaces it, as in `ended`."""
        for first, (batch, lowest, highest) in list(self.waiting.items()):
            if lowest <= high and low <= highest:
                del self.waiting[first]
                self._spill(batch)

    def _take_waiting(self) -> bool:
        """Commit the waiting batch that comes next, if one does and is whole in the order."""
        found = self.waiting.pop(self.order[self.next], None)
        if found is None:
            return False
        batch = found[0]
        start, n = self.next, len(batch.indices)
        if self.order[start : start + n] != batch.indices:  # not this pass's order: per item
            self._spill(batch)
            return False
        self.next += n
        self._commit_plain(batch.indices, batch.ops or itertools.repeat((), n))
        if not self.keep_ops:
            for outcome in batch.unusual.values():
                outcome.ops = ()
        return True

    def flush(self) -> None:
        """Commit whatever has ended, skipping items that never did (the pass is over)."""
        for batch, _, _ in self.waiting.values():
            self._spill(batch)
        self.waiting = {}
        while self.next < len(self.order):
            index = self.order[self.next]
            entry = self.ended.pop(index, None)
            self.next += 1
            if entry is not None:
                self._commit(*_made(index, entry))
        if not self.keep_ops:  # committed, and nothing replays them: let them go
            for batch in self.batches:
                batch.drop_ops()
        self.batches = []

    def late(self) -> list[ItemOutcome]:
        """After `flush`: items that ended again after their first outcome was committed
        (retried while the pass ran), in item order; they still need their commit."""
        late = sorted(self.ended)
        return [_made(index, self.ended.pop(index))[0] for index in late]

    def _plain_ok(self) -> bool:
        return not self.codes and self.bind_target is None

    def _advance(self) -> None:
        # items that need nothing but their recorded operations (no ordered part, no output)
        # are committed together: no per-item bookkeeping, appends to one list as one extend
        plain_ok = self._plain_ok()
        plain: list[int] = []
        plain_ops: list[Sequence[tuple]] = []
        order, ended, end = self.order, self.ended, len(self.order)
        while self.next < end:
            if order[self.next] not in ended:
                if not self.waiting:
                    break
                if plain:
                    self._commit_plain(plain, plain_ops)
                    plain, plain_ops = [], []
                if not self._take_waiting():
                    if order[self.next] not in ended:
                        break
                continue
            index = order[self.next]
            entry = ended.pop(index)
            self.next += 1
            if plain_ok and type(entry) is LoadedBatch:
                plain.append(index)
                plain_ops.append(entry.ops_at(entry.position(index)))
                continue
            outcome, quiet = _made(index, entry)
            if plain_ok and not quiet and _is_plain(outcome):
                plain.append(index)
                plain_ops.append(outcome.ops)
                if not self.keep_ops:
                    outcome.ops = ()
                continue
            if plain:
                self._commit_plain(plain, plain_ops)
                plain, plain_ops = [], []
            self._commit(outcome, quiet)
        if plain:
            self._commit_plain(plain, plain_ops)

    def _commit_plain(self, indices: list[int], ops: Iterable[Sequence[tuple]]) -> None:
        """Done, silent items of a loop without an ordered part, in item order."""
        start = time.perf_counter()
        appends = Appends(self.ns)
        if isinstance(ops, AppendColumn) and appends.take_column(ops):
            self.busy += time.perf_counter() - start
            return
        take = appends.take
        try:
            for index, item_ops in zip(indices, ops, strict=False):  # ops may be a repeat()
                for op in item_ops:
                    if take(op):
                        continue
                    appends.flush()
                    try:
                        apply_op(self.ns, op)
                    except Exception as exc:  # the item fails here, as the plain loop would have
                        self._fail(None, index, exc)
                        break
        finally:
            appends.flush()
            self.busy += time.perf_counter() - start

    # -- one item ----------------------------------------------------------------------------
    def _commit(self, outcome: ItemOutcome, quiet: bool) -> None:
        start = time.perf_counter()
        try:
            if outcome.status == "done" and outcome.ops:
                if quiet:  # replayed for its state: what it printed is in the output already
                    with (
                        contextlib.redirect_stdout(io.StringIO()),
                        contextlib.redirect_stderr(io.StringIO()),
                    ):
                        self._apply(outcome, quiet)
                else:
                    self._apply(outcome, quiet)
            if not quiet and outcome.status != "cancelled":
                self._write(outcome.stdout, outcome.stderr, outcome.warnings)
        finally:
            self.busy += time.perf_counter() - start
        if not self.keep_ops and outcome.status == "done":
            outcome.ops = ()

    def _apply(self, outcome: ItemOutcome, quiet: bool) -> None:
        ns = self.ns
        if self.bind_target is not None:
            ns[C.ITEM] = self.items[outcome.index]
            try:
                exec(self.bind_target, ns)  # type: ignore[arg-type]  # user_ns: a dict
            finally:
                ns.pop(C.ITEM, None)
        for op in outcome.ops:
            kind = op[0]
            try:
                if kind == C.OP_OUT:
                    if not quiet:
                        self._write(op[1], op[2], ())
                elif kind == C.OP_RUN:
                    if self.before_output is not None and not quiet:
                        self.before_output()  # the step may print
                    self._run_step(op[1], op[2], op[3])
                else:
                    apply_op(ns, op)
            except ContinueItem:
                return
            except Exception as exc:  # the item fails here, as the plain loop would have
                self._fail(outcome, outcome.index, exc)
                return

    def _write(self, stdout: str, stderr: str, warnings: Sequence[str]) -> None:
        if (stdout or stderr or warnings) and self.before_output is not None:
            self.before_output()
        _write(stdout, stderr, warnings)

    def _run_step(self, step: int, captured: dict[str, Any] | None, hoisted: tuple) -> None:
        ns = self.ns
        spec = self.plan.steps[step]
        if captured is None:
            captured = {}
        # a name this item did not assign must not be read from an earlier item: take it
        # out while the step runs, so that a read fails at the user's line
        self.missing = {n for n in spec.needs if n not in captured}
        hidden = {n: ns.pop(n) for n in self.missing if n in ns}
        for name, value in captured.items():
            if name not in self.injected:
                self.injected[name] = ns.get(name, _ABSENT)
            ns[name] = value
        names = [f"{C.HOISTED_PREFIX}{i}" for i in range(len(hoisted))]
        ns.update(zip(names, hoisted, strict=True))
        ns[C.CONTINUE] = ContinueItem
        start = time.perf_counter()
        try:
            exec(self.codes[step], ns)  # type: ignore[arg-type]  # user_ns: a dict
        finally:
            self.step_seconds[step] += time.perf_counter() - start
            for name in names:
                ns.pop(name, None)
            ns.pop(C.CONTINUE, None)
            ns.update(hidden)

    def _fail(self, outcome: ItemOutcome | None, index: int, exc: Exception) -> None:
        """Item ``index`` fails in the kernel; ``outcome`` is it, where it was made."""
        error = error_info(exc)
        if isinstance(exc, NameError) and unbound_name(exc) in self.missing:
            error = not_assigned_here(error, unbound_name(exc))  # type: ignore[arg-type]
        if outcome is not None:
            outcome.bound = {}
            outcome.ops = ()
        self.on_failure(index, error)  # the run counts it as failed from now on

    # -- what the run reports --------------------------------------------------------------
    def restore_injected(self, final_names: Iterable[str]) -> None:
        """Names only the ordered part saw (bound by no item that is done) get their old value."""
        final = set(final_names)
        for name, before in self.injected.items():
            if name in final:
                continue
            if before is _ABSENT:
                self.ns.pop(name, None)
            else:
                self.ns[name] = before

    def bounding_lines(self, elapsed: float) -> list[int] | None:
        """The ordered part's busiest lines, when it (not the workers) bounded the run."""
        if not self.codes or elapsed <= 0 or self.busy < 0.5 * elapsed or self.busy < 0.2:
            return None
        ranked = sorted(range(len(self.codes)), key=lambda k: -self.step_seconds[k])
        return sorted(self.plan.steps[k].lineno for k in ranked[:3] if self.step_seconds[k] > 0)


_ABSENT = object()


def _made(index: int, entry: tuple[ItemOutcome, bool] | LoadedBatch) -> tuple[ItemOutcome, bool]:
    """An entry of `OrderedCommit.ended` as ``(outcome, quiet)``."""
    if isinstance(entry, LoadedBatch):
        return entry[entry.position(index)], False
    return entry


def _is_plain(outcome: ItemOutcome) -> bool:
    """Done, with nothing to print: its recorded operations are all there is to commit."""
    return (
        outcome.status == "done"
        and not outcome.stdout
        and not outcome.stderr
        and not outcome.warnings
    )


def _target_binder(plan: Any) -> Any:
    import ast

    assign = ast.Assign([plan.target], ast.Name(C.ITEM, ast.Load()))
    module = ast.fix_missing_locations(
        ast.Module([ast.copy_location(assign, plan.target)], type_ignores=[])
    )
    return compile(module, plan.filename, "exec")


def _write(stdout: str, stderr: str, warnings: Sequence[str]) -> None:
    if stdout:
        sys.stdout.write(stdout)
    if stderr:
        sys.stderr.write(stderr)
    for warning in warnings:
        sys.stderr.write(warning + "\n")
    if stdout:
        sys.stdout.flush()
