"""Build the per-item body function from an analysed loop.

The generated function (readable with ``%%parallel_for --show``)::

    def dask_magic_loop(@dm_item, @dm_rec):
        try:
            file = @dm_item                          # the loop target, unpacked as usual
            df = pd.read_csv(file)                   # the body, unchanged ...
            @dm_rec.call('results', (), 'append', (df.value.sum(),), {})   # ... but additions
        finally:                                     #     to notebook objects are recorded
            @dm_rec.end(@dm_locals())                # what this item left bound

Hygiene: every helper name starts with ``@``, which no Python source can contain, so nothing
the user wrote can clash with it (pytest's ``@py_assert`` trick). Every generated node takes
the location of the user node it stands for, so tracebacks point at the user's lines.
"""

from __future__ import annotations

import ast

from .analysis import BodyFacts, root_name
from .plan import FUNCTION_NAME, ITEM, LOCALS, RECORDER


def _rec(method: str, args: list[ast.expr]) -> ast.Expr:
    call = ast.Call(ast.Attribute(ast.Name(RECORDER, ast.Load()), method, ast.Load()), args, [])
    return ast.Expr(call)


def _located(node: ast.AST, like: ast.AST) -> ast.AST:
    """Give ``node`` and its location-less descendants the location of ``like``."""
    for sub in ast.walk(node):
        if "lineno" in sub._attributes and getattr(sub, "lineno", None) is None:
            ast.copy_location(sub, like)
    return node


class _BodyRewriter(ast.NodeTransformer):
    """Rewrites the body's own scope: additions to notebook objects, ``continue``, unbinding."""

    def __init__(self, facts: BodyFacts) -> None:
        self.facts = facts
        self.loop_depth = 0

    # nested scopes keep their own meaning: never rewrite inside them
    def _skip(self, node: ast.AST) -> ast.AST:
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = _skip
    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _skip

    def _visit_loop(self, node: ast.For | ast.While) -> ast.AST:
        self.loop_depth += 1
        node.body = [self.visit(s) for s in node.body]  # type: ignore[misc]
        node.body = _flatten(node.body)
        self.loop_depth -= 1
        node.orelse = _flatten([self.visit(s) for s in node.orelse])
        return node

    visit_For = visit_While = visit_AsyncFor = _visit_loop

    def visit_Continue(self, node: ast.Continue) -> ast.AST:
        # `continue` of the parallel loop ends this item: a return from the body function
        return node if self.loop_depth else ast.copy_location(ast.Return(None), node)

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if not getattr(node, "_dm_accumulate", False):
            return self.generic_visit(node)
        call = node.value
        receiver = call.func.value  # type: ignore[attr-defined]
        args = ast.Tuple(list(call.args), ast.Load())  # type: ignore[attr-defined]
        kwargs = ast.Dict(
            [ast.Constant(k.arg) if k.arg else None for k in call.keywords],  # type: ignore[attr-defined]
            [k.value for k in call.keywords],  # type: ignore[attr-defined]
        )
        root, path = _path(receiver)
        method = ast.Constant(call.func.attr)  # type: ignore[attr-defined]
        return _located(_rec("call", [ast.Constant(root), path, method, args, kwargs]), node)

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        if not getattr(node, "_dm_accumulate", False):
            return self.generic_visit(node)
        # Python evaluates the value before the target's container and key: so do we
        root, path = _path(node.targets[0])
        return _located(_rec("set", [node.value, ast.Constant(root), path]), node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        target = node.target
        is_name_acc = isinstance(target, ast.Name) and target.id in self.facts.accumulators
        if not (is_name_acc or getattr(node, "_dm_accumulate", False)):
            return self.generic_visit(node)
        root, path = _path(target)
        op = ast.Constant(type(node.op).__name__)
        return _located(_rec("aug", [ast.Constant(root), path, op, node.value]), node)

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
        for field, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                setattr(node, field, _flatten([self.visit(s) for s in value]))
            elif isinstance(value, list):
                setattr(
                    node, field, [self.visit(v) if isinstance(v, ast.AST) else v for v in value]
                )
            elif isinstance(value, ast.AST):
                setattr(node, field, self.visit(value))
        return node


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
    assert root is not None  # guaranteed by the analysis that marked this statement
    return root.id, ast.Tuple(list(reversed(steps)), ast.Load())


def _key(node: ast.expr) -> ast.expr:
    """A subscript's key as a value: ``a[1:3]`` needs ``slice(1, 3)``."""
    if isinstance(node, ast.Slice):
        parts = [
            p if p is not None else ast.Constant(None) for p in (node.lower, node.upper, node.step)
        ]
        return ast.Call(
            ast.Attribute(ast.Name(RECORDER, ast.Load()), "slice", ast.Load()), parts, []
        )
    if isinstance(node, ast.Tuple):
        return ast.Tuple([_key(e) for e in node.elts], ast.Load())
    return node


def build_body_function(loop: ast.For, facts: BodyFacts) -> ast.Module:
    """The module defining `FUNCTION_NAME` for ``loop`` (body already analysed clean)."""
    body = _flatten([_BodyRewriter(facts).visit(s) for s in loop.body])
    bind_target = ast.copy_location(
        ast.Assign([loop.target], ast.Name(ITEM, ast.Load())), loop.target
    )
    end = _rec("end", [ast.Call(ast.Name(LOCALS, ast.Load()), [], [])])
    guarded = ast.Try(body=[bind_target, *body], handlers=[], orelse=[], finalbody=[end])
    args = ast.arguments(
        posonlyargs=[],
        args=[ast.arg(ITEM), ast.arg(RECORDER)],
        vararg=None,
        kwonlyargs=[],
        kw_defaults=[],
        kwarg=None,
        defaults=[],
    )
    fn = ast.FunctionDef(
        name=FUNCTION_NAME, args=args, body=[guarded], decorator_list=[], returns=None
    )
    if "type_params" in ast.FunctionDef._fields:  # Python 3.12+
        fn.type_params = []
    module = ast.Module([fn], type_ignores=[])
    _located(module, loop)
    return module
