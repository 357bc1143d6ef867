"""Apply what an item recorded to the notebook's namespace; the names items leave bound.

This is what makes ``results.append(x)`` in a parallel loop leave ``results`` exactly as the
serial loop would: the worker only records the call; the kernel performs it (`apply_op`,
called by `engine.commit` item after item, in input order). Floats summed with
``total += x`` come out bit-identical.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

from .loaded_batch import AppendColumn
from .results import STASHED, ItemOutcome

_IN_PLACE = {
    "Add": operator.iadd,
    "Sub": operator.isub,
    "Mult": operator.imul,
    "MatMult": operator.imatmul,
    "Div": operator.itruediv,
    "FloorDiv": operator.ifloordiv,
    "Mod": operator.imod,
    "Pow": operator.ipow,
    "LShift": operator.ilshift,
    "RShift": operator.irshift,
    "BitOr": operator.ior,
    "BitXor": operator.ixor,
    "BitAnd": operator.iand,
}

_INDEX = operator.attrgetter("index")

#: The final value of a name some item unbound (``del x``, ``except E as x``).
UNBOUND = object()


def _step(obj: Any, step: tuple[str, Any]) -> Any:
    kind, key = step
    return obj[key] if kind == "item" else getattr(obj, key)


def _resolve(ns: MutableMapping[str, Any], root: str, path: tuple) -> Any:
    obj = ns[root]
    for step in path:
        obj = _step(obj, step)
    return obj


def apply_op(ns: MutableMapping[str, Any], op: tuple) -> None:
    """Perform one recorded operation on the objects in ``ns``."""
    kind, root, path = op[0], op[1], op[2]
    if kind == "call":
        _, _, _, method, args, kwargs = op
        call = getattr(_resolve(ns, root, path), method)
        call(*args, **kwargs) if kwargs else call(*args)
    elif kind == "set":
        parent = _resolve(ns, root, path[:-1])
        step_kind, key = path[-1]
        if step_kind == "item":
            parent[key] = op[3]
        else:  # a store mirrored from the worker: ``svc.C = C``
            setattr(parent, key, op[3])
    elif kind == "aug":
        _, _, _, name, value = op
        fn = _IN_PLACE[name]
        if not path:
            ns[root] = fn(ns[root], value)
            return
        parent = _resolve(ns, root, path[:-1])
        step_kind, key = path[-1]
        if step_kind == "item":
            parent[key] = fn(parent[key], value)
        else:
            setattr(parent, key, fn(getattr(parent, key), value))
    else:  # pragma: no cover - the recorder makes no other kinds
        raise ValueError(f"unknown recorded operation {kind!r}")


class Appends:
    """Consecutive ``lst.append(v)`` calls on one list, applied as one ``lst.extend``.

    The in-order commit offers it each recorded operation (`take`); any other operation, or
    an append to another object, must `flush` first, so the notebook's objects see the
    operations in the serial loop's order. Only a real `list` is extended (a subclass may
    define its own ``append``), and only an ``append`` of one positional argument.
    """

    __slots__ = ("ns", "root", "target", "values")

    def __init__(self, ns: MutableMapping[str, Any]) -> None:
        self.ns = ns
        self.root: str | None = None
        self.target: list | None = None
        self.values: list[Any] = []

    def take(self, op: tuple) -> bool:
        """Hold ``op`` if it is an append to a plain list; False: apply it yourself."""
        if op[0] != "call" or op[3] != "append" or op[2] or op[5] or len(op[4]) != 1:
            return False
        if op[1] != self.root:
            self.flush()
            target = self.ns.get(op[1])
            if type(target) is not list:
                return False
            self.root, self.target = op[1], target
        self.values.append(op[4][0])
        return True

    def take_column(self, column: AppendColumn) -> bool:
        """Apply a whole batch's appends (`AppendColumn`) as one ``extend``, after what is
        held; False (nothing applied) if its root is not a plain `list`."""
        self.flush()
        target = self.ns.get(column.root)
        if type(target) is not list:
            return False
        target.extend(column.values)
        return True

    def flush(self) -> None:
        """Apply what is held; the next append looks its list up again."""
        if self.values:
            self.target.extend(self.values)  # type: ignore[union-attr]
            self.values = []
        self.root = self.target = None


def last_bindings(outcomes: Iterable[ItemOutcome]) -> dict[str, tuple[int, Any]]:
    """For each name, the ``(index, value)`` of the last successful item that bound or unbound it,
    the names in the order the serial loop first bound them.

    ``value`` is `STASHED` when it stayed on a worker, `UNBOUND` when that item deleted it.
    """
    done = [
        o for o in sorted(outcomes, key=_INDEX) if o.status == "done" and (o.bound or o.deleted)
    ]
    final: dict[str, tuple[int, Any]] = {}
    # from the last item back, the first item met that bound a name is its last binding
    for outcome in _one_per_shape(reversed(done)):
        for name in outcome.deleted:  # a name both bound and deleted by one item ends unbound
            if name not in final:
                final[name] = (outcome.index, UNBOUND)
        for name, value in outcome.bound.items():
            if name not in final:
                final[name] = (outcome.index, value)
    return {name: final[name] for name in _first_bound(done)}


def _first_bound(done: list[ItemOutcome]) -> dict[str, None]:
    """The names ``done`` (in item order) bind or unbind, in the order of their first binding."""
    names: dict[str, None] = {}
    for outcome in _one_per_shape(done):
        names.update(dict.fromkeys(outcome.bound))
        names.update(dict.fromkeys(outcome.deleted))
    return names


def _one_per_shape(outcomes: Iterable[ItemOutcome]) -> Iterator[ItemOutcome]:
    """``outcomes`` in the order given, less each one whose ``bound`` dict an earlier one had.

    The items of one shape share their ``bound`` dict (`engine.columns`): once a dict is met,
    a later item of it that deletes nothing has no name to add and no other value to give.
    """
    met: set[int] = set()
    last: Any = None  # the dict of the item before: most often the same one
    for outcome in outcomes:
        if not outcome.deleted and (outcome.bound is last or id(outcome.bound) in met):
            continue
        last = outcome.bound
        met.add(id(last))
        yield outcome


def stashed_wanted(
    final: dict[str, tuple[int, Any]], workers: dict[int, str | None]
) -> dict[str | None, dict[str, int]]:
    """Which stashed values to fetch from which worker: ``{worker: {name: index}}``."""
    wanted: dict[str | None, dict[str, int]] = {}
    for name, (index, value) in final.items():
        if value is STASHED:
            wanted.setdefault(workers.get(index), {})[name] = index
    return wanted


def bind_final(ns: MutableMapping[str, Any], final: dict[str, tuple[int, Any]]) -> list[str]:
    """Bind each name to its final value; returns names whose value could not be brought back."""
    missing = []
    for name, (_index, value) in final.items():
        if value is UNBOUND:
            ns.pop(name, None)
        elif value is STASHED:
            missing.append(name)
        else:
            ns[name] = value
    return missing
