"""Build the per-item body function and the kernel's ordered steps from an analysed loop.

The generated function (readable with ``%%parallel_for --show``)::

    def dask_magic_loop(@dm_item, @dm_rec):
        try:
            file = @dm_item                          # the loop target, unpacked as usual
            df = pd.read_csv(file)                   # parallel: unchanged
            @dm_rec.call('results', (), 'append', (df.value.sum(),), {})   # record
            @dm_rec.run(0, @dm_locals(), (len(df),)) # ordered step 0, its hoisted values
        finally:
            @dm_rec.end(@dm_locals())                # what this item left bound

Each ordered step is the user's statement, compiled on its own for the kernel, with its
hoisted sub-expressions replaced by ``@dm_h0``, ``@dm_h1``, ... and a ``continue`` of the
parallel loop replaced by ``raise @dm_continue``.

Hygiene: every helper name starts with ``@`` (see `dask_magic.contract`). Every generated node
takes the location of the user node it stands for, so tracebacks point at the user's lines.
"""

from __future__ import annotations

import ast
import copy
from typing import TypeVar, cast

from dask_magic import contract as C

from .analysis import BodyFacts
from .plan import OrderedStep
from .scopes import root_name, walk_with_loop_depth
from .split import MIRROR, ORDERED, RECORD, Split
from .statements import reads

_Node = TypeVar("_Node", bound=ast.AST)


def _rec(method: str, args: list[ast.expr]) -> ast.Expr:
    call = ast.Call(ast.Attribute(ast.Name(C.RECORDER, ast.Load()), method, ast.Load()), args, [])
    return ast.Expr(call)


def _located(node: _Node, like: ast.AST) -> _Node:
    """Give ``node`` and its location-less descendants the location of ``like``."""
    for sub in ast.walk(node):
        if "lineno" in sub._attributes and getattr(sub, "lineno", None) is None:
            ast.copy_location(sub, like)
    return node


class _BodyRewriter(ast.NodeTransformer):
    """Rewrites the body's own scope by the modes of `Split`; ``continue`` ends the item."""

    def __init__(self, facts: BodyFacts, worker_names: set[str]) -> None:
        self.facts = facts
        self.split: Split = facts.split
        self.worker_names = worker_names
        self.loop_depth = 0
        self.steps: list[OrderedStep] = []

    def visit(self, node: ast.AST) -> ast.AST | list[ast.AST]:
        if isinstance(node, ast.stmt):
            mode = self.split.mode(node)
            if mode == ORDERED:
                return self._ordered(node)
            if mode == RECORD:
                return self._record(node)
            if mode == MIRROR:
                return self._mirror(node)
        return super().visit(node)

    # nested scopes keep their own meaning: never rewrite inside them
    def _skip(self, node: ast.AST) -> ast.AST:
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = _skip
    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _skip

    def _visit_loop(self, node: ast.For | ast.AsyncFor | ast.While) -> ast.AST:
        self.loop_depth += 1
        node.body = _flatten([self.visit(s) for s in node.body])
        self.loop_depth -= 1
        node.orelse = _flatten([self.visit(s) for s in node.orelse])
        return node

    visit_For = visit_While = visit_AsyncFor = _visit_loop

    def visit_Continue(self, node: ast.Continue) -> ast.AST:
        # `continue` of the parallel loop ends this item: a return from the body function
        return node if self.loop_depth else ast.copy_location(ast.Return(None), node)

    # -- the three ways a statement reaches the kernel ---------------------------------------
    def _record(self, node: ast.stmt) -> ast.AST:
        if isinstance(node, ast.Expr):
            call = node.value
            root, path = _path(call.func.value)  # type: ignore[attr-defined]
            args = ast.Tuple(list(call.args), ast.Load())  # type: ignore[attr-defined]
            method = ast.Constant(call.func.attr)  # type: ignore[attr-defined]
            recorded = [ast.Constant(root), path, method, args]
            if call.keywords:  # type: ignore[attr-defined]
                # without keywords no dict is built per item (the recorder records None)
                recorded.append(
                    ast.Dict(
                        [ast.Constant(k.arg) if k.arg else None for k in call.keywords],  # type: ignore[attr-defined]
                        [k.value for k in call.keywords],  # type: ignore[attr-defined]
                    )
                )
            return _located(_rec(C.OP_CALL, recorded), node)
        if isinstance(node, ast.Assign):
            # Python evaluates the value before the target's container and key: so do we
            root, path = _path(node.targets[0])
            return _located(_rec(C.OP_SET, [node.value, ast.Constant(root), path]), node)
        assert isinstance(node, ast.AugAssign)
        root, path = _path(node.target)
        op = ast.Constant(type(node.op).__name__)
        return _located(_rec(C.OP_AUG, [ast.Constant(root), path, op, node.value]), node)

    def _mirror(self, node: ast.stmt) -> list[ast.AST]:
        """Run the store here (the rest of the item sees it) and replay it in the kernel."""
        target = node.targets[0]  # type: ignore[attr-defined]
        root, path = _path(target)
        again = copy.deepcopy(target)
        for sub in ast.walk(again):
            if hasattr(sub, "ctx"):
                sub.ctx = ast.Load()
        return [node, _located(_rec(C.OP_SET, [again, ast.Constant(root), path]), node)]

    def _ordered(self, node: ast.stmt) -> ast.AST:
        hoisted = self.split.hoisted.get(id(node), [])
        kernel_stmt = _kernel_statement(node, hoisted)
        needs = tuple(sorted(reads(list(kernel_stmt.body)) & self.worker_names))
        self.steps.append(
            OrderedStep(
                lineno=node.lineno,
                end_lineno=getattr(node, "end_lineno", node.lineno) or node.lineno,
                module=kernel_stmt,
                needs=needs,
                hoisted=tuple(ast.unparse(e) for e in hoisted),
            )
        )
        step = ast.Constant(len(self.steps) - 1)
        frame = ast.Call(ast.Name(C.LOCALS, ast.Load()), [], []) if needs else ast.Constant(None)
        values = ast.Tuple([copy.deepcopy(e) for e in hoisted], ast.Load())
        return _located(_rec(C.OP_RUN, [step, frame, values]), node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        self.generic_visit(node)
        if node.name:
            node.body.insert(0, _located(_rec("mark", [ast.Constant(node.name)]), node))
        return node

    def visit_Delete(self, node: ast.Delete) -> list[ast.AST]:
        marks = [
            _located(_rec("mark", [ast.Constant(t.id)]), node)
            for t in node.targets
            if isinstance(t, ast.Name)
        ]
        return [node, *marks]

    def generic_visit(self, node: ast.AST) -> ast.AST:
        for name, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                setattr(node, name, _flatten([self.visit(s) for s in value]))
            elif isinstance(value, list):
                setattr(node, name, [self.visit(v) if isinstance(v, ast.AST) else v for v in value])
            elif isinstance(value, ast.AST):
                setattr(node, name, self.visit(value))
        return node


def _kernel_statement(node: ast.stmt, hoisted: list[ast.expr]) -> ast.Module:
    """The statement as the kernel runs it: hoisted parts become names, ``continue`` raises."""
    kernel_node = _jump_continues(_swap_hoisted(copy.deepcopy(node), hoisted))
    module = ast.Module([kernel_node], type_ignores=[])
    ast.fix_missing_locations(module)
    return module


def _swap_hoisted(node: ast.stmt, hoisted: list[ast.expr]) -> ast.stmt:
    """Replace the hoisted sub-expressions (matched by their position) in a copy of a statement."""
    spots = {
        (e.lineno, e.col_offset, e.end_lineno, e.end_col_offset, type(e).__name__): i
        for i, e in enumerate(hoisted)
    }

    class Swap(ast.NodeTransformer):
        def visit(self, sub: ast.AST) -> ast.AST:
            if isinstance(sub, ast.expr):
                key = (
                    sub.lineno,
                    sub.col_offset,
                    sub.end_lineno,
                    sub.end_col_offset,
                    type(sub).__name__,
                )
                if key in spots:
                    return ast.copy_location(
                        ast.Name(f"{C.HOISTED_PREFIX}{spots.pop(key)}", ast.Load()), sub
                    )
            return super().visit(sub)

    # Swap replaces expressions only: a statement stays a statement
    return cast(ast.stmt, Swap().visit(node))


def _jump_continues(node: ast.stmt) -> ast.stmt:
    continues = [
        n for n, depth in walk_with_loop_depth([node]) if isinstance(n, ast.Continue) and depth == 0
    ]
    marked = {id(n) for n in continues}

    class Jump(ast.NodeTransformer):
        def visit_Continue(self, sub: ast.Continue) -> ast.AST:
            if id(sub) not in marked:
                return sub
            return ast.copy_location(ast.Raise(ast.Name(C.CONTINUE, ast.Load()), None), sub)

    return Jump().visit(node)


def _flatten(items: list) -> list:
    out: list = []
    for item in items:
        out.extend(item if isinstance(item, list) else [item])
    return out


def _path(receiver: ast.expr) -> tuple[str, ast.Tuple]:
    """Root name and the ``(("item", key) | ("attr", name), ...)`` steps to ``receiver``."""
    steps: list[ast.expr] = []
    node = receiver
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute):
            steps.append(ast.Tuple([ast.Constant("attr"), ast.Constant(node.attr)], ast.Load()))
        else:
            steps.append(ast.Tuple([ast.Constant("item"), _key(node.slice)], ast.Load()))
        node = node.value
    root = root_name(receiver)
    assert root is not None  # guaranteed by the split that chose this mode
    return root.id, ast.Tuple(list(reversed(steps)), ast.Load())


def _key(node: ast.expr) -> ast.expr:
    """A subscript's key as a value: ``a[1:3]`` needs ``slice(1, 3)``."""
    if isinstance(node, ast.Slice):
        parts = [
            p if p is not None else ast.Constant(None) for p in (node.lower, node.upper, node.step)
        ]
        return ast.Call(
            ast.Attribute(ast.Name(C.RECORDER, ast.Load()), "slice", ast.Load()), parts, []
        )
    if isinstance(node, ast.Tuple):
        return ast.Tuple([_key(e) for e in node.elts], ast.Load())
    return node


def build_body_function(
    loop: ast.For, facts: BodyFacts
) -> tuple[ast.Module, tuple[OrderedStep, ...]]:
    """The module defining `contract.FUNCTION_NAME` for ``loop``, and its ordered steps."""
    worker_names = set(facts.local_names) - facts.split.kernel_names
    rewriter = _BodyRewriter(facts, worker_names)
    body = _flatten([rewriter.visit(s) for s in loop.body])
    bind_target = ast.copy_location(
        ast.Assign([loop.target], ast.Name(C.ITEM, ast.Load())), loop.target
    )
    end = _rec("end", [ast.Call(ast.Name(C.LOCALS, ast.Load()), [], [])])
    guarded = ast.Try(body=[bind_target, *body], handlers=[], orelse=[], finalbody=[end])
    args = ast.arguments(
        posonlyargs=[], args=[ast.arg(C.ITEM), ast.arg(C.RECORDER)], vararg=None,
        kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[],
    )  # fmt: skip
    fn = ast.FunctionDef(
        name=C.FUNCTION_NAME, args=args, body=[guarded], decorator_list=[], returns=None
    )
    if "type_params" in ast.FunctionDef._fields:  # Python 3.12+
        fn.type_params = []  # type: ignore[attr-defined]  # (mypy reads the 3.10 stubs)
    module = ast.Module([fn], type_ignores=[])
    _located(module, loop)
    return module, tuple(rewriter.steps)
