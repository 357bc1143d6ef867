"""Split the loop body into the parallel part and the ordered part.

Every statement of the body's own scope gets a *mode*:

* ``parallel``: runs on a worker, once per item;
* ``record``: an addition to a notebook object (``results.append(x)``, ``acc[k] = v``,
  ``total += x``): its values are computed on the worker and the operation is applied in
  the kernel in item order (the fast path of the ordered part);
* ``mirror``: a plain attribute store on a notebook object (``svc.C = C``): it runs on the
  worker, so that the rest of the item sees it, and is applied in the kernel in item order;
* ``ordered``: runs in the kernel, in item order, with the worker's values of the item's
  names; its sub-expressions that do not depend on kernel state are *hoisted*: computed on
  the worker, only their values travel.

Kernel state (`Split.kernel_names`) is what only the kernel holds: names carried from item to
item, names the ordered part assigns, notebook objects the ordered part changes, and notebook
names whose runtime kind must stay in the notebook (plots, open files, writers, ``display``).
A statement that reads or assigns kernel state is ordered; a compound statement whose header
does is ordered as a whole. The classification is iterated until nothing changes (kernel
state only grows).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from dask_magic import contract as C

from .scopes import (
    iter_body_scope,
    root_name,
    stored_names,
    targets,
    walk_scoped,
    walk_with_loop_depth,
)

PARALLEL, RECORD, MIRROR, ORDERED = "parallel", "record", "mirror", "ordered"

#: Methods whose statement-level call on a notebook object is recorded and replayed.
ACCUMULATE_METHODS = frozenset({"append", "extend", "add", "update"})
#: Methods known to change their receiver in place in a way that is not an accumulation.
IN_PLACE_METHODS = frozenset(
    {
        "pop", "remove", "insert", "clear", "sort", "reverse", "popitem", "setdefault",
        "discard", "appendleft", "extendleft", "popleft", "difference_update",
        "intersection_update", "symmetric_difference_update",
    }
)  # fmt: skip


@dataclass
class Split:
    """The modes of the body's statements and what the ordered part needs."""

    modes: dict[int, str] = field(default_factory=dict)  # id(stmt) -> mode
    kernel_names: set[str] = field(default_factory=set)
    hoisted: dict[int, list[ast.expr]] = field(default_factory=dict)  # id(ordered stmt) -> exprs
    own_keys: list[tuple[str, str]] = field(default_factory=list)  # (notebook name, target name)
    external: bool = False  # the ordered part touches plots, files or objects it cannot restore
    mirrored_roots: set[str] = field(default_factory=set)
    assigned: set[str] = field(default_factory=set)  # names the ordered part assigns or changes

    def mode(self, stmt: ast.stmt) -> str:
        return self.modes.get(id(stmt), PARALLEL)


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
    found = []
    for part in header(stmt):
        if isinstance(part, ast.ExceptHandler):
            found += [part.type] if part.type is not None else []
        else:
            found.append(part)
    return found


def reads(nodes: list[ast.AST]) -> set[str]:
    """Names loaded anywhere under ``nodes`` (nested scopes too, minus what they shadow)."""
    found = set()
    for node, shadow, _own in walk_scoped(nodes):  # type: ignore[arg-type]
        if (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, (ast.Load, ast.Del))
            and node.id not in shadow
        ):
            found.add(node.id)
    return found


def writes(nodes: list[ast.AST]) -> set[str]:
    """Names bound in the body's scope by ``nodes`` (all of a compound statement)."""
    found = {name for node in iter_body_scope(nodes) for name, _ in stored_names(node)}  # type: ignore[arg-type]
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


def body_statements(body: list[ast.stmt], split: Split) -> Iterator[ast.stmt]:
    """Statements of the body's scope, outer first; nothing inside an ordered compound."""
    for stmt in body:
        yield stmt
        if split.mode(stmt) == ORDERED:
            continue
        for block in blocks(stmt):
            yield from body_statements(block, split)


class Splitter:
    """Classify the statements of one loop body (see the module docstring)."""

    def __init__(self, loop: ast.For, local_names: set[str], accumulators: set[str],
                 carried: set[str], kinds: Mapping[str, str],
                 own_keys: bool = True) -> None:  # fmt: skip
        self.loop = loop
        self.local = local_names
        self.targets = {n for n, _ in targets(loop.target)}
        self.kinds = kinds
        self.split = Split()
        kernel = self.split.kernel_names
        kernel |= carried
        kernel |= {n for n, k in kinds.items() if k in C.KERNEL_KINDS}
        kernel |= accumulators
        self.own = self._own_key_roots() if own_keys else {}
        kernel -= set(self.own)
        self.split.own_keys = sorted(self.own.items())

    def outer(self, node: ast.expr) -> str | None:
        """The notebook name at the root of ``node`` (None for body-local or no name)."""
        root = root_name(node)
        return root.id if root is not None and root.id not in self.local else None

    # -- the fixpoint -------------------------------------------------------------------------
    def run(self) -> Split:
        changed = True
        while changed:
            changed = False
            for stmt in list(body_statements(self.loop.body, self.split)):
                mode = self._classify(stmt)
                if mode != self.split.mode(stmt):
                    self.split.modes[id(stmt)] = mode
                    changed = True
                if mode == ORDERED:
                    self._ordered_effects(stmt)
            changed |= self._continue_orders_the_rest()
        self.split.mirrored_roots = {
            self.outer(s.targets[0]) or ""
            for s in self._statements()
            if self.split.mode(s) == MIRROR  # type: ignore[attr-defined]
        }
        return self.split

    def _statements(self) -> Iterator[ast.stmt]:
        return body_statements(self.loop.body, self.split)

    def _ordered_effects(self, stmt: ast.stmt) -> None:
        kernel = self.split.kernel_names
        assigned = writes([stmt]) - self.targets
        kernel |= assigned
        self.split.assigned |= assigned
        changed = self._mutated_roots(stmt, ordered=True)
        kernel |= changed
        self.split.assigned |= changed  # a retry copies them back before it replays the items
        if self._touches_kernel_kinds(stmt):
            self.split.external = True

    def _classify(self, stmt: ast.stmt) -> str:
        kernel = self.split.kernel_names
        if self.split.mode(stmt) == ORDERED:
            return ORDERED
        if is_compound(stmt):
            parts = header_nodes(stmt)
            touched = reads(parts) | (header_writes(stmt) - self.targets)
            return ORDERED if touched & kernel else PARALLEL
        fast = self._fast_path(stmt)
        if fast is not None:
            return fast
        if self._mutated_roots(stmt) or (reads([stmt]) | (writes([stmt]) - self.targets)) & kernel:
            return ORDERED
        return PARALLEL

    # -- notebook objects --------------------------------------------------------------------
    def _fast_path(self, stmt: ast.stmt) -> str | None:
        """RECORD or MIRROR where ``stmt`` is such a form and reads no kernel state."""
        kernel = self.split.kernel_names
        receiver, values = self._record_parts(stmt)
        if receiver is not None:
            root = self.outer(receiver)
            skip = self._own_reads(stmt, root)
            parts = [*values, *_keys(receiver)]
            if reads_except(parts, skip) & kernel or _binds(parts) or self._mutated_roots(stmt):
                return ORDERED
            if root not in self.own:
                kernel.add(root)  # type: ignore[arg-type]
            return RECORD
        if self._is_mirror(stmt):
            value = stmt.value  # type: ignore[attr-defined]
            target = stmt.targets[0]  # type: ignore[attr-defined]
            root = self.outer(target)
            touched = reads([value]) | reads(_keys(target))
            if (touched | {root}) & kernel or root in touched or _binds([value]):
                return ORDERED  # `c.n = c.n + 1` carries state through the object
            return MIRROR
        return None

    def _record_parts(self, stmt: ast.stmt) -> tuple[ast.expr | None, list[ast.expr]]:
        """The receiver and value expressions of a recordable addition, or (None, [])."""
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            func = stmt.value.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr in ACCUMULATE_METHODS
                and self._plain_outer(func.value)
            ):
                call = stmt.value
                return func.value, [*call.args, *(k.value for k in call.keywords)]
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Subscript)
        ):
            if self._plain_outer(stmt.targets[0]):
                return stmt.targets[0], [stmt.value]
        if isinstance(stmt, ast.AugAssign):
            target = stmt.target
            if isinstance(target, ast.Name) and target.id not in self.local:
                return target, [stmt.value]
            if isinstance(target, ast.Subscript) and self._plain_outer(target):
                return target, [stmt.value]
        return None, []

    def _plain_outer(self, node: ast.expr) -> bool:
        root = self.outer(node)
        return root is not None and self.kinds.get(root, C.KIND_OBJECT) not in (
            C.KIND_MODULE,
            *C.KERNEL_KINDS,
        )

    def _is_mirror(self, stmt: ast.stmt) -> bool:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
            return False
        target = stmt.targets[0]
        if not (isinstance(target, ast.Attribute) and self._plain_outer(target)):
            return False
        node: ast.expr = target
        while isinstance(node, (ast.Attribute, ast.Subscript)):  # keys read twice: keep them simple
            if isinstance(node, ast.Subscript) and not isinstance(
                node.slice, (ast.Name, ast.Constant)
            ):
                return False
            node = node.value
        return True

    def _mutated_roots(self, stmt: ast.stmt, ordered: bool = False) -> set[str]:
        """Notebook objects ``stmt`` changes in a way only the kernel can do (an ``ordered``
        statement: every object it changes, the receiver of an addition too)."""
        roots: set[str] = set()
        if isinstance(stmt, ast.Assign):
            stores = [
                t
                for t in stmt.targets
                for t in ast.walk(t)
                if isinstance(t, (ast.Attribute, ast.Subscript))
            ]
            roots |= {r for t in stores if isinstance(t.ctx, ast.Store) and (r := self.outer(t))}
        elif isinstance(stmt, ast.AugAssign) and isinstance(
            stmt.target, (ast.Attribute, ast.Subscript)
        ):
            roots |= {r for r in [self.outer(stmt.target)] if r}
        elif isinstance(stmt, ast.Delete):
            roots |= {
                r for t in stmt.targets if not isinstance(t, ast.Name) and (r := self.outer(t))
            }
        for node, shadow, _own in walk_scoped([stmt]):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                method, root = node.func.attr, self.outer(node.func.value)
                if root is None or root in shadow or not self._plain_outer(node.func.value):
                    continue
                if method in IN_PLACE_METHODS or method in ACCUMULATE_METHODS:
                    roots.add(root)
        if not ordered:  # the receiver of the fast path itself is replayed, not lost
            receiver = self._record_parts(stmt)[0]
            if receiver is None and self._is_mirror(stmt):
                receiver = stmt.targets[0]  # type: ignore[attr-defined]
            if receiver is not None:
                roots.discard(self.outer(receiver))
        return roots - set(self.own)

    def _touches_kernel_kinds(self, stmt: ast.stmt) -> bool:
        names = reads([stmt])
        if any(
            self.kinds.get(n) in C.KERNEL_KINDS
            for n in names
            if n not in self.local or n in self.targets
        ):
            return True
        return False

    # -- own-key updates: df[c] = f(df[c]) ----------------------------------------------------
    def _own_key_roots(self) -> dict[str, str]:
        """Notebook names used only as ``name[c]`` with ``c`` the loop target, and stored to."""
        uses: dict[str, list[tuple[ast.Subscript | None, bool]]] = {}
        parents = {
            id(child): node for node in ast.walk(self.loop) for child in ast.iter_child_nodes(node)
        }
        rebound = writes(self.loop.body)
        for node in ast.walk(ast.Module(body=self.loop.body, type_ignores=[])):
            if not isinstance(node, ast.Name) or node.id in self.local:
                continue
            parent = parents.get(id(node))
            keyed = isinstance(parent, ast.Subscript) and parent.value is node
            key = parent.slice if keyed else None  # type: ignore[union-attr]
            ok = (
                keyed
                and isinstance(key, ast.Name)
                and key.id in self.targets
                and key.id not in rebound
            )
            stored = ok and isinstance(parent.ctx, ast.Store)  # type: ignore[union-attr]
            if stored and not _single_store(parents.get(id(parent)), parent):
                ok = stored = False  # `a[c] = b[c] = v` or a tuple target: the ordered part
            uses.setdefault(node.id, []).append((parent if ok else None, stored))
        own = {}
        for name, sites in uses.items():
            if self.kinds.get(name, C.KIND_OBJECT) not in C.MUTABLE_KINDS:
                continue
            keys = {s.slice.id for s, _ in sites if s is not None}  # type: ignore[attr-defined]
            if (
                all(s is not None for s, _ in sites)
                and any(stored for _, stored in sites)
                and len(keys) == 1
            ):
                own[name] = keys.pop()
        return own

    def _own_reads(self, stmt: ast.stmt, root: str | None) -> set[int]:
        """id() of the reads of an own-key root in ``stmt`` (they see the item's own key)."""
        if root not in self.own:
            return set()
        return {id(n) for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id == root}

    # -- continue in the ordered part -------------------------------------------------------
    def _continue_orders_the_rest(self) -> bool:
        """An ordered statement that may ``continue`` (or ``break``) a loop decides, in the
        kernel, whether the rest of that loop's body runs. Inside an inner loop, the whole
        inner loop is then ordered; for the parallel loop itself, every statement after it."""
        changed = False
        for stmt in list(self._statements()):
            if isinstance(stmt, (ast.For, ast.While)) and self.split.mode(stmt) != ORDERED:
                if any(
                    self.split.mode(s) == ORDERED and _jumps_out(s)
                    for s in _own_loop_statements(stmt, self.split)
                ):
                    changed |= self._order(stmt)
        for block, position in self._blocks_after_ordered_continue(self.loop.body):
            for later in block[position + 1 :]:
                changed |= self._order(later)
        return changed

    def _order(self, stmt: ast.stmt) -> bool:
        if self.split.mode(stmt) == ORDERED:
            return False
        self.split.modes[id(stmt)] = ORDERED
        self._ordered_effects(stmt)
        return True

    def _blocks_after_ordered_continue(
        self, body: list[ast.stmt]
    ) -> Iterator[tuple[list[ast.stmt], int]]:
        for position, stmt in enumerate(body):
            if self.split.mode(stmt) == ORDERED:
                if _jumps_out(stmt):
                    yield body, position
                continue
            if isinstance(stmt, (ast.For, ast.While)):
                continue  # its own continue statements are its own
            found = [
                hit for block in blocks(stmt) for hit in self._blocks_after_ordered_continue(block)
            ]
            yield from found
            if found:
                yield body, position


def _single_store(stmt: ast.AST | None, target: ast.AST) -> bool:
    if isinstance(stmt, ast.Assign):
        return stmt.targets == [target]
    return isinstance(stmt, ast.AugAssign) and stmt.target is target


def _jumps_out(stmt: ast.stmt) -> bool:
    """``stmt`` holds a ``continue``/``break`` of a loop around it."""
    return any(
        isinstance(n, (ast.Continue, ast.Break)) and d == 0 for n, d in walk_with_loop_depth([stmt])
    )


def _own_loop_statements(loop: ast.For | ast.While, split: Split) -> Iterator[ast.stmt]:
    """Statements in ``loop``'s body that are not inside a further nested loop."""
    stack = list(loop.body)
    while stack:
        stmt = stack.pop()
        yield stmt
        if split.mode(stmt) != ORDERED and not isinstance(stmt, (ast.For, ast.While)):
            for block in blocks(stmt):
                stack.extend(block)


def _keys(target: ast.expr) -> list[ast.expr]:
    """The key and container expressions along ``a.b[k1][k2]`` (what a store evaluates)."""
    found: list[ast.expr] = []
    node = target
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Subscript):
            found.append(node.slice)
        node = node.value
    return found


def _binds(parts: list[ast.expr]) -> bool:
    return any(isinstance(n, ast.NamedExpr) for p in parts for n in ast.walk(p))


def reads_except(nodes: list[ast.expr], skip: set[int]) -> set[str]:
    found = set()
    for node, shadow, _own in walk_scoped(nodes):  # type: ignore[arg-type]
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in shadow:
            if id(node) not in skip:
                found.add(node.id)
    return found
