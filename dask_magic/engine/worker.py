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
import io
import sys
import threading
import time
import traceback
import types
import warnings
from collections import OrderedDict
from typing import Any

import cloudpickle

from .results import STASHED, ErrorInfo, Frame, ItemOutcome

#: Generated code reaches the runtime only through names that cannot appear in user code
#: (pytest's ``@py_assert`` trick): the item, the recorder and ``locals``.
ITEM_NAME = "@dm_item"
RECORDER_NAME = "@dm_rec"
LOCALS_NAME = "@dm_locals"

#: Captured output per stream and item: the head and the tail are kept, the middle dropped,
#: so a body that prints 10 MB costs the kernel 64 KB.
OUTPUT_HEAD = 16_384
OUTPUT_TAIL = 49_152
MESSAGE_LIMIT = 10_000
_INTERNAL_MODULES = ("dask_magic.", "dask.", "distributed.", "tornado.", "asyncio.")


class Recorder:
    """The ``@dm_rec`` object the rewritten body reports to.

    Operations are tuples so that they pickle small:
    ``("call", root, path, method, args, kwargs)``, ``("set", root, path, value)`` and
    ``("aug", root, path, op, value)`` (``op`` an `ast.operator` name such as ``"Add"``).
    ``path`` is a tuple of ``("item", key)`` /
    ``("attr", name)`` steps from the accumulator ``root`` to the object acted on; keys are
    evaluated on the worker, exactly where the serial loop would have evaluated them.
    """

    __slots__ = ("locals", "marked", "ops")

    def __init__(self) -> None:
        self.ops: list[tuple] = []
        self.marked: set[str] = set()
        self.locals: dict[str, Any] = {}

    def call(self, root: str, path: tuple, method: str, args: tuple, kwargs: dict) -> None:
        self.ops.append(("call", root, path, method, args, kwargs))

    def set(self, value: Any, root: str, path: tuple) -> None:
        # the value comes first: Python evaluates it before the target's container and key
        self.ops.append(("set", root, path, value))

    def aug(self, root: str, path: tuple, op: str, value: Any) -> None:
        self.ops.append(("aug", root, path, op, value))

    @staticmethod
    def slice(lower: Any, upper: Any, step: Any) -> slice:
        """``a[1:3] = v`` records the key ``slice(1, 3)`` (a name ``slice`` may be shadowed)."""
        return builtins.slice(lower, upper, step)

    def mark(self, name: str) -> None:
        """``name`` was touched in a way that may unbind it (``del``, ``except ... as``)."""
        self.marked.add(name)

    def end(self, frame_locals: dict[str, Any]) -> None:
        self.locals = {k: v for k, v in frame_locals.items() if not k.startswith("@dm")}


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
    with _STASH_LOCK:
        run = _STASH.get(key)
        if run is None:
            run = _STASH[key] = {}
            while len(_STASH) > _STASH_RUNS_KEPT:
                _STASH.popitem(last=False)
        for name, value in values.items():
            if name not in run or run[name][0] <= index:
                run[name] = (index, value)


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


# -- per-item capture of stdout, stderr and warnings -----------------------------------------

class _CappedText:
    """Keeps the head and the tail of what is written to it."""

    def __init__(self) -> None:
        self._head = io.StringIO()
        self._head_len = 0
        self._tail: list[str] = []
        self._tail_len = 0
        self._dropped = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            text = str(text)
        room = OUTPUT_HEAD - self._head_len
        if room > 0:
            self._head.write(text[:room])
            self._head_len += min(room, len(text))
            text = text[room:]
        if text:
            self._tail.append(text)
            self._tail_len += len(text)
            while self._tail_len - len(self._tail[0]) >= OUTPUT_TAIL:
                self._dropped += len(self._tail[0])
                self._tail_len -= len(self._tail.pop(0))
        return len(text)

    def getvalue(self) -> str:
        tail = "".join(self._tail)
        if len(tail) > OUTPUT_TAIL:
            self._dropped += len(tail) - OUTPUT_TAIL
            tail = tail[-OUTPUT_TAIL:]
        middle = f"\n[... {self._dropped:,} characters of output dropped ...]\n" if self._dropped else ""
        return self._head.getvalue() + middle + tail


class _ThreadRoutedStream(io.TextIOBase):
    """A ``sys.stdout`` stand-in that sends each thread's writes to that thread's item."""

    def __init__(self, original: Any, local: threading.local, attr: str) -> None:
        self._original = original
        self._local = local
        self._attr = attr

    def write(self, text: str) -> int:
        target = getattr(self._local, self._attr, None)
        if target is None:
            return self._original.write(text)
        return target.write(text)

    def flush(self) -> None:
        if getattr(self._local, self._attr, None) is None:
            self._original.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return getattr(self._original, "encoding", "utf-8")


_CAPTURE = threading.local()
_INSTALL_LOCK = threading.Lock()


def _install_capture() -> None:
    """Route stdout, stderr and warnings through per-thread buffers (once per process)."""
    with _INSTALL_LOCK:
        if not isinstance(sys.stdout, _ThreadRoutedStream):
            sys.stdout = _ThreadRoutedStream(sys.stdout, _CAPTURE, "stdout")
        if not isinstance(sys.stderr, _ThreadRoutedStream):
            sys.stderr = _ThreadRoutedStream(sys.stderr, _CAPTURE, "stderr")
        if getattr(warnings.showwarning, "_dask_magic", False):
            return
        original = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
            sink = getattr(_CAPTURE, "warnings", None)
            if sink is None:
                return original(message, category, filename, lineno, file, line)
            sink.append(f"{filename}:{lineno}: {category.__name__}: {message}")
            return None

        showwarning._dask_magic = True  # type: ignore[attr-defined]
        warnings.showwarning = showwarning


# -- errors as data ---------------------------------------------------------------------------

def _is_internal(frame: types.FrameType) -> bool:
    module = frame.f_globals.get("__name__") or ""
    return module == "dask_magic" or module.startswith(_INTERNAL_MODULES)


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not lose the failure
        text = f"<unprintable {type(exc).__name__}>"
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT] + f" [... {len(text) - MESSAGE_LIMIT:,} more characters]"
    return text


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    # a class defined in the loop body is local to the generated function: hide that
    name = cls.__qualname__.replace("dask_magic_loop.<locals>.", "")
    return name if module in ("builtins", "__main__", None) else f"{module}.{name}"


def frames_of(tb: types.TracebackType | None) -> tuple[Frame, ...]:
    """Structured frames of a traceback, without reading any source (that happens in the kernel)."""
    return tuple(
        Frame(f.f_code.co_filename, lineno or f.f_lineno, f.f_code.co_name, _is_internal(f))
        for f, lineno in traceback.walk_tb(tb)
    )


def _portable(exc: BaseException) -> BaseException | None:
    """The exception if it survives a pickle round trip (many do not), else None."""
    try:
        return cloudpickle.loads(cloudpickle.dumps(exc.with_traceback(None)))
    except Exception:
        return None


def _chain_text(exc: BaseException) -> str:
    parts = []
    seen = {id(exc)}
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while cause is not None and id(cause) not in seen and len(parts) < 5:
        seen.add(id(cause))
        parts.append(f"{_type_name(cause)}: {_safe_str(cause)}")
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return "\n".join(parts)


def error_info(exc: BaseException, kind: str = "user", hint: str = "") -> ErrorInfo:
    """Describe ``exc`` as data that always reaches the kernel."""
    return ErrorInfo(
        type_name=_type_name(exc),
        message=_safe_str(exc),
        frames=frames_of(exc.__traceback__),
        kind=kind,  # type: ignore[arg-type]
        exception=_portable(exc),
        chained=_chain_text(exc),
        hint=hint,
    )


# -- running a batch --------------------------------------------------------------------------

def _run_item(body: Any, kind: str, index: int, item: Any) -> tuple[ItemOutcome, dict[str, Any]]:
    """Run one item with its own capture; returns the outcome and the item's local names."""
    out, err, caught = _CappedText(), _CappedText(), []
    _CAPTURE.stdout, _CAPTURE.stderr, _CAPTURE.warnings = out, err, caught
    recorder = Recorder()
    start = time.perf_counter()
    value, error = None, None
    try:
        if kind == "loop":
            body(item, recorder)
        else:
            value = body(item)
    except BaseException as exc:  # noqa: BLE001 - every item failure is data, never a crash
        if isinstance(exc, KeyboardInterrupt):  # the user stopping --serial, not an item failure
            raise
        error = error_info(exc)
    finally:
        duration = time.perf_counter() - start
        _CAPTURE.stdout = _CAPTURE.stderr = _CAPTURE.warnings = None
    outcome = ItemOutcome(
        index=index,
        status="failed" if error else "done",
        ops=[] if error else recorder.ops,
        value=value,
        stdout=out.getvalue(),
        stderr=err.getvalue(),
        warnings=tuple(caught),
        error=error,
        duration=duration,
    )
    if not error:
        outcome.deleted = frozenset(n for n in recorder.marked if n not in recorder.locals)
    return outcome, ({} if error else recorder.locals)


def _serialize(outcome: ItemOutcome) -> bytes:
    """Pickle one outcome; an unpicklable contribution turns the item into a failure."""
    try:
        return cloudpickle.dumps(outcome)
    except Exception as exc:
        culprit = _unpicklable_part(outcome)
        failed = ItemOutcome(
            index=outcome.index,
            status="failed",
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            warnings=outcome.warnings,
            duration=outcome.duration,
            worker=outcome.worker,
            error=ErrorInfo(
                type_name="dask_magic.UnpicklableResult",
                message=f"{culprit} cannot be sent back to the notebook: {_type_name(exc)}: {_safe_str(exc)}",
                hint="Return or collect plain data (numbers, strings, lists, dicts, arrays, "
                "DataFrames), not open files, locks, connections or generators.",
            ),
        )
        return cloudpickle.dumps(failed)


def _unpicklable_part(outcome: ItemOutcome) -> str:
    for op in outcome.ops:
        try:
            cloudpickle.dumps(op)
        except Exception:
            return f"the value added to `{op[1]}`"
    try:
        cloudpickle.dumps(outcome.value)
    except Exception:
        return "the item's return value"
    return "the item's result"


def _split_bound(local_names: dict[str, Any], keep_inline: bool) -> dict[str, Any]:
    """Inline values for the run's last item; a STASHED marker for every other item."""
    if not keep_inline:
        return dict.fromkeys(local_names, STASHED)
    inline = {}
    for name, value in local_names.items():
        try:
            cloudpickle.dumps(value)
        except Exception:  # e.g. a closed file from `with open(f) as fh`: leave the name alone
            continue
        inline[name] = value
    return inline


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
) -> bytes | list[ItemOutcome]:
    """Run ``batch`` (``(index, item)`` pairs) through the bundled body, one outcome per item.

    Parameters
    ----------
    token, blob:
        Identity and cloudpickled bytes of the bundle ``{"kind", "code"|"fn", "env"}``.
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
        Return the outcomes as one cloudpickled blob (for the network) or as objects.
    """
    _install_capture()
    body, kind = _body_for(token, blob, big_env)
    outcomes: list[ItemOutcome] = []
    for index, item in batch:
        for _attempt in range(retries + 1):
            outcome, local_names = _run_item(body, kind, index, item)
            if outcome.status == "done":
                break
        outcome.worker = worker
        if local_names:
            inline = stash_key is None or index == last_index
            outcome.bound = _split_bound(local_names, inline)
            if not inline:
                _stash(stash_key, index, local_names)  # type: ignore[arg-type]
        outcomes.append(outcome)
    if not serialize:
        return outcomes
    try:
        return cloudpickle.dumps(outcomes)
    except Exception:  # one item's unpicklable result must not take the batch down with it
        return cloudpickle.dumps([cloudpickle.loads(_serialize(o)) for o in outcomes])


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
