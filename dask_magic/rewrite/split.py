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

from .own_keys import own_key_roots
from .scopes import root_name, targets, walk_scoped
from .statements import (
    binds,
    blocks,
    header_nodes,
    header_writes,
    is_compound,
    jumps_out,
    reads,
    reads_except,
    store_keys,
    writes,
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
        self.own = own_key_roots(loop, local_names, kinds) if own_keys else {}
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
            self.outer(parts[0]) or ""
            for s in self._statements()
            if self.split.mode(s) == MIRROR and (parts := self._mirror_parts(s))
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
            parts = [*values, *store_keys(receiver)]
            if reads_except(parts, skip) & kernel or binds(parts) or self._mutated_roots(stmt):
                return ORDERED
            if root not in self.own:
                kernel.add(root)  # type: ignore[arg-type]
            return RECORD
        mirror = self._mirror_parts(stmt)
        if mirror is not None:
            target, value = mirror
            root = self.outer(target)
            touched = reads([value]) | reads(store_keys(target))
            if (touched | {root}) & kernel or root in touched or binds([value]):
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

    def _mirror_parts(self, stmt: ast.stmt) -> tuple[ast.Attribute, ast.expr] | None:
        """The target and value of a plain attribute store on a notebook object, or None."""
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
            return None
        target = stmt.targets[0]
        if not (isinstance(target, ast.Attribute) and self._plain_outer(target)):
            return None
        node: ast.expr = target
        while isinstance(node, (ast.Attribute, ast.Subscript)):  # keys read twice: keep them simple
            if isinstance(node, ast.Subscript) and not isinstance(
                node.slice, (ast.Name, ast.Constant)
            ):
                return None
            node = node.value
        return target, stmt.value

    def _mutated_roots(self, stmt: ast.stmt, ordered: bool = False) -> set[str]:
        """Notebook objects ``stmt`` changes in a way only the kernel can do (an ``ordered``
        statement: every object it changes, the receiver of an addition too)."""
        roots = self._stored_roots(stmt)
        for node, shadow, _own in walk_scoped([stmt]):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                method, root = node.func.attr, self.outer(node.func.value)
                if root is None or root in shadow or not self._plain_outer(node.func.value):
                    continue
                if method in IN_PLACE_METHODS or method in ACCUMULATE_METHODS:
                    roots.add(root)
        if not ordered:  # the receiver of the fast path itself is replayed, not lost
            receiver = self._record_parts(stmt)[0]
            mirror = self._mirror_parts(stmt) if receiver is None else None
            if mirror is not None:
                receiver = mirror[0]
            if receiver is not None:
                roots.discard(self.outer(receiver))
        return roots - set(self.own)

    def _stored_roots(self, stmt: ast.stmt) -> set[str]:
        """Notebook objects ``stmt`` stores into or deletes from (``a.b = v``, ``del a[k]``)."""
        if isinstance(stmt, ast.Assign):
            stores = [
                t
                for target in stmt.targets
                for t in ast.walk(target)
                if isinstance(t, (ast.Attribute, ast.Subscript))
            ]
            return {r for t in stores if isinstance(t.ctx, ast.Store) and (r := self.outer(t))}
        if isinstance(stmt, ast.AugAssign) and isinstance(
            stmt.target, (ast.Attribute, ast.Subscript)
        ):
            return {r for r in [self.outer(stmt.target)] if r}
        if isinstance(stmt, ast.Delete):
            return {r for t in stmt.targets if not isinstance(t, ast.Name) and (r := self.outer(t))}
        return set()

    def _touches_kernel_kinds(self, stmt: ast.stmt) -> bool:
        names = reads([stmt])
        if any(
            self.kinds.get(n) in C.KERNEL_KINDS
            for n in names
            if n not in self.local or n in self.targets
        ):
            return True
        return False

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
                    self.split.mode(s) == ORDERED and jumps_out(s)
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
                if jumps_out(stmt):
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


def _own_loop_statements(loop: ast.For | ast.While, split: Split) -> Iterator[ast.stmt]:
    """Statements in ``loop``'s body that are not inside a further nested loop."""
    stack = list(loop.body)
    while stack:
        stmt = stack.pop()
        yield stmt
        if split.mode(stmt) != ORDERED and not isinstance(stmt, (ast.For, ast.While)):
            for block in blocks(stmt):
                stack.extend(block)
