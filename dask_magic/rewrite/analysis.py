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

#: Methods whose statement-level call on a notebook object is recorded on the worker and
#: replayed in the kernel in item order (DESIGN §3 "accumulators").
ACCUMULATE_METHODS = frozenset({"append", "extend", "add", "update"})
#: Methods known to change their receiver in place in a way that is not an accumulation.
IN_PLACE_METHODS = frozenset({
    "pop", "remove", "insert", "clear", "sort", "reverse", "popitem", "setdefault",
    "discard", "appendleft", "extendleft", "popleft", "difference_update",
    "intersection_update", "symmetric_difference_update",
})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def root_name(node: ast.expr) -> ast.Name | None:
    """The Name at the root of ``a.b[c].d``, or None if the chain starts elsewhere."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node if isinstance(node, ast.Name) else None


def iter_body_scope(nodes: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of ``nodes`` that belongs to the body's own scope (nested scopes skipped,
    except the parts of them evaluated in the body's scope: decorators, defaults, the first
    iterable of a comprehension)."""
    stack: list[ast.AST] = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            children = [*node.decorator_list, *node.args.defaults, *filter(None, node.args.kw_defaults)]
        elif isinstance(node, ast.Lambda):
            children = [*node.args.defaults, *filter(None, node.args.kw_defaults)]
        elif isinstance(node, ast.ClassDef):
            children = [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
        elif isinstance(node, _COMPREHENSIONS):
            children = [node.generators[0].iter]
        else:
            children = list(ast.iter_child_nodes(node))
        stack.extend(reversed(children))


def _stored_names(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """Names a single body-scope node binds (not counting ``x += ...`` on a plain name)."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        yield node.id, node
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            if alias.name != "*":
                yield (alias.asname or alias.name.split(".")[0]), node
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.name, node
    elif isinstance(node, ast.ExceptHandler) and node.name:
        yield node.name, node
    elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
        yield node.name, node
    elif isinstance(node, ast.MatchMapping) and node.rest:
        yield node.rest, node


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
    mark_aug_targets(loop.body)
    facts = BodyFacts(target_names=[n for n, _ in _targets(loop.target)])
    for name, node in _targets(loop.target):
        facts.local_names.setdefault(name, node)
    facts.findings += _control_flow(loop.body, offset)
    _collect_bindings(loop.body, facts)
    _classify_outer_uses(loop.body, facts, offset)
    facts.findings += LoopCarried(facts, offset).check(loop.body)
    facts.findings.sort(key=lambda f: (f.lineno, f.col))
    return facts


def _targets(node: ast.expr) -> Iterator[tuple[str, ast.AST]]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            yield sub.id, sub


# -- control flow: break, return, yield, await, global, IPython ----------------------------

def _control_flow(body: list[ast.stmt], offset: int) -> list[Finding]:
    found: list[Finding] = []
    for node in _walk_with_loop_depth(body):
        node, depth = node
        if isinstance(node, ast.Break) and depth == 0:
            found.append(F.BREAK.at(node, offset))
        elif isinstance(node, ast.Return):
            found.append(F.RETURN.at(node, offset))
        elif isinstance(node, (ast.Yield, ast.YieldFrom, ast.Await)):
            what = {"Yield": "yield", "YieldFrom": "yield from", "Await": "await"}[type(node).__name__]
            found.append(F.YIELD_AWAIT.at(node, offset, what=what))
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            what = f"{'global' if isinstance(node, ast.Global) else 'nonlocal'} {', '.join(node.names)}"
            found.append(F.GLOBAL.at(node, offset, what=what))
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.Global) and node not in body:
            found.append(F.GLOBAL.at(node, offset, what=f"global {', '.join(node.names)}"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "get_ipython":
            found.append(F.IPYTHON_SYNTAX.at(node, offset))
    for fn in iter_body_scope(body):
        # `nonlocal` in a function defined directly in the body would bind the generated
        # function's locals; in the serial cell it is a SyntaxError at module level
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in iter_body_scope(fn.body):
                if isinstance(node, ast.Nonlocal):
                    found.append(F.GLOBAL.at(node, offset, what=f"nonlocal {', '.join(node.names)}"))
    return _dedupe(found)


def _dedupe(found: list[Finding]) -> list[Finding]:
    seen, unique = set(), []
    for f in found:
        key = (f.code, f.lineno, f.col)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _walk_with_loop_depth(body: list[ast.stmt]) -> Iterator[tuple[ast.AST, int]]:
    """Body-scope nodes with how many nested loops enclose them (break/continue belong there)."""
    stack: list[tuple[ast.AST, int]] = [(s, 0) for s in reversed(body)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        if isinstance(node, (*_SCOPES, *_COMPREHENSIONS)):
            continue  # their own scope: return/yield/await there are fine
        inner = depth + 1 if isinstance(node, (ast.For, ast.While, ast.AsyncFor)) else depth
        for child in reversed(list(ast.iter_child_nodes(node))):
            in_else = isinstance(node, (ast.For, ast.While)) and child in node.orelse
            stack.append((child, depth if in_else else inner))


# -- bindings --------------------------------------------------------------------------------

def _collect_bindings(body: list[ast.stmt], facts: BodyFacts) -> None:
    aug_names: dict[str, ast.AST] = {}
    for node in iter_body_scope(body):
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            aug_names.setdefault(node.target.id, node)
            continue
        if isinstance(node, ast.NamedExpr):
            facts.local_names.setdefault(node.target.id, node)
        for name, where in _stored_names(node):
            if getattr(where, "_dm_aug_target", False):
                continue
            facts.local_names.setdefault(name, where)
        if isinstance(node, ast.ExceptHandler) and node.name:
            facts.deletable.add(node.name)
        if isinstance(node, ast.Delete):
            facts.deletable.update(t.id for t in node.targets if isinstance(t, ast.Name))
    # walrus inside comprehensions binds in the body's scope (PEP 572)
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, _COMPREHENSIONS):
            for sub in ast.walk(node):
                if isinstance(sub, ast.NamedExpr):
                    facts.local_names.setdefault(sub.target.id, sub)
    for name, node in aug_names.items():
        if name not in facts.local_names:
            facts.accumulators.setdefault(name, node)


def mark_aug_targets(body: list[ast.stmt]) -> None:
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
        outer_targets = [t for t in stmt.targets if isinstance(t, (ast.Subscript, ast.Attribute)) and outer(t)]
        if outer_targets and len(stmt.targets) > 1:
            add(F.ACCUMULATE_CHAINED.at(stmt, offset, name=root_name(outer_targets[0]).id))
        for target in outer_targets:
            if isinstance(target, ast.Attribute):
                name = root_name(target).id
                add(F.OUTER_MUTATION.at(target, offset, what=f"{ast.unparse(target)} = ...", name=name))
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
                add(F.OUTER_MUTATION.at(target, offset, what=f"del {ast.unparse(target)}", name=name))


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


def walk_scoped(body: list[ast.stmt]) -> Iterator[tuple[ast.AST, frozenset[str], bool]]:
    """Every node under ``body`` with the names bound by the nested scopes around it, and
    whether it lies in the body's own scope."""
    stack: list[tuple[ast.AST, frozenset[str], bool]] = [(s, frozenset(), True) for s in reversed(body)]
    while stack:
        node, shadow, own = stack.pop()
        yield node, shadow, own
        inner, inner_own = shadow, own
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner, inner_own = shadow | _scope_bindings(node), False
        elif isinstance(node, _COMPREHENSIONS):
            inner, inner_own = shadow | {n for g in node.generators for n, _ in _targets(g.target)}, False
        elif isinstance(node, ast.ClassDef):
            inner_own = False
        for child in reversed(list(ast.iter_child_nodes(node))):
            stack.append((child, inner, inner_own))


def _scope_bindings(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> frozenset[str]:
    args = fn.args
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    if not isinstance(fn, ast.Lambda):
        names |= {n for node in iter_body_scope(fn.body) for n, _ in _stored_names(node)}
    return frozenset(names)


def _refuse_value_uses(body: list[ast.stmt], facts: BodyFacts, offset: int, outer) -> None:  # noqa: ANN001
    """``y = acc.append(x)``, in-place methods (``x.pop()``) and additions made inside nested
    functions: each would change only the worker's copy of a notebook object."""
    statement_calls = {
        id(s.value) for s in _body_statements(body)
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
            F.ACCUMULATOR_READ.at(node, offset, name=node.id, added=site.lineno + offset, line=node.lineno + offset)
        )


# -- loop-carried state: reads of body names before this item assigns them ----------------------

Assigned = frozenset[str] | None  # None: control never falls through (continue, raise, ...)


class LoopCarried:
    """Definite-assignment analysis over the loop body (a small forward dataflow).

    A body-local name read where this item has not surely assigned it would, in the serial
    loop, see the previous item's value: state carried between items, which a parallel run
    cannot reproduce. Reads inside lambdas and nested functions run later and are not checked.
    """

    def __init__(self, facts: BodyFacts, offset: int) -> None:
        self.local = set(facts.local_names)
        self.facts = facts
        self.offset = offset
        self.found: dict[str, Finding] = {}

    def check(self, body: list[ast.stmt]) -> list[Finding]:
        self.block(body, frozenset(self.facts.target_names))
        return list(self.found.values())

    # statements
    def block(self, stmts: list[ast.stmt], assigned: Assigned) -> Assigned:
        for stmt in stmts:
            if assigned is None:
                return None
            assigned = self.stmt(stmt, assigned)
        return assigned

    def stmt(self, s: ast.stmt, a: frozenset[str]) -> Assigned:  # noqa: PLR0911
        if isinstance(s, (ast.Continue, ast.Break, ast.Return)):
            if isinstance(s, ast.Return) and s.value:
                self.expr(s.value, a)
            return None
        if isinstance(s, ast.Raise):
            for e in (s.exc, s.cause):
                if e:
                    self.expr(e, a)
            return None
        if isinstance(s, ast.If):
            a = self.expr(s.test, a)
            return _join(self.block(s.body, a), self.block(s.orelse, a))
        if isinstance(s, (ast.For, ast.AsyncFor, ast.While)):
            return self.loop(s, a)
        if isinstance(s, ast.Try) or type(s).__name__ == "TryStar":
            return self.try_(s, a)  # type: ignore[arg-type]
        if isinstance(s, (ast.With, ast.AsyncWith)):
            for item in s.items:
                a = self.expr(item.context_expr, a)
                if item.optional_vars is not None:
                    a = self.store(item.optional_vars, a)
            return self.block(s.body, a)
        if isinstance(s, ast.Match):
            return self.match(s, a)
        return self.simple(s, a)

    def simple(self, s: ast.stmt, a: frozenset[str]) -> frozenset[str]:
        if isinstance(s, ast.Assign):
            a = self.expr(s.value, a)
            for t in s.targets:
                a = self.store(t, a)
            return a
        if isinstance(s, ast.AnnAssign):
            if s.value is None:
                return a
            return self.store(s.target, self.expr(s.value, a))
        if isinstance(s, ast.AugAssign):
            if isinstance(s.target, ast.Name):
                self.read(s.target, a)
                return self.expr(s.value, a) | {s.target.id}
            return self.expr(s.value, self.expr(s.target, a))
        if isinstance(s, ast.Delete):
            for t in s.targets:
                if isinstance(t, ast.Name):
                    self.read(t, a)
                    a = a - {t.id}
                else:
                    a = self.expr(t, a)
            return a
        a = self.expr_children(s, a)
        return a | {n for n, _ in _stored_names(s)}

    def loop(self, s: ast.For | ast.While, a: frozenset[str]) -> frozenset[str]:
        if isinstance(s, ast.While):
            a = self.expr(s.test, a)
            inner = a
        else:
            a = self.expr(s.iter, a)
            inner = self.store(s.target, a)
        self.block(s.body, inner)  # zero iterations are possible: nothing it assigns is sure
        has_break = any(isinstance(n, ast.Break) for n, d in _walk_with_loop_depth(s.body) if d == 0)
        after_else = self.block(s.orelse, a)
        return a if has_break or after_else is None else after_else

    def try_(self, s: ast.Try, a: frozenset[str]) -> Assigned:
        body_end = self.block(s.body, a)
        ends = [self.block(s.orelse, body_end) if body_end is not None else None]
        for handler in s.handlers:
            h = a
            if handler.type is not None:
                h = self.expr(handler.type, h)
            if handler.name:
                h = h | {handler.name}
            end = self.block(handler.body, h)
            ends.append(None if end is None else end - {handler.name} if handler.name else end)
        joined = _join(*ends)
        final_end = self.block(s.finalbody, a) if s.finalbody else a
        if joined is None or final_end is None:
            return None
        return joined | (final_end - a)

    def match(self, s: ast.Match, a: frozenset[str]) -> Assigned:
        a = self.expr(s.subject, a)
        ends: list[Assigned] = []
        irrefutable = False
        for case in s.cases:
            c = a | {n for node in ast.walk(case.pattern) for n, _ in _stored_names(node)}
            if case.guard is not None:
                c = self.expr(case.guard, c)
            ends.append(self.block(case.body, c))
            irrefutable |= isinstance(case.pattern, ast.MatchAs) and case.pattern.pattern is None and case.guard is None
        if not irrefutable:
            ends.append(a)
        return _join(*ends)

    # expressions, in evaluation order
    def expr(self, node: ast.AST, a: frozenset[str]) -> frozenset[str]:
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                self.read(node, a)
            return a
        if isinstance(node, ast.NamedExpr):
            return self.expr(node.value, a) | {node.target.id}
        if isinstance(node, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for part in iter_body_scope([node]):
                if part is not node and isinstance(part, ast.expr):
                    a = self.expr(part, a)
            return a
        if isinstance(node, _COMPREHENSIONS):
            return self.comprehension(node, a)
        return self.expr_children(node, a)

    def expr_children(self, node: ast.AST, a: frozenset[str]) -> frozenset[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.expr, ast.keyword, ast.arg, ast.arguments, ast.comprehension)):
                a = self.expr(child, a)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                a = self.expr(child, a)
        return a

    def comprehension(self, node: ast.AST, a: frozenset[str]) -> frozenset[str]:
        shadow: set[str] = set()
        for gen in node.generators:  # type: ignore[attr-defined]
            a = self.expr(gen.iter, a) if not shadow else self._with_shadow(gen.iter, a, shadow)
            shadow |= {n for n, _ in _targets(gen.target)}
            for cond in gen.ifs:
                a = self._with_shadow(cond, a, shadow)
        elts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]  # type: ignore[attr-defined]
        for elt in elts:
            a = self._with_shadow(elt, a, shadow)
        return a

    def _with_shadow(self, node: ast.AST, a: frozenset[str], shadow: set[str]) -> frozenset[str]:
        return self.expr(node, a | frozenset(shadow)) - (frozenset(shadow) - a)

    def store(self, target: ast.expr, a: frozenset[str]) -> frozenset[str]:
        if isinstance(target, ast.Name):
            return a | {target.id}
        if isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                a = self.store(elt, a)
            return a
        if isinstance(target, ast.Starred):
            return self.store(target.value, a)
        return self.expr(target, a)  # obj.attr / obj[key]: their parts are reads

    def read(self, node: ast.Name, a: frozenset[str]) -> None:
        name = node.id
        if name in self.local and name not in a and name not in self.found:
            first = self.facts.local_names.get(name) or node
            self.found[name] = F.LOOP_CARRIED.at(
                node, self.offset, name=name, line=node.lineno + self.offset,
                assigned=getattr(first, "lineno", node.lineno) + self.offset,
            )


def _join(*ends: Assigned) -> Assigned:
    live = [e for e in ends if e is not None]
    if not live:
        return None
    result = live[0]
    for e in live[1:]:
        result = result & e
    return result
