"""What runs on a worker: one batch of items through the loop body, each captured on its own.

This module is imported inside worker processes (and in the kernel for ``--serial``). It uses
only the stdlib and cloudpickle, so importing it on a worker is cheap, and it never imports
dask or distributed: the worker's address is passed in by whoever calls `run_batch`.

Per item it records
* the accumulator operations the rewritten body sent to its `Recorder` (replayed in the kernel
  in item order, so results equal the serial loop's),
* the names the item left bound; the values stay in a per-process *stash* (`engine.stash`)
  unless this is the run's last item, because only the last binding of each name is ever
  needed in the kernel and a DataFrame per item must not travel back for nothing,
* its stdout, stderr and warnings (thread-aware, so threaded workers do not mix items),
* the error as structured frames, and the exception itself if it survives pickling.

The outcomes travel back as columns (`engine.columns`).
"""

from __future__ import annotations

import builtins
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

#: Generated code reaches the runtime only through names that cannot appear in user code
#: (pytest's ``@py_assert`` trick): the item, the recorder and ``locals``.
ITEM_NAME = C.ITEM
RECORDER_NAME = C.RECORDER
LOCALS_NAME = C.LOCALS


class Recorder:
    """The ``@dm_rec`` object the rewritten body reports to.

    Operations are tuples so that they pickle small:
    ``("call", root, path, method, args, kwargs)``, ``("set", root, path, value)`` and
    ``("aug", root, path, op, value)`` (``op`` an `ast.operator` name such as ``"Add"``).
    ``path`` is a tuple of ``("item", key)`` /
    ``("attr", name)`` steps from the accumulator ``root`` to the object acted on; keys are
    evaluated on the worker, exactly where the serial loop would have evaluated them.
    """

    __slots__ = ("capture", "kernel", "locals", "marked", "needs", "ops")

    def __init__(
        self, needs: tuple[tuple[str, ...], ...] = (), capture: _ItemCapture | None = None
    ) -> None:
        self.ops: list[tuple] = []
        self.marked: set[str] = set()
        self.locals: dict[str, Any] | None = {}
        self.needs = needs  # per ordered step: the item's names it reads in the kernel
        self.capture = capture
        self.kernel: frozenset[str] = frozenset()

    def call(self, root: str, path: tuple, method: str, args: tuple, kwargs: dict) -> None:
        if method in ("extend", "update"):
            # a generator (``out.extend(x * 2 for x in xs)``) cannot travel: its values can
            args = tuple(a if hasattr(a, "__len__") else list(a) for a in args)
        self.ops.append((C.OP_CALL, root, path, method, args, kwargs))

    def run(self, step: int, frame_locals: dict[str, Any] | None, hoisted: tuple) -> None:
        """Ordered step ``step`` runs here in the serial loop: the kernel runs it, in item
        order, with the item's names it reads and the values computed ahead (``hoisted``)."""
        captured = None
        if frame_locals is not None:
            captured = {n: frame_locals[n] for n in self.needs[step] if n in frame_locals}
        capture = self.capture
        if capture is not None and (capture.stdout is not None or capture.stderr is not None):
            # what the item printed so far comes out before the step, as in the serial loop
            out = capture.stdout.getvalue() if capture.stdout is not None else ""
            err = capture.stderr.getvalue() if capture.stderr is not None else ""
            capture.stdout = capture.stderr = None
            self.ops.append((C.OP_OUT, out, err))
        self.ops.append((C.OP_RUN, step, captured, hoisted))

    def set(self, value: Any, root: str, path: tuple) -> None:
        # the value comes first: Python evaluates it before the target's container and key
        self.ops.append((C.OP_SET, root, path, value))

    def aug(self, root: str, path: tuple, op: str, value: Any) -> None:
        self.ops.append((C.OP_AUG, root, path, op, value))

    @staticmethod
    def slice(lower: Any, upper: Any, step: Any) -> slice:
        """``a[1:3] = v`` records the key ``slice(1, 3)`` (a name ``slice`` may be shadowed)."""
        return builtins.slice(lower, upper, step)

    def mark(self, name: str) -> None:
        """``name`` was touched in a way that may unbind it (``del``, ``except ... as``)."""
        self.marked.add(name)

    def end(self, frame_locals: dict[str, Any]) -> None:
        for name in self.kernel:  # the kernel holds their values (a copy here would mislead)
            frame_locals.pop(name, None)
        # `locals()` of the generated function: a dict of its own, so the two runtime names
        # can be popped from it (no comprehension per item; the rewrite adds no other locals)
        frame_locals.pop(ITEM_NAME, None)
        frame_locals.pop(RECORDER_NAME, None)
        self.locals = frame_locals


# -- running a batch: 10,000 tiny items pay the per-item cost 10,000 times, so one recorder and
# one capture serve the whole batch, output buffers appear on the first write, and outcomes
# travel as columns (`engine.columns`), not as one pickled dataclass per item.


class _ItemRunner:
    """Runs one item of a batch through the body, with its retries, fresh each time."""

    __slots__ = ("body", "capture", "loop", "may_depend", "recorder", "retries", "seed", "watch")

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
        return unpack(*columns.fields())
    return dumps(columns)


def _watch(bundle: dict[str, Any], body: Any, big_env: dict[str, Any], batch: list) -> BatchWatch:
    """An in-place change of a notebook object or an item stays on this worker: watch for it.

    Stores mirrored into the kernel (``svc.C = C``) change the worker's copy on purpose.
    """
    mirrored = set(bundle.get("mirrored", ()))
    names = [n for n in [*bundle["env"], *big_env] if n not in mirrored]
    return BatchWatch(body.__globals__, names, batch)
