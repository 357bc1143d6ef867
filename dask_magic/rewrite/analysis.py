"""Read-only analysis of a ``%%parallel_for`` cell: what the loop body binds, reads and adds to.

Nothing here changes the tree or raises: every check returns `Finding` objects (pyflakes
style), and `analyze_body` returns a `BodyFacts` the transformer builds on.

Scopes: the loop body's own scope is the unit of analysis. Nested functions, lambdas, classes
and comprehensions are their own scopes; their bindings are not the body's, but what they read
and what they add to accumulators still matters.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import Finding
from . import findings as F
from .carried import LoopCarried
from .scopes import (
    COMPREHENSIONS,
    iter_body_scope,
    root_name,
    stored_names,
    targets,
    walk_scoped,
    walk_with_loop_depth,
)

#: Methods whose statement-level call on a notebook object is recorded on the worker and
#: replayed in the kernel in item order (DESIGN §3 "accumulators").
ACCUMULATE_METHODS = frozenset({"append", "extend", "add", "update"})
#: Methods known to change their receiver in place in a way that is not an accumulation.
IN_PLACE_METHODS = frozenset(
    {
        "pop",
        "remove",
        "insert",
        "clear",
        "sort",
        "reverse",
        "popitem",
        "setdefault",
        "discard",
        "appendleft",
        "extendleft",
        "popleft",
        "difference_update",
        "intersection_update",
        "symmetric_difference_update",
    }
)


@dataclass
class BodyFacts:
    """What the analysis learnt about the loop body."""

    target_names: list[str]
    local_names: dict[str, ast.AST] = field(default_factory=dict)  # name -> first binding
    accumulators: dict[str, ast.AST] = field(default_factory=dict)  # name -> first site
    accumulate_roots: set[int] = field(default_factory=set)  # id() of root Name nodes
    deletable: set[str] = field(default_factory=set)  # names `del`-ed or bound by `except as`
    findings: list[Finding] = field(default_factory=list)


def locate_loop(tree: ast.Module, offset: int) -> tuple[int, ast.For | None, list[Finding]]:
    """Index and node of the single top-level ``for``, or findings saying why there is none."""
    loops = [(i, s) for i, s in enumerate(tree.body) if isinstance(s, (ast.For, ast.AsyncFor))]
    if not loops:
        anchor = tree.body[0] if tree.body else tree
        return -1, None, [F.NO_LOOP.at(anchor, offset)]
    if len(loops) > 1:
        lines = ", ".join(str(s.lineno + offset) for _, s in loops)
        return -1, None, [F.SEVERAL_LOOPS.at(loops[1][1], offset, count=len(loops), lines=lines)]
    index, loop = loops[0]
    if isinstance(loop, ast.AsyncFor):
        return -1, None, [F.ASYNC_FOR.at(loop, offset)]
    return index, loop, []


def analyze_body(loop: ast.For, offset: int) -> BodyFacts:
    """Everything `transform` needs, plus every refusal found in the loop body."""
    mark_augtargets(loop.body)
    facts = BodyFacts(target_names=[n for n, _ in targets(loop.target)])
    for name, node in targets(loop.target):
        facts.local_names.setdefault(name, node)
    facts.findings += _control_flow(loop.body, offset)
    _collect_bindings(loop.body, facts)
    _classify_outer_uses(loop.body, facts, offset)
    facts.findings += LoopCarried(facts, offset).check(loop.body)
    facts.findings.sort(key=lambda f: (f.lineno, f.col))
    return facts


# -- control flow: break, return, yield, await, global, IPython ----------------------------


def _control_flow(body: list[ast.stmt], offset: int) -> list[Finding]:
    found: list[Finding] = []
    for node in walk_with_loop_depth(body):
        node, depth = node
        if isinstance(node, ast.Break) and depth == 0:
            found.append(F.BREAK.at(node, offset))
        elif isinstance(node, ast.Return):
            found.append(F.RETURN.at(node, offset))
        elif isinstance(node, (ast.Yield, ast.YieldFrom, ast.Await)):
            what = {"Yield": "yield", "YieldFrom": "yield from", "Await": "await"}[
                type(node).__name__
            ]
            found.append(F.YIELD_AWAIT.at(node, offset, what=what))
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            what = f"{'global' if isinstance(node, ast.Global) else 'nonlocal'} {', '.join(node.names)}"
            found.append(F.GLOBAL.at(node, offset, what=what))
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.Global) and node not in body:
            found.append(F.GLOBAL.at(node, offset, what=f"global {', '.join(node.names)}"))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "get_ipython"
        ):
            found.append(F.IPYTHON_SYNTAX.at(node, offset))
    for fn in iter_body_scope(body):
        # `nonlocal` in a function defined directly in the body would bind the generated
        # function's locals; in the serial cell it is a SyntaxError at module level
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in iter_body_scope(fn.body):
                if isinstance(node, ast.Nonlocal):
                    found.append(
                        F.GLOBAL.at(node, offset, what=f"nonlocal {', '.join(node.names)}")
                    )
    return _dedupe(found)


def _dedupe(found: list[Finding]) -> list[Finding]:
    seen, unique = set(), []
    for f in found:
        key = (f.code, f.lineno, f.col)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


# -- bindings --------------------------------------------------------------------------------


def _collect_bindings(body: list[ast.stmt], facts: BodyFacts) -> None:
    aug_names: dict[str, ast.AST] = {}
    for node in iter_body_scope(body):
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            aug_names.setdefault(node.target.id, node)
            continue
        if isinstance(node, ast.NamedExpr):
            facts.local_names.setdefault(node.target.id, node)
        for name, where in stored_names(node):
            if getattr(where, "_dm_aug_target", False):
                continue
            facts.local_names.setdefault(name, where)
        if isinstance(node, ast.ExceptHandler) and node.name:
            facts.deletable.add(node.name)
        if isinstance(node, ast.Delete):
            facts.deletable.update(t.id for t in node.targets if isinstance(t, ast.Name))
    # walrus inside comprehensions binds in the body's scope (PEP 572)
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, COMPREHENSIONS):
            for sub in ast.walk(node):
                if isinstance(sub, ast.NamedExpr):
                    facts.local_names.setdefault(sub.target.id, sub)
    for name, node in aug_names.items():
        if name not in facts.local_names:
            facts.accumulators.setdefault(name, node)


def mark_augtargets(body: list[ast.stmt]) -> None:
    """Tag the Name of every ``x op= ...`` so binding collection can tell it apart."""
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            node.target._dm_aug_target = True  # type: ignore[attr-defined]


# -- uses of notebook (outer) objects ------------------------------------------------------------


def _classify_outer_uses(body: list[ast.stmt], facts: BodyFacts, offset: int) -> None:
    """Find accumulator sites and refuse every other way of changing a notebook object."""
    outer = lambda node: (r := root_name(node)) is not None and r.id not in facts.local_names  # noqa: E731
    for stmt in _body_statements(body):
        _classify_statement(stmt, facts, offset, outer)
    _refuse_value_uses(body, facts, offset, outer)
    _refuse_accumulator_reads(body, facts, offset)


def _body_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in iter_body_scope(body):
        if isinstance(node, ast.stmt):
            yield node


def _classify_statement(stmt: ast.stmt, facts: BodyFacts, offset: int, outer) -> None:  # noqa: ANN001
    add = facts.findings.append
    if isinstance(stmt, ast.Expr) and _is_accumulate_call(stmt.value, outer):
        _add_site(facts, stmt, root_name(stmt.value.func.value))  # type: ignore[attr-defined]
    elif isinstance(stmt, ast.Assign):
        outer_targets = [
            t for t in stmt.targets if isinstance(t, (ast.Subscript, ast.Attribute)) and outer(t)
        ]
        if outer_targets and len(stmt.targets) > 1:
            add(F.ACCUMULATE_CHAINED.at(stmt, offset, name=root_name(outer_targets[0]).id))
        for target in outer_targets:
            if isinstance(target, ast.Attribute):
                name = root_name(target).id
                add(
                    F.OUTER_MUTATION.at(
                        target, offset, what=f"{ast.unparse(target)} = ...", name=name
                    )
                )
            elif len(stmt.targets) == 1:
                _add_site(facts, stmt, root_name(target))
    elif isinstance(stmt, ast.AugAssign):
        target = stmt.target
        if isinstance(target, ast.Name) and target.id in facts.accumulators:
            facts.accumulate_roots.add(id(target))
        elif isinstance(target, ast.Attribute) and outer(target):
            what = f"{ast.unparse(target)} {_op_text(stmt.op)}= ..."
            add(F.OUTER_MUTATION.at(target, offset, what=what, name=root_name(target).id))
        elif isinstance(target, ast.Subscript) and outer(target):
            _add_site(facts, stmt, root_name(target))
    elif isinstance(stmt, ast.Delete):
        for target in stmt.targets:
            if isinstance(target, ast.Name) and target.id not in facts.local_names:
                add(F.DEL_OUTER.at(stmt, offset, name=target.id))
            elif isinstance(target, (ast.Subscript, ast.Attribute)) and outer(target):
                name = root_name(target).id
                add(
                    F.OUTER_MUTATION.at(
                        target, offset, what=f"del {ast.unparse(target)}", name=name
                    )
                )


def _add_site(facts: BodyFacts, stmt: ast.stmt, root: ast.Name | None) -> None:
    if root is None:
        return
    facts.accumulators.setdefault(root.id, stmt)
    facts.accumulate_roots.add(id(root))
    stmt._dm_accumulate = True  # type: ignore[attr-defined]


def _is_accumulate_call(node: ast.expr, outer) -> bool:  # noqa: ANN001
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ACCUMULATE_METHODS
        and outer(node.func.value)
    )


def _op_text(op: ast.operator) -> str:
    return ast.unparse(ast.BinOp(ast.Name("a"), op, ast.Name("b")))[2:-2]


def _refuse_value_uses(body: list[ast.stmt], facts: BodyFacts, offset: int, outer) -> None:  # noqa: ANN001
    """``y = acc.append(x)``, in-place methods (``x.pop()``) and additions made inside nested
    functions: each would change only the worker's copy of a notebook object."""
    statement_calls = {
        id(s.value)
        for s in _body_statements(body)
        if getattr(s, "_dm_accumulate", False) and isinstance(s, ast.Expr)
    }
    for node, shadow, own in walk_scoped(body):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        root = root_name(node.func.value)
        if root is None or root.id in shadow or not outer(node.func.value):
            continue
        name, method = root.id, node.func.attr
        if method in IN_PLACE_METHODS:
            facts.findings.append(F.IN_PLACE_METHOD.at(node, offset, name=name, method=method))
        elif method in ACCUMULATE_METHODS and id(node) not in statement_calls:
            kind = F.ACCUMULATE_AS_VALUE if own else F.ACCUMULATE_NESTED
            facts.findings.append(kind.at(node, offset, name=name, method=method))


def _refuse_accumulator_reads(body: list[ast.stmt], facts: BodyFacts, offset: int) -> None:
    reported: set[str] = set()
    for node, shadow, _own in walk_scoped(body):
        if not (isinstance(node, ast.Name) and node.id in facts.accumulators):
            continue
        if id(node) in facts.accumulate_roots or node.id in reported or node.id in shadow:
            continue
        if getattr(node, "_dm_aug_target", False):
            continue
        site = facts.accumulators[node.id]
        reported.add(node.id)
        facts.findings.append(
            F.ACCUMULATOR_READ.at(
                node, offset, name=node.id, added=site.lineno + offset, line=node.lineno + offset
            )
        )
