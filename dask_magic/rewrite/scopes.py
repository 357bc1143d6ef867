"""Scope helpers shared by the analysis passes: which nodes belong to the loop body's own
scope, which names a node binds, and which names nested scopes shadow."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def root_name(node: ast.expr) -> ast.Name | None:
    """The Name at the root of ``a.b[c].d``, or None if the chain starts elsewhere."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node if isinstance(node, ast.Name) else None


def iter_body_scope(nodes: Sequence[ast.AST]) -> Iterator[ast.AST]:
    """Every node of ``nodes`` that belongs to the body's own scope (nested scopes skipped,
    except the parts of them evaluated in the body's scope: decorators, defaults, the first
    iterable of a comprehension)."""
    stack: list[ast.AST] = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        children: list[ast.AST]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            children = [
                *node.decorator_list,
                *node.args.defaults,
                *filter(None, node.args.kw_defaults),
            ]
        elif isinstance(node, ast.Lambda):
            children = [*node.args.defaults, *filter(None, node.args.kw_defaults)]
        elif isinstance(node, ast.ClassDef):
            children = [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
        elif isinstance(node, COMPREHENSIONS):
            children = [node.generators[0].iter]
        else:
            children = list(ast.iter_child_nodes(node))
        stack.extend(reversed(children))


def stored_names(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
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


def targets(node: ast.expr) -> Iterator[tuple[str, ast.AST]]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            yield sub.id, sub


def walk_with_loop_depth(body: Sequence[ast.AST]) -> Iterator[tuple[ast.AST, int]]:
    """Body-scope nodes with how many nested loops enclose them (break/continue belong there)."""
    stack: list[tuple[ast.AST, int]] = [(s, 0) for s in reversed(body)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        if isinstance(node, (*_SCOPES, *COMPREHENSIONS)):
            continue  # their own scope: return/yield/await there are fine
        inner = depth + 1 if isinstance(node, (ast.For, ast.While, ast.AsyncFor)) else depth
        for child in reversed(list(ast.iter_child_nodes(node))):
            in_else = isinstance(node, (ast.For, ast.While)) and child in node.orelse
            stack.append((child, depth if in_else else inner))


def walk_scoped(body: Sequence[ast.AST]) -> Iterator[tuple[ast.AST, frozenset[str], bool]]:
    """Every node under ``body`` with the names bound by the nested scopes around it, and
    whether it lies in the body's own scope."""
    stack: list[tuple[ast.AST, frozenset[str], bool]] = [
        (s, frozenset(), True) for s in reversed(body)
    ]
    while stack:
        node, shadow, own = stack.pop()
        yield node, shadow, own
        inner, inner_own = shadow, own
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner, inner_own = shadow | scope_bindings(node), False
        elif isinstance(node, COMPREHENSIONS):
            inner, inner_own = (
                shadow | {n for g in node.generators for n, _ in targets(g.target)},
                False,
            )
        elif isinstance(node, ast.ClassDef):
            inner_own = False
        for child in reversed(list(ast.iter_child_nodes(node))):
            stack.append((child, inner, inner_own))


def scope_bindings(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> frozenset[str]:
    args = fn.args
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    if not isinstance(fn, ast.Lambda):
        names |= {n for node in iter_body_scope(fn.body) for n, _ in stored_names(node)}
    return frozenset(names)
