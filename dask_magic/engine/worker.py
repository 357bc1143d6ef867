"""What runs on a worker: one batch of items through the loop body, each captured on its own.

This module is imported inside worker processes (and in the kernel for ``--serial``). It uses
only the stdlib and cloudpickle, so importing it on a worker is cheap, and it never imports
dask or distributed: the worker's address is passed in by whoever calls `run_batch`.

Per item it records
* the accumulator operations the rewritten body sent to its `Recorder` (replayed in the kernel
  in item order, so results equal the serial loop's),
* the names the item left bound; the values stay in a per-process *stash* unless this is the
  run's last item, because only the last binding of each name is ever needed in the kernel and
  a DataFrame per item must not travel back for nothing,
* its stdout, stderr and warnings (thread-aware, so threaded workers do not mix items),
* the error as structured frames, and the exception itself if it survives pickling.
"""

from __future__ import annotations

import builtins
import dataclasses
import itertools
import re
import threading
import time
import types
from collections import OrderedDict
from typing import Any

import cloudpickle

from dask_magic import contract as C

from . import timeouts
from .capture import _CAPTURE, _install_capture, _ItemCapture
from .errorinfo import _safe_str, _type_name, error_info
from .fingerprint import BatchWatch
from .results import STASHED, ErrorInfo, ItemOutcome
from .seeding import seed_item

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
        self.locals: dict[str, Any] = {}
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


# -- the bundle: the body and the small names it reads, unpickled once per process -----------


def make_body(code: types.CodeType, env: dict[str, Any]) -> types.FunctionType:
    """Bind the compiled body to a namespace holding the names it reads."""
    namespace = dict(env)
    namespace["__builtins__"] = builtins
    namespace[LOCALS_NAME] = builtins.locals
    return types.FunctionType(code, namespace, code.co_name)


_BUNDLES: OrderedDict[str, Any] = OrderedDict()
_BUNDLES_LOCK = threading.Lock()
_BUNDLES_KEPT = 8


def load_bundle(token: str, blob: bytes) -> dict[str, Any]:
    """Unpickle a bundle once per process (a batch of 10,000 tiny items must not pay it)."""
    with _BUNDLES_LOCK:
        bundle = _BUNDLES.get(token)
        if bundle is not None:
            _BUNDLES.move_to_end(token)
            return bundle
    bundle = cloudpickle.loads(blob)
    with _BUNDLES_LOCK:
        _BUNDLES[token] = bundle
        while len(_BUNDLES) > _BUNDLES_KEPT:
            _BUNDLES.popitem(last=False)
    return bundle


def register_bundle(token: str, bundle: dict[str, Any]) -> None:
    """Put an unpickled bundle in this process's cache (``--serial`` runs in the kernel)."""
    with _BUNDLES_LOCK:
        _BUNDLES[token] = bundle
        while len(_BUNDLES) > _BUNDLES_KEPT:
            _BUNDLES.popitem(last=False)


# -- the stash: last bindings kept where they were made -------------------------------------

_STASH: OrderedDict[str, dict[str, tuple[int, Any]]] = OrderedDict()
_STASH_LOCK = threading.Lock()
_STASH_RUNS_KEPT = 16  # bounded even if a kernel dies before it clears its runs


def _stash(key: str, index: int, values: dict[str, Any]) -> None:
    _stash_many(key, dict.fromkeys(values, index), values)


def _stash_many(key: str, indices: dict[str, int], values: dict[str, Any]) -> None:
    """Keep ``values[name]`` (bound by item ``indices[name]``) unless a later item's is kept."""
    with _STASH_LOCK:
        run = _STASH.get(key)
        if run is None:
            run = _STASH[key] = {}
            while len(_STASH) > _STASH_RUNS_KEPT:
                _STASH.popitem(last=False)
        for name, index in indices.items():
            if name not in run or run[name][0] <= index:
                run[name] = (index, values[name])


def fetch_stash(key: str, wanted: dict[str, int]) -> dict[str, Any]:
    """Values of ``wanted`` names whose stashed index matches; drops this run's stash."""
    with _STASH_LOCK:
        run = _STASH.pop(key, {})
    found = {}
    for name, index in wanted.items():
        stashed_index, value = run.get(name, (None, None))
        if stashed_index != index:
            continue
        try:
            cloudpickle.dumps(value)
        except Exception:  # e.g. a closed file from `with open(f) as fh`: leave the name alone
            continue
        found[name] = value
    return found


def drop_stash(key: str) -> None:
    with _STASH_LOCK:
        _STASH.pop(key, None)


# -- running a batch --------------------------------------------------------------------------
#
# The per-item cost is what `%%parallel_for` over 10,000 tiny items pays 10,000 times, so the
# loop below allocates nothing an ordinary item does not need: one recorder and one capture
# object serve the whole batch, output buffers appear on the first write, and outcomes travel
# as columns (`_Columns`) instead of one pickled dataclass per item.


class _Columns:
    """A batch's outcomes, field by field: what a task sends back to the kernel.

    Most items of a batch look alike (done, silent, the same names bound), so the common
    fields are lists and everything unusual (a failure, output, warnings, names deleted) is a
    sparse ``{position: {field: value}}``. Pickled, it is rebuilt as the list of `ItemOutcome`
    *while it is loaded* (`__reduce__` names `_unpack`): ``cloudpickle.loads(blob)`` in the
    kernel is the whole decoding step, and plain lists of tuples load at C speed.
    """

    __slots__ = ("durations", "extras", "indices", "inline", "names", "ops", "values", "worker")

    def __init__(self, worker: str | None, loop: bool) -> None:
        self.worker = worker
        self.indices: list[int] = []
        self.durations: list[float] = []
        self.ops: list[list[tuple]] | None = [] if loop else None
        self.values: list[Any] | None = None if loop else []
        self.names: list[tuple[str, ...] | None] = []  # names whose values stayed here
        self.inline: dict[int, dict[str, Any]] = {}  # position -> bound values that travel
        self.extras: dict[int, dict[str, Any]] = {}  # position -> unusual ItemOutcome fields

    def fields(self) -> tuple:
        return (
            self.worker,
            self.indices,
            self.durations,
            self.ops,
            self.values,
            self.names,
            self.inline,
            self.extras,
        )

    def __reduce__(self) -> tuple:
        return (_unpack, self.fields())


_EMPTY_NAMES: frozenset[str] = frozenset()
#: `ItemOutcome`'s fields in the order `_unpack` passes them positionally (~40 % cheaper than
#: keywords, which counts at 10,000 items); checked against the dataclass at import.
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


def _unpack(worker, indices, durations, ops, values, names, inline, extras) -> list[ItemOutcome]:
    """`_Columns` back to one `ItemOutcome` per item (runs in the kernel, inside ``loads``)."""
    n = len(indices)
    ops = ops if ops is not None else [[] for _ in range(n)]
    values = values if values is not None else itertools.repeat(None, n)
    stashed, fromkeys = STASHED, dict.fromkeys
    if _BY_POSITION:
        make, empty = ItemOutcome, _EMPTY_NAMES
        outcomes = [
            make(
                index,
                "done",
                item_ops,
                fromkeys(bound, stashed) if bound else {},
                empty,
                value,
                "",
                "",
                (),
                None,
                duration,
                worker,
                (),
            )
            for index, item_ops, bound, value, duration in zip(
                indices, ops, names, values, durations
            )
        ]
    else:  # pragma: no cover - ItemOutcome's fields were reordered: keywords are always right
        outcomes = [
            ItemOutcome(
                index=index,
                status="done",
                ops=item_ops,
                bound=fromkeys(bound, stashed) if bound else {},
                value=value,
                duration=duration,
                worker=worker,
            )
            for index, item_ops, bound, value, duration in zip(
                indices, ops, names, values, durations
            )
        ]
    for pos, bound in inline.items():
        outcomes[pos].bound = bound
    for pos, fields in extras.items():
        target = outcomes[pos]
        for name, value in fields.items():
            setattr(target, name, value)
    return outcomes


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
) -> _Columns:
    """Run the items of ``batch``, each with its own capture, into `_Columns`.

    With a ``budget`` (seconds), no item is started once the batch has run that long: the
    items not run are the batch's tail, for the kernel to send again.
    """
    loop = kind == "loop"
    columns = _Columns(worker, loop)
    indices, durations, names = columns.indices, columns.durations, columns.names
    ops, values, inline, extras = columns.ops, columns.values, columns.inline, columns.extras
    stash_values: dict[str, Any] = {}
    stash_indices: dict[str, int] = {}
    interned: dict[tuple[str, ...], tuple[str, ...]] = {}
    # the latest item of the current run of items that bound the same names: while the names
    # stay the same, each item simply replaces it (no per-name work, and one item's values
    # alive at a time, as the serial loop would have)
    held_names: tuple[str, ...] | None = None
    held_index = -1
    held_values: dict[str, Any] = {}
    capture = _ItemCapture()
    ordered = ordered or {}
    may_depend = ordered.get("may_depend", frozenset())
    recorder = Recorder(ordered.get("needs", ()), capture)
    recorder.kernel = ordered.get("kernel", frozenset())
    clock = time.perf_counter
    deadline = None if budget is None else clock() + budget
    watch = timeouts.this_thread()  # None unless the run has a --timeout
    _CAPTURE.item = capture
    try:
        for pos, (index, item) in enumerate(batch):
            if deadline is not None and pos and clock() >= deadline:
                break
            attempts_left = retries
            while True:
                capture.stdout = capture.stderr = capture.warnings = None
                recorder.ops = item_ops = []
                if recorder.marked:
                    recorder.marked = set()
                recorder.locals = None
                value = error = None
                if seed is not None:  # --seed: the item's draws depend on (seed, index) only
                    seed_item(seed, index)
                if watch is not None:
                    watch.begin(index)
                start = clock()
                try:
                    if loop:
                        body(item, recorder)
                    else:
                        value = body(item)
                except BaseException as exc:
                    if isinstance(exc, KeyboardInterrupt):  # the user stopping --serial
                        raise
                    error = error_info(exc)
                    if isinstance(exc, NameError) and unbound_name(exc) in may_depend:
                        error = not_assigned_here(error, unbound_name(exc))
                duration = clock() - start
                if error is None or attempts_left <= 0:
                    break
                attempts_left -= 1  # flaky work: run it again, fresh
            indices.append(index)
            durations.append(duration)
            fields: dict[str, Any] | None = None
            if error is not None:
                fields = {"status": "failed", "error": error}
                printed = [op for op in item_ops if op[0] == C.OP_OUT] if loop else []
                if printed:  # what the failed item printed before its ordered steps, too
                    fields["stdout"] = "".join(op[1] for op in printed)
                    fields["stderr"] = "".join(op[2] for op in printed)
                names.append(None)
                if loop:
                    ops.append([])  # type: ignore[union-attr]
                else:
                    values.append(None)  # type: ignore[union-attr]
            else:
                if loop:
                    ops.append(item_ops)  # type: ignore[union-attr]
                else:
                    values.append(value)  # type: ignore[union-attr]
                local_names = recorder.locals
                if not local_names:
                    names.append(None)
                elif stash_key is None or index == last_index:
                    names.append(None)
                    inline[pos] = _picklable_only(local_names)
                else:  # the value stays here; only the names travel (one tuple per shape)
                    key = tuple(local_names)
                    key = interned.setdefault(key, key)
                    names.append(key)
                    if key is not held_names:
                        if held_names is not None:
                            stash_values.update(held_values)
                            stash_indices.update(dict.fromkeys(held_names, held_index))
                        held_names = key
                    held_index, held_values = index, local_names
                if recorder.marked:
                    deleted = frozenset(n for n in recorder.marked if n not in (local_names or ()))
                    if deleted:
                        fields = {"deleted": deleted}
            if (
                capture.stdout is not None
                or capture.stderr is not None
                or capture.warnings is not None
            ):
                fields = fields if fields is not None else {}
                if capture.stdout is not None:
                    fields["stdout"] = fields.get("stdout", "") + capture.stdout.getvalue()
                if capture.stderr is not None:
                    fields["stderr"] = fields.get("stderr", "") + capture.stderr.getvalue()
                if capture.warnings is not None:
                    fields["warnings"] = tuple(capture.warnings)
            if fields is not None:
                extras[pos] = fields
    finally:
        _CAPTURE.item = None
    if held_names is not None:
        stash_values.update(held_values)
        stash_indices.update(dict.fromkeys(held_names, held_index))
    if stash_indices:
        _stash_many(stash_key, stash_indices, stash_values)  # type: ignore[arg-type]
    return columns


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


def _picklable_only(local_names: dict[str, Any]) -> dict[str, Any]:
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


def _dumps(columns: _Columns) -> bytes:
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


def _mark_unpicklable(columns: _Columns, pos: int, exc: Exception) -> None:
    if columns.ops is not None:
        culprit = _unpicklable_part(columns.ops[pos])
        columns.ops[pos] = []
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


def _unpicklable_part(ops: list[tuple]) -> str:
    for op in ops:
        try:
            cloudpickle.dumps(op)
        except Exception:
            return f"the value added to `{op[1]}`"
    return "the item's result"


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
        The run's largest item index: that item's bound values are returned inline.
    stash_key:
        Where other items' bound values are kept in this process; ``None`` returns them inline
        (``--serial``, where nothing travels).
    retries:
        Run a failing item up to this many more times (flaky work), fresh each time.
    serialize:
        Return the outcomes as one cloudpickled blob (for the network; ``cloudpickle.loads``
        gives the list of `ItemOutcome`) or as the list itself.
    budget:
        Start no item after this many seconds: the outcomes are then those of a head of
        ``batch`` (at least one item), and the kernel sends the rest again.
    """
    _install_capture()
    body, kind = _body_for(token, blob, big_env)
    bundle = load_bundle(token, blob)
    ordered = {key: bundle[key] for key in ("needs", "may_depend", "kernel") if key in bundle}
    # an in-place change of a notebook object or an item stays on this worker: watch for it
    # (--serial, stash_key None, changes the notebook's own objects, as the serial loop does);
    # stores mirrored into the kernel (``svc.C = C``) change the worker's copy on purpose
    watch = None
    if kind == "loop" and stash_key is not None:
        mirrored = set(bundle.get("mirrored", ()))
        names = [n for n in [*bundle["env"], *big_env] if n not in mirrored]
        watch = BatchWatch(body.__globals__, names, batch)
    seed = bundle.get("seed")
    columns = _run_columns(
        body, kind, batch, last_index, stash_key, worker, retries, budget, ordered, seed
    )
    if watch is not None:
        watch.record(columns.extras, len(columns.indices))
    if not serialize:
        return _unpack(*columns.fields())
    return _dumps(columns)


def _body_for(token: str, blob: bytes, big_env: dict[str, Any]) -> tuple[Any, str]:
    bundle = load_bundle(token, blob)
    if bundle["kind"] != "loop":
        return bundle["fn"], bundle["kind"]
    if big_env:  # scattered values differ per run: bind them afresh (cheap)
        return make_body(bundle["code"], {**bundle["env"], **big_env}), "loop"
    body = bundle.get("_fn")
    if body is None:
        body = bundle["_fn"] = make_body(bundle["code"], bundle["env"])
    return body, "loop"
