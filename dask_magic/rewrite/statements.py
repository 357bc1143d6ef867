"""What a statement of the loop body is made of: its nested blocks, its header, the names it
reads and binds. The split (`split.py`) and the hoisting pass (`hoist.py`) ask these."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence

from .scopes import iter_body_scope, stored_names, targets, walk_scoped, walk_with_loop_depth


def blocks(stmt: ast.stmt) -> Iterator[list[ast.stmt]]:
    """The statement lists nested directly in a compound statement."""
    for name in ("body", "orelse", "finalbody"):
        value = getattr(stmt, name, None)
        if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield value
    for handler in getattr(stmt, "handlers", ()):
        yield handler.body
    for case in getattr(stmt, "cases", ()):
        yield case.body


def is_compound(stmt: ast.stmt) -> bool:
    return any(True for _ in blocks(stmt))


def header(stmt: ast.stmt) -> list[ast.AST]:
    """The parts of a compound statement evaluated by the statement itself."""
    if isinstance(stmt, (ast.If, ast.While)):
        return [stmt.test]
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return [stmt.iter, stmt.target]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return list(stmt.items)
    if isinstance(stmt, ast.Match):
        return [
            stmt.subject,
            *(c.pattern for c in stmt.cases),
            *(c.guard for c in stmt.cases if c.guard),
        ]
    parts: list[ast.AST] = []
    for handler in getattr(stmt, "handlers", ()):  # try: the handlers' types and names
        parts.append(handler)
    return parts


def header_nodes(stmt: ast.stmt) -> list[ast.AST]:
    found: list[ast.AST] = []
    for part in header(stmt):
        if isinstance(part, ast.ExceptHandler):
            found += [part.type] if part.type is not None else []
        else:
            found.append(part)
    return found


def reads(nodes: Sequence[ast.AST]) -> set[str]:
    """Names loaded anywhere under ``nodes`` (nested scopes too, minus what they shadow)."""
    found = set()
    for node, shadow, _own in walk_scoped(nodes):
        if (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, (ast.Load, ast.Del))
            and node.id not in shadow
        ):
            found.add(node.id)
    return found


def reads_except(nodes: Sequence[ast.AST], skip: set[int]) -> set[str]:
    """`reads` for the fast path: loads only, and not the nodes whose id() is in ``skip``."""
    found = set()
    for node, shadow, _own in walk_scoped(nodes):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in shadow:
            if id(node) not in skip:
                found.add(node.id)
    return found


def writes(nodes: Sequence[ast.AST]) -> set[str]:
    """Names bound in the body's scope by ``nodes`` (all of a compound statement)."""
    found = {name for node in iter_body_scope(nodes) for name, _ in stored_names(node)}
    for node in ast.walk(
        ast.Module(body=[n for n in nodes if isinstance(n, ast.stmt)], type_ignores=[])
    ):
        if isinstance(node, ast.NamedExpr):
            found.add(node.target.id)
    return found


def header_writes(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return {n for n, _ in targets(stmt.target)}
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return {
            n for item in stmt.items if item.optional_vars for n, _ in targets(item.optional_vars)
        }
    names = {h.name for h in getattr(stmt, "handlers", ()) if h.name}
    for case in getattr(stmt, "cases", ()):
        names |= {n for node in ast.walk(case.pattern) for n, _ in stored_names(node)}
    return names


def jumps_out(stmt: ast.stmt) -> bool:
    """``stmt`` holds a ``continue``/``break`` of a loop around it."""
    return any(
        isinstance(n, (ast.Continue, ast.Break)) and d == 0 for n, d in walk_with_loop_depth([stmt])
    )


def store_keys(target: ast.expr) -> list[ast.expr]:
    """The key and container expressions along ``a.b[k1][k2]`` (what a store evaluates)."""
    found: list[ast.expr] = []
    node = target
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Subscript):
            found.append(node.slice)
        node = node.value
    return found


def binds(parts: list[ast.expr]) -> bool:
    """Whether a walrus under ``parts`` binds a name."""
    return any(isinstance(n, ast.NamedExpr) for p in parts for n in ast.walk(p))
