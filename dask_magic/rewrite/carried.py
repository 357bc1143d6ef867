"""Loop-carried state: body names read before the current item assigns them.

A small forward dataflow (definite assignment) over the loop body. In the serial loop such a
read sees the previous item's value. Two cases are told apart:

* **carried**: the read lies on the normal path (``total = total + x``, ``if s > best:``,
  a name assigned under an ``if`` and read after it). Its value is state that travels from
  item to item: the name lives in the notebook and its statements join the ordered part.
* **may-depend**: the read lies in an ``except`` handler (``print(path)`` after
  ``path = ...`` in the ``try``). The item usually assigned it; if it really did not, the
  item fails at run time with a message naming the line and the name.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from .scopes import COMPREHENSIONS, iter_body_scope, stored_names, targets, walk_with_loop_depth

if TYPE_CHECKING:
    from .analysis import BodyFacts


Assigned = frozenset[str] | None  # None: control never falls through (continue, raise, ...)


class LoopCarried:
    """Definite-assignment analysis over the loop body (a small forward dataflow).

    A body-local name read where this item has not surely assigned it would, in the serial
    loop, see the previous item's value. Reads inside lambdas and nested functions run later
    and are not checked.
    """

    def __init__(self, facts: BodyFacts) -> None:
        self.local = set(facts.local_names)
        self.facts = facts
        self.handler_depth = 0
        #: name -> its first read on the normal path (state carried from item to item)
        self.carried: dict[str, ast.Name] = {}
        #: name -> its first read inside an ``except`` handler (checked at run time)
        self.may_depend: dict[str, ast.Name] = {}

    def check(self, body: list[ast.stmt]) -> LoopCarried:
        self.block(body, frozenset(self.facts.target_names))
        for name in self.carried:
            self.may_depend.pop(name, None)
        return self

    # statements
    def block(self, stmts: list[ast.stmt], assigned: Assigned) -> Assigned:
        for stmt in stmts:
            if assigned is None:
                return None
            assigned = self.stmt(stmt, assigned)
        return assigned

    def stmt(self, s: ast.stmt, a: frozenset[str]) -> Assigned:
        if isinstance(s, (ast.Continue, ast.Break, ast.Return, ast.Raise)):
            self.leave(s, a)
            return None
        if isinstance(s, ast.If):
            a = self.expr(s.test, a)
            return _join(self.block(s.body, a), self.block(s.orelse, a))
        if isinstance(s, (ast.For, ast.AsyncFor, ast.While)):
            return self.loop(s, a)
        if isinstance(s, ast.Try) or type(s).__name__ == "TryStar":
            return self.try_(s, a)  # type: ignore[arg-type]
        if isinstance(s, (ast.With, ast.AsyncWith)):
            return self.with_(s, a)
        if isinstance(s, ast.Match):
            return self.match(s, a)
        return self.simple(s, a)

    def leave(
        self, s: ast.Continue | ast.Break | ast.Return | ast.Raise, a: frozenset[str]
    ) -> None:
        """A statement that leaves the block: only the values it reads on the way."""
        if isinstance(s, ast.Return):
            values = [s.value]
        elif isinstance(s, ast.Raise):
            values = [s.exc, s.cause]
        else:
            values = []
        for value in values:
            if value:
                self.expr(value, a)

    def with_(self, s: ast.With | ast.AsyncWith, a: frozenset[str]) -> Assigned:
        for item in s.items:
            a = self.expr(item.context_expr, a)
            if item.optional_vars is not None:
                a = self.store(item.optional_vars, a)
        return self.block(s.body, a)

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
        return a | {n for n, _ in stored_names(s)}

    def loop(self, s: ast.For | ast.AsyncFor | ast.While, a: frozenset[str]) -> frozenset[str]:
        if isinstance(s, ast.While):
            a = self.expr(s.test, a)
            inner = a
        else:
            a = self.expr(s.iter, a)
            inner = self.store(s.target, a)
        self.block(s.body, inner)  # zero iterations are possible: nothing it assigns is sure
        has_break = any(isinstance(n, ast.Break) for n, d in walk_with_loop_depth(s.body) if d == 0)
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
            self.handler_depth += 1
            end = self.block(handler.body, h)
            self.handler_depth -= 1
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
            c = a | {n for node in ast.walk(case.pattern) for n, _ in stored_names(node)}
            if case.guard is not None:
                c = self.expr(case.guard, c)
            ends.append(self.block(case.body, c))
            irrefutable |= (
                isinstance(case.pattern, ast.MatchAs)
                and case.pattern.pattern is None
                and case.guard is None
            )
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
        if isinstance(node, COMPREHENSIONS):
            return self.comprehension(node, a)
        return self.expr_children(node, a)

    def expr_children(self, node: ast.AST, a: frozenset[str]) -> frozenset[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(
                child, (ast.expr, ast.keyword, ast.arg, ast.arguments, ast.comprehension)
            ):
                a = self.expr(child, a)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                a = self.expr(child, a)
        return a

    def comprehension(self, node: ast.AST, a: frozenset[str]) -> frozenset[str]:
        shadow: set[str] = set()
        for gen in node.generators:  # type: ignore[attr-defined]
            a = self.expr(gen.iter, a) if not shadow else self._with_shadow(gen.iter, a, shadow)
            shadow |= {n for n, _ in targets(gen.target)}
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
        if name not in self.local or name in a:
            return
        found = self.may_depend if self.handler_depth else self.carried
        found.setdefault(name, node)


def _join(*ends: Assigned) -> Assigned:
    live = [e for e in ends if e is not None]
    if not live:
        return None
    result = live[0]
    for e in live[1:]:
        result = result & e
    return result
