"""The ``@dm_rec`` object a loop body reports to on the worker: what each item did to the
notebook's accumulators and where it reached an ordered step, as small tuples.

Stdlib only: imported inside Dask workers (through `engine.worker`).
"""

from __future__ import annotations

import builtins
from typing import Any

from dask_magic import contract as C

from .capture import _ItemCapture

#: Generated code reaches the runtime only through names that cannot appear in user code
#: (pytest's ``@py_assert`` trick): the item and the recorder.
ITEM_NAME = C.ITEM
RECORDER_NAME = C.RECORDER


class Recorder:
    """The ``@dm_rec`` object the rewritten body reports to.

    Operations are tuples so that they pickle small:
    ``("call", root, path, method, args, kwargs)`` (``kwargs`` None without keywords),
    ``("set", root, path, value)`` and ``("aug", root, path, op, value)`` (``op`` an
    `ast.operator` name such as ``"Add"``). ``path`` is a tuple of ``("item", key)`` /
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

    def call(
        self, root: str, path: tuple, method: str, args: tuple, kwargs: dict | None = None
    ) -> None:
        # a call without keywords records None, not a dict per item: the op tuple then holds
        # no container, and the cyclic collector stops walking it while the run is kept
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
        if self.kernel:  # the kernel holds their values (a copy here would mislead)
            for name in self.kernel:
                frame_locals.pop(name, None)
        # `locals()` of the generated function: a dict of its own, so the two runtime names
        # can be popped from it (no comprehension per item; the rewrite adds no other locals)
        frame_locals.pop(ITEM_NAME, None)
        frame_locals.pop(RECORDER_NAME, None)
        self.locals = frame_locals
