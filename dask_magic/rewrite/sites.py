"""Where in the loop body a name may be changed in place: the line a change report names.

The workers see *that* an object changed (its digest differs after the batch), not *where*.
`change_line` gives the first line of the body that can change the object bound to a name:
the receiver of a method call (``model.fit(X)``, ``item.data.append(x)``), an argument of a
call (``normalise(big)``), or the root of an assignment or deletion target (``d["x"] = 1``,
``obj.attr += 1``, ``del d[k]``). It is a guess with the code's own words, never a proof:
the line is shown as "line 5: ``model.fit(x)``" next to the report.

Pure stdlib.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

__all__ = ["change_line"]


def change_line(body: ast.AST, name: str) -> int | None:
    """The first line under ``body`` that may change ``name``'s object in place, or None.

    A call made for its effect (a statement of its own, ``model.fit(X)``) and an assignment
    into the object come before a call whose value is used (``total = big.sum()``).
    """
    sites = sorted((rank, node.lineno) for rank, node in _change_sites(body, name))
    return sites[0][1] if sites else None


def _change_sites(body: ast.AST, name: str) -> Iterator[tuple[int, ast.expr | ast.stmt]]:
    """``(rank, node)``: rank 0 for a statement that changes ``name``, 1 for a mere call."""
    effects = {id(s.value) for s in ast.walk(body) if isinstance(s, ast.Expr)}
    for node in ast.walk(body):
        if isinstance(node, ast.Call):
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if _rooted_at(node.func, name) or any(_is_name(a, name) for a in arguments):
                yield (0 if id(node) in effects else 1), node
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            if any(_rooted_at(t, name) for t in targets):
                yield 0, node


def _is_name(node: ast.AST, name: str) -> bool:
    if isinstance(node, ast.Starred):
        node = node.value
    return isinstance(node, ast.Name) and node.id == name


def _rooted_at(node: ast.AST, name: str) -> bool:
    """``name.a[k].b`` (an attribute or item of ``name``, not ``name`` itself)."""
    if not isinstance(node, (ast.Attribute, ast.Subscript)):
        return False
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return isinstance(node, ast.Name) and node.id == name
