"""What runs on a worker: one batch of items through the loop body, each captured on its own.

This module is imported inside worker processes (and in the kernel for ``--serial``). It uses
only the stdlib and cloudpickle, so importing it on a worker is cheap, and it never imports
dask or distributed: the worker's address is passed in by whoever calls `run_batch`.

Per item it records
* the accumulator operations the rewritten body sent to its `Recorder` (`engine.recorder`),
  replayed in the kernel in item order, so results equal the serial loop's,
* the names the item left bound; the values stay in a per-process *stash* (`engine.stash`)
  unless this is the run's last item, because only the last binding of each name is ever
  needed in the kernel and a DataFrame per item must not travel back for nothing,
* its stdout, stderr and warnings (thread-aware, so threaded workers do not mix items),
* the error as structured frames, and the exception itself if it survives pickling.

The outcomes travel back as columns (`engine.columns`).
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from dask_magic import contract as C

from . import timeouts
from .bundles import body_for, load_bundle, make_body, register_bundle
from .capture import _CAPTURE, _install_capture, _ItemCapture
from .columns import Columns, dumps, picklable_only, unpack
from .errorinfo import error_info
from .fingerprint import BatchWatch
from .recorder import Recorder
from .results import ErrorInfo, ItemOutcome
from .seeding import seed_item
from .stash import HeldBindings, drop_stash, fetch_stash

__all__ = [
    "Recorder",
    "drop_stash",
    "fetch_stash",
    "load_bundle",
    "make_body",
    "register_bundle",
    "run_batch",
]

# -- running a batch: 10,000 tiny items pay the per-item cost 10,000 times, so one recorder and
# one capture serve the whole batch, output buffers appear on the first write, and outcomes
# travel as columns (`engine.columns`), not as one pickled dataclass per item.


class _ItemRunner:
    """Runs one item of a batch through the body, with its retries, fresh each time."""

    __slots__ = (
        "body",
        "capture",
        "loop",
        "may_depend",
        "plain",
        "recorder",
        "retries",
        "seed",
        "watch",
    )

    def __init__(self, body: Any, loop: bool, ordered: dict[str, Any], retries: int, seed: Any):
        self.body = body
        self.loop = loop
        self.capture = _ItemCapture()
        self.recorder = Recorder(ordered.get("needs", ()), self.capture)
        self.recorder.kernel = ordered.get("kernel", frozenset())
        self.may_depend = ordered.get("may_depend", frozenset())
        self.retries = retries
        self.seed = seed
        self.watch = timeouts.this_thread()  # None unless the run has a --timeout
        # each item's attempt, once, with nothing around it: `_run_plain` runs the batch
        self.plain = loop and not retries and seed is None and self.watch is None

    def run(self, index: int, item: Any) -> tuple[Any, ErrorInfo | None, float]:
        """The item's return value, its error (or None) and how long its last attempt took."""
        attempts_left = self.retries
        while True:
            value, error, duration = self._attempt(index, item)
            if error is None or attempts_left <= 0:
                return value, error, duration
            attempts_left -= 1  # flaky work: run it again, fresh

    def _attempt(self, index: int, item: Any) -> tuple[Any, ErrorInfo | None, float]:
        capture, recorder = self.capture, self.recorder
        capture.stdout = capture.stderr = capture.warnings = None
        recorder.ops = []
        if recorder.marked:
            recorder.marked = set()
        recorder.locals = None
        value = error = None
        if self.seed is not None:  # --seed: the item's draws depend on (seed, index) only
            seed_item(self.seed, index)
        if self.watch is not None:
            self.watch.begin(index)
        start = time.perf_counter()
        try:
            if self.loop:
                self.body(item, recorder)
            else:
                value = self.body(item)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):  # the user stopping --serial
                raise
            error = self._describe(exc)
        return value, error, time.perf_counter() - start

    def _describe(self, exc: BaseException) -> ErrorInfo:
        error = error_info(exc)
        if isinstance(exc, NameError) and unbound_name(exc) in self.may_depend:
            error = not_assigned_here(error, unbound_name(exc))  # type: ignore[arg-type]
        return error


def _run_columns(
    body: Any,
    kind: str,
    batch: list[tuple[int, Any]],
    last_index: int,
    stash_key: str | None,
    worker: str | None,
    retries: int,
    budget: float | None = None,
    ordered: dict[str, Any] | None = None,
    seed: int | None = None,
) -> Columns:
    """Run the items of ``batch``, each with its own capture, into `Columns`.

    With a ``budget`` (seconds), no item is started once the batch has run that long: the
    items not run are the batch's tail, for the kernel to send again.
    """
    columns = Columns(worker, kind == "loop")
    runner = _ItemRunner(body, kind == "loop", ordered or {}, retries, seed)
    held = HeldBindings()
    clock = time.perf_counter
    deadline = None if budget is None else clock() + budget
    _CAPTURE.item = runner.capture
    try:
        if runner.plain:
            _run_plain(columns, runner, held, batch, last_index, stash_key, deadline)
        else:
            for pos, (index, item) in enumerate(batch):
                if deadline is not None and pos and clock() >= deadline:
                    break
                value, error, duration = runner.run(index, item)  # the item's execution
                if error is not None:
                    _record_failure(columns, runner, index, duration, error)
                else:
                    inline = stash_key is None or index == last_index  # its values travel
                    _record_success(columns, runner.recorder, held, index, duration, value, inline)
                _record_output(columns, runner.capture, pos)
    finally:
        _CAPTURE.item = None
    held.flush(stash_key)
    return columns


def _run_plain(
    columns: Columns,
    runner: _ItemRunner,
    held: HeldBindings,
    batch: list[tuple[int, Any]],
    last_index: int,
    stash_key: str | None,
    deadline: float | None,
) -> None:
    """`_run_columns`'s loop for a loop body run once per item (no retries, ``--seed`` or
    ``--timeout``), with `_ItemRunner._attempt` written out: a tiny item's whole cost is
    this loop's bookkeeping, so it makes no call per item that it can avoid."""
    body, recorder, capture = runner.body, runner.recorder, runner.capture
    clock = time.perf_counter
    add_index, add_duration = columns.indices.append, columns.durations.append
    add_ops, add_names = columns.ops.append, columns.names.append  # type: ignore[union-attr]
    for pos, (index, item) in enumerate(batch):
        recorder.ops = []
        if recorder.marked:
            recorder.marked = set()
        recorder.locals = None
        start = clock()
        if deadline is not None and pos and start >= deadline:
            break
        try:
            body(item, recorder)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):  # the user stopping --serial
                raise
            _record_failure(columns, runner, index, clock() - start, runner._describe(exc))
        else:  # `_record_success` written out for the usual item: it left its names bound
            duration = clock() - start
            local_names = recorder.locals
            if not local_names or recorder.marked or stash_key is None or index == last_index:
                inline = stash_key is None or index == last_index  # its values travel
                _record_success(columns, recorder, held, index, duration, None, inline)
            else:
                add_index(index)
                add_duration(duration)
                add_ops(tuple(recorder.ops))
                if local_names.keys() == held.held_keys:  # `held.hold` for the same names
                    held.held_index, held.held_values = index, local_names
                    add_names(held.held_names)
                else:
                    add_names(held.hold(index, local_names))
        if capture.stdout is not None or capture.stderr is not None or capture.warnings is not None:
            _record_output(columns, capture, pos)
            capture.stdout = capture.stderr = capture.warnings = None  # the next item's own


def _record_failure(
    columns: Columns, runner: _ItemRunner, index: int, duration: float, error: ErrorInfo
) -> None:
    pos = columns.add(index, duration, [], None)
    columns.names.append(None)
    fields: dict[str, Any] = {"status": "failed", "error": error}
    printed = [op for op in runner.recorder.ops if op[0] == C.OP_OUT] if runner.loop else []
    if printed:  # what the failed item printed before its ordered steps, too
        fields["stdout"] = "".join(op[1] for op in printed)
        fields["stderr"] = "".join(op[2] for op in printed)
    columns.extras[pos] = fields


def _record_success(
    columns: Columns,
    recorder: Recorder,
    held: HeldBindings,
    index: int,
    duration: float,
    value: Any,
    inline: bool,
) -> None:
    """A done item's contribution, and the names it left bound (stashed or ``inline``)."""
    pos = columns.add(index, duration, recorder.ops, value)
    local_names = recorder.locals
    if not local_names:
        columns.names.append(None)
    elif inline:
        columns.names.append(None)
        columns.inline[pos] = picklable_only(local_names)
    else:  # the value stays here; only the names travel (one tuple per shape)
        columns.names.append(held.hold(index, local_names))
    if recorder.marked:
        deleted = frozenset(n for n in recorder.marked if n not in (local_names or ()))
        if deleted:
            columns.extras[pos] = {"deleted": deleted}


def _record_output(columns: Columns, capture: _ItemCapture, pos: int) -> None:
    """What the item printed and warned, after what its failure recorded."""
    if capture.stdout is None and capture.stderr is None and capture.warnings is None:
        return
    fields = columns.extras.setdefault(pos, {})
    if capture.stdout is not None:
        fields["stdout"] = fields.get("stdout", "") + capture.stdout.getvalue()
    if capture.stderr is not None:
        fields["stderr"] = fields.get("stderr", "") + capture.stderr.getvalue()
    if capture.warnings is not None:
        fields["warnings"] = tuple(capture.warnings)


def unbound_name(exc: NameError) -> str | None:
    """The name of a NameError; ``UnboundLocalError.name`` is None before Python 3.12."""
    if getattr(exc, "name", None):
        return exc.name
    found = re.search(r"variable '([^']+)'", str(exc))
    return found.group(1) if found else None


def not_assigned_here(error: ErrorInfo, name: str) -> ErrorInfo:
    """The may-depend case: the serial loop would have read the previous item's value."""
    return dataclasses.replace(
        error,
        hint=f"This item did not assign `{name}` before reading it; in the plain loop its value "
        f"would be the previous item's. Give `{name}` a value before the `try` (e.g. "
        f"`{name} = None`), or read it only where this item assigned it.",
    )


_ORDERED_KEYS = ("needs", "may_depend", "kernel")  # what the bundle tells the recorder


def run_batch(
    token: str,
    blob: bytes,
    big_env: dict[str, Any],
    batch: list[tuple[int, Any]],
    last_index: int,
    stash_key: str | None,
    worker: str | None = None,
    retries: int = 0,
    serialize: bool = True,
    budget: float | None = None,
) -> bytes | list[ItemOutcome]:
    """Run ``batch`` (``(index, item)`` pairs) through the bundled body, one outcome per item.

    Parameters
    ----------
    token, blob:
        Identity and cloudpickled bytes of the bundle ``{"kind", "code"|"fn", "env"}``
        (and ``"seed"`` for ``--seed``: each item's random states are seeded from it).
    big_env:
        Names the body reads that were scattered once (dask resolved them to their values).
    last_index:
        The run's largest item index: its bound values travel with the outcomes.
    stash_key:
        Where other items' bound values are kept in this process; ``None`` returns them inline
        (``--serial``, where nothing travels).
    retries:
        Run a failing item up to this many more times (flaky work), fresh each time.
    serialize:
        Return the outcomes as one cloudpickled blob (``loads`` gives the list) or the list.
    budget:
        Start no item after this many seconds (the kernel sends the unrun tail again).
    """
    _install_capture()
    body, kind = body_for(token, blob, big_env)
    bundle = load_bundle(token, blob)
    ordered: dict[str, Any] = {k: bundle[k] for k in _ORDERED_KEYS if k in bundle}
    # --serial (stash_key None) changes the notebook's own objects, as the serial loop does
    watch = (
        _watch(bundle, body, big_env, batch) if kind == "loop" and stash_key is not None else None
    )
    seed = bundle.get("seed")
    columns = _run_columns(
        body, kind, batch, last_index, stash_key, worker, retries, budget, ordered, seed
    )
    if watch is not None:
        watch.record(columns.extras, len(columns.indices))
    if not serialize:
        return list(unpack(*columns.fields()))
    return dumps(columns)


def _watch(bundle: dict[str, Any], body: Any, big_env: dict[str, Any], batch: list) -> BatchWatch:
    """An in-place change of a notebook object or an item stays on this worker: watch for it.

    Stores mirrored into the kernel (``svc.C = C``) change the worker's copy on purpose.
    """
    mirrored = set(bundle.get("mirrored", ()))
    names = [n for n in [*bundle["env"], *big_env] if n not in mirrored]
    return BatchWatch(body.__globals__, names, batch)
