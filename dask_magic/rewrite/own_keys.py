"""Own-key updates, ``df[c] = f(df[c])``: a notebook object used only at the item's own key.

Each item then reads and replaces its own column, so the update runs on the worker and only
the new value travels; the kernel stores it under the item's key.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from dask_magic import contract as C

from .scopes import targets
from .statements import writes


def own_key_roots(loop: ast.For, local: set[str], kinds: Mapping[str, str]) -> dict[str, str]:
    """Notebook names used only as ``name[c]`` with ``c`` the loop target, and stored to.

    Maps each such name to the target name ``c``.
    """
    own = {}
    for name, sites in _uses(loop, local).items():
        if kinds.get(name, C.KIND_OBJECT) not in C.MUTABLE_KINDS:
            continue
        keys = {key for key, _ in sites if key is not None}
        if (
            all(key is not None for key, _ in sites)
            and any(stored for _, stored in sites)
            and len(keys) == 1
        ):
            own[name] = keys.pop()
    return own


def _uses(loop: ast.For, local: set[str]) -> dict[str, list[tuple[str | None, bool]]]:
    """Per notebook name, each use: (the key's name where it is ``name[c]``, else None; stored)."""
    loop_targets = {n for n, _ in targets(loop.target)}
    rebound = writes(loop.body)
    parents = {id(child): node for node in ast.walk(loop) for child in ast.iter_child_nodes(node)}
    uses: dict[str, list[tuple[str | None, bool]]] = {}
    for node in ast.walk(ast.Module(body=loop.body, type_ignores=[])):
        if not isinstance(node, ast.Name) or node.id in local:
            continue
        parent = parents.get(id(node))
        site: tuple[str | None, bool] = (None, False)
        if isinstance(parent, ast.Subscript) and parent.value is node:
            key = parent.slice
            if isinstance(key, ast.Name) and key.id in loop_targets and key.id not in rebound:
                stored = isinstance(parent.ctx, ast.Store)
                if not stored or _single_store(parents.get(id(parent)), parent):
                    site = (key.id, stored)
                # else `a[c] = b[c] = v` or a tuple target: the ordered part
        uses.setdefault(node.id, []).append(site)
    return uses


def _single_store(stmt: ast.AST | None, target: ast.AST) -> bool:
    if isinstance(stmt, ast.Assign):
        return stmt.targets == [target]
    return isinstance(stmt, ast.AugAssign) and stmt.target is target
