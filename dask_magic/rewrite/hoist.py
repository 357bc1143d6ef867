"""Hoisting: the heavy parts of the ordered part still run in parallel.

An ordered statement such as ``total = total + len(pd.read_csv(f))`` needs the kernel only
for ``total``; ``len(pd.read_csv(f))`` depends on nothing the kernel holds. Such
sub-expressions, evaluated unconditionally whenever the statement runs, are computed on the
worker and only their values travel to the kernel. Then `nothing_parallel` tells whether
anything at all is left to run in parallel: a body whose every call needs kernel state is a
real recurrence, and refused.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable, Mapping
from typing import Any

from dask_magic import contract as C
from dask_magic.errors import Finding

from . import findings as F
from .scopes import root_name
from .split import MIRROR, ORDERED, PARALLEL, RECORD, Split, body_statements
from .statements import header_nodes, is_compound, reads

#: Nodes that cost nothing to send as they are: not worth computing ahead.
_TRIVIAL = (
    ast.Name,
    ast.Constant,
    ast.Tuple,
    ast.List,
    ast.Set,
    ast.Dict,
    ast.Starred,
    ast.expr_context,
)


def hoist(body: list[ast.stmt], split: Split) -> None:
    """Fill ``split.hoisted`` for every ordered statement."""
    for stmt in body_statements(body, split):
        if split.mode(stmt) == ORDERED:
            found: list[ast.expr] = []
            for root in _evaluated_first(stmt):
                found += _collect(root, split.kernel_names)
            if found:
                split.hoisted[id(stmt)] = found


def _evaluated_first(stmt: ast.stmt) -> list[ast.expr]:
    """Expressions the statement always evaluates before anything of its own runs."""
    if isinstance(stmt, (ast.Expr, ast.Assign, ast.AugAssign)):
        return [stmt.value]
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        return [stmt.value]
    if isinstance(stmt, ast.If):
        return [stmt.test]
    if isinstance(stmt, ast.For):
        return [stmt.iter]
    if isinstance(stmt, ast.Match):
        return [stmt.subject]
    return []


def _collect(node: ast.expr, kernel: set[str]) -> list[ast.expr]:
    """The largest sub-expressions of ``node`` that can be computed on the worker."""
    if _hoistable(node, kernel):
        return [node]
    found: list[ast.expr] = []
    for child in _unconditional_children(node):
        found += _collect(child, kernel)
    return found


def _hoistable(node: ast.expr, kernel: set[str]) -> bool:
    if isinstance(node, _TRIVIAL) and not any(not isinstance(n, _TRIVIAL) for n in ast.walk(node)):
        return False
    if any(
        isinstance(n, (ast.NamedExpr, ast.Yield, ast.YieldFrom, ast.Await, ast.Starred))
        for n in ast.walk(node)
    ):
        return False
    return not reads([node]) & kernel


def _unconditional_children(node: ast.expr) -> list[ast.expr]:
    """Children evaluated whenever ``node`` is (not the right side of ``and``, ...)."""
    if isinstance(node, ast.Call):
        func = [node.func.value] if isinstance(node.func, ast.Attribute) else []
        args = [a.value if isinstance(a, ast.Starred) else a for a in node.args]
        return [*func, *args, *(k.value for k in node.keywords)]
    if isinstance(node, ast.Compare):
        return [node.left, *node.comparators[: 1 if len(node.ops) > 1 else None]]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [e.value if isinstance(e, ast.Starred) else e for e in node.elts]
    if isinstance(node, ast.Dict):
        return [*(k for k in node.keys if k is not None), *node.values]
    children = _PLAIN_CHILDREN.get(type(node))
    return children(node) if children is not None else []


#: The nodes whose unconditional children are fields read as they are.
_PLAIN_CHILDREN: dict[type[ast.expr], Callable[[Any], list[ast.expr]]] = {
    ast.BinOp: lambda n: [n.left, n.right],
    ast.UnaryOp: lambda n: [n.operand],
    ast.BoolOp: lambda n: n.values[:1],
    ast.IfExp: lambda n: [n.test],
    ast.Subscript: lambda n: [n.value, n.slice],
    ast.Attribute: lambda n: [n.value],
    ast.JoinedStr: lambda n: [v.value for v in n.values if isinstance(v, ast.FormattedValue)],
    ast.Slice: lambda n: [p for p in (n.lower, n.upper, n.step) if p is not None],
}


def nothing_parallel(
    body: list[ast.stmt],
    split: Split,
    carried: dict[str, ast.Name],
    offset: int,
    kinds: Mapping[str, str],
) -> Finding | None:
    """A refusal when every call of the body needs a value an earlier item computed, and
    some of those calls may be real work (a notebook function, not ``print`` or ``max``)."""
    heavy_in_kernel = []
    for stmt in body_statements(body, split):
        mode = split.mode(stmt)
        if mode in (PARALLEL, RECORD, MIRROR):
            parts = header_nodes(stmt) if is_compound(stmt) else [stmt]
            if any(isinstance(n, ast.Call) for p in parts for n in ast.walk(p)):
                return None
        elif mode == ORDERED:
            if any(
                isinstance(n, ast.Call)
                for e in split.hoisted.get(id(stmt), [])
                for n in ast.walk(e)
            ):
                return None
            heavy = any(isinstance(n, ast.Call) and _heavy_call(n, kinds) for n in ast.walk(stmt))
            if heavy and reads([stmt]) & set(carried):
                heavy_in_kernel.append(stmt)
    if not heavy_in_kernel:
        return None  # cheap bookkeeping only (``total = total + x``): fine in the kernel
    names = sorted(reads(heavy_in_kernel) & set(carried))
    chain = "; ".join(_chain(name, body, carried, offset) for name in names)
    return F.RECURRENCE.at(heavy_in_kernel[0], offset, chain=chain, name=names[0])


def _heavy_call(node: ast.Call, kinds: Mapping[str, str]) -> bool:
    """A call that may do real work: a notebook function or object, or a name not known.

    Builtins (``print``, ``max``, ``len``), module functions (``np.append``, ``pd.concat``),
    methods of plain data (lists, dicts, frames) and of the loop's own values are bookkeeping
    the kernel does fast; a notebook function or a method of a notebook object (a model) may
    be the loop's real work.
    """
    root = root_name(node.func)
    if root is None:
        return True
    kind = kinds.get(root.id)
    if kind is None:
        return isinstance(node.func, ast.Name) and not hasattr(builtins, root.id)
    return kind in (C.KIND_CALLABLE, C.KIND_OBJECT)


def _chain(name: str, body: list[ast.stmt], carried: dict[str, ast.Name], offset: int) -> str:
    assigned = sorted(
        {
            n.lineno + offset
            for s in body
            for n in ast.walk(s)
            if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)
        }
    )
    read_at = carried[name].lineno + offset
    where = ", ".join(str(line) for line in assigned) or "?"
    return f"`{name}` is read on line {read_at} and assigned on line {where}, for the next item"
