"""Read-only analysis of a ``%%parallel_for`` cell: what the loop body binds, reads and adds to.

Nothing here changes the tree or raises: every check returns `Finding` objects (pyflakes
style), and `analyze_body` returns a `BodyFacts` the transformer builds on.

Scopes: the loop body's own scope is the unit of analysis. Nested functions, lambdas, classes
and comprehensions are their own scopes; their bindings are not the body's, but what they read
and what they add to accumulators still matters.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from dask_magic.errors import Finding

from . import findings as F
from .carried import LoopCarried
from .hoist import hoist, nothing_parallel
from .scopes import COMPREHENSIONS, iter_body_scope, stored_names, targets, walk_with_loop_depth
from .split import Split, Splitter


@dataclass
class BodyFacts:
    """What the analysis learnt about the loop body."""

    target_names: list[str]
    local_names: dict[str, ast.AST] = field(default_factory=dict)  # name -> first binding
    accumulators: dict[str, ast.AST] = field(default_factory=dict)  # `x += v` on notebook names
    aug_targets: set[int] = field(default_factory=set)  # id() of the Name of each `x op= v`
    deletable: set[str] = field(default_factory=set)  # names `del`-ed or bound by `except as`
    carried: dict[str, ast.Name] = field(default_factory=dict)  # name -> first carried read
    may_depend: dict[str, ast.Name] = field(default_factory=dict)  # read in `except` first
    split: Split = field(default_factory=Split)
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


def analyze_body(
    loop: ast.For, offset: int, kinds: Mapping[str, str] | None = None, own_keys: bool = True
) -> BodyFacts:
    """Everything `transform` needs, plus every refusal found in the loop body.

    ``kinds`` describes notebook names by their runtime type (`dask_magic.contract` KIND_*);
    ``own_keys=False`` runs ``df[c] = f(df[c])`` updates in the ordered part instead.
    """
    facts = BodyFacts(target_names=[n for n, _ in targets(loop.target)])
    facts.aug_targets = {
        id(n.target) for n in ast.walk(ast.Module(body=loop.body, type_ignores=[]))
        if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)
    }  # fmt: skip
    for name, node in targets(loop.target):
        facts.local_names.setdefault(name, node)
    facts.findings += _control_flow(loop.body, offset)
    _collect_bindings(loop.body, facts)
    _refuse_del_outer(loop.body, facts, offset)
    carried = LoopCarried(facts).check(loop.body)
    facts.carried, facts.may_depend = carried.carried, carried.may_depend
    splitter = Splitter(
        loop,
        set(facts.local_names),
        set(facts.accumulators),
        set(facts.carried),
        kinds or {},
        own_keys,
    )
    facts.split = splitter.run()
    hoist(loop.body, facts.split)
    refusal = nothing_parallel(loop.body, facts.split, facts.carried, offset, kinds or {})
    if refusal is not None:
        facts.findings.append(refusal)
    facts.findings.sort(key=lambda f: (f.lineno, f.col))
    return facts


# -- control flow: break, return, yield, await, global, IPython ----------------------------


def _control_flow(body: list[ast.stmt], offset: int) -> list[Finding]:
    found = [
        *_jumps_and_yields(body, offset),
        *_globals_and_ipython(body, offset),
        *_nonlocal_in_functions(body, offset),
    ]
    return _dedupe(found)


def _jumps_and_yields(body: list[ast.stmt], offset: int) -> Iterator[Finding]:
    """``break`` of the parallel loop, ``return``, ``yield``/``await``, ``global``/``nonlocal``."""
    for node, depth in walk_with_loop_depth(body):
        if isinstance(node, ast.Break) and depth == 0:
            yield F.BREAK.at(node, offset)
        elif isinstance(node, ast.Return):
            yield F.RETURN.at(node, offset)
        elif isinstance(node, (ast.Yield, ast.YieldFrom, ast.Await)):
            what = {"Yield": "yield", "YieldFrom": "yield from", "Await": "await"}[
                type(node).__name__
            ]
            yield F.YIELD_AWAIT.at(node, offset, what=what)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            keyword = "global" if isinstance(node, ast.Global) else "nonlocal"
            yield F.GLOBAL.at(node, offset, what=f"{keyword} {', '.join(node.names)}")


def _globals_and_ipython(body: list[ast.stmt], offset: int) -> Iterator[Finding]:
    """``global`` in a nested function too, and ``get_ipython()`` anywhere under the body."""
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.Global) and node not in body:
            yield F.GLOBAL.at(node, offset, what=f"global {', '.join(node.names)}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "get_ipython"
        ):
            yield F.IPYTHON_SYNTAX.at(node, offset)


def _nonlocal_in_functions(body: list[ast.stmt], offset: int) -> Iterator[Finding]:
    """`nonlocal` in a function defined directly in the body would bind the generated
    function's locals; in the serial cell it is a SyntaxError at module level."""
    for fn in iter_body_scope(body):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in iter_body_scope(fn.body):
                if isinstance(node, ast.Nonlocal):
                    yield F.GLOBAL.at(node, offset, what=f"nonlocal {', '.join(node.names)}")


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
        else:
            _note_binding(node, facts)
    # walrus inside comprehensions binds in the body's scope (PEP 572)
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, COMPREHENSIONS):
            for sub in ast.walk(node):
                if isinstance(sub, ast.NamedExpr):
                    facts.local_names.setdefault(sub.target.id, sub)
    for name, node in aug_names.items():
        if name not in facts.local_names:
            facts.accumulators.setdefault(name, node)


def _note_binding(node: ast.AST, facts: BodyFacts) -> None:
    """The names ``node`` binds in the body's scope, and those a ``del`` may unbind."""
    if isinstance(node, ast.NamedExpr):
        facts.local_names.setdefault(node.target.id, node)
    for name, where in stored_names(node):
        if id(where) not in facts.aug_targets:
            facts.local_names.setdefault(name, where)
    if isinstance(node, ast.ExceptHandler) and node.name:
        facts.deletable.add(node.name)
    if isinstance(node, ast.Delete):
        facts.deletable.update(t.id for t in node.targets if isinstance(t, ast.Name))


# -- uses of notebook (outer) names ------------------------------------------------------------


def _refuse_del_outer(body: list[ast.stmt], facts: BodyFacts, offset: int) -> None:
    """``del name`` of a notebook name: the serial loop would unbind it in the notebook."""
    for node in iter_body_scope(body):
        if isinstance(node, ast.Delete):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id not in facts.local_names:
                    facts.findings.append(F.DEL_OUTER.at(node, offset, name=target.id))
