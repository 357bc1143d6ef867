"""`LoopPlan`: everything the engine and the magic need to run one ``%%parallel_for`` cell."""

from __future__ import annotations

import ast
import dis
import types
from dataclasses import dataclass, field

#: The generated body's helper names (see transform.py). They start with ``@``, which no
#: Python source can contain; they live here so that this module needs nothing else from
#: the package (the engine names `LoopPlan` in its annotations).
ITEM = "@dm_item"
RECORDER = "@dm_rec"
LOCALS = "@dm_locals"
FUNCTION_NAME = "dask_magic_loop"

#: How the body function appears in tracebacks (``File "<cell>", line 4, in <loop body>``).
BODY_DISPLAY_NAME = "<loop body>"


@dataclass
class LoopPlan:
    """A cell split into the parts that run in the kernel and the body that runs per item.

    Line numbers in every AST here are the user's (the ``%%parallel_for`` line is line 1).
    """

    filename: str
    source: str  # the cell as the user sees it (for messages)
    prelude: ast.Module  # statements before the loop, run first in the kernel
    iterable: ast.Expression  # evaluated once in the kernel, then listed
    target: ast.expr  # the loop target, e.g. ``i, path``
    body: ast.Module  # defines the per-item function (see transform.py)
    postlude: ast.Module  # the loop's ``else:`` block and the statements after the loop
    last_expr: ast.Expression | None  # a trailing expression to display, as IPython would
    target_names: tuple[str, ...]
    local_names: tuple[str, ...]  # names each item binds (target included)
    accumulators: tuple[str, ...]  # notebook names the body only adds to
    loop_lineno: int
    _code: types.CodeType | None = field(default=None, repr=False)

    def body_code(self) -> types.CodeType:
        """The compiled per-item function's code object, named `BODY_DISPLAY_NAME`."""
        if self._code is None:
            module = compile(self.body, self.filename, "exec")
            code = next(
                c
                for c in module.co_consts
                if isinstance(c, types.CodeType) and c.co_name == FUNCTION_NAME
            )
            replace = {"co_name": BODY_DISPLAY_NAME}
            if hasattr(code, "co_qualname"):
                replace["co_qualname"] = BODY_DISPLAY_NAME
            self._code = code.replace(**replace)
        return self._code

    def free_names(self) -> tuple[str, ...]:
        """Names the body reads from the notebook (globals of the body and its nested code)."""
        names: set[str] = set()
        stack = [self.body_code()]
        while stack:
            code = stack.pop()
            for ins in dis.get_instructions(code):
                if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"):
                    names.add(ins.argval)
            stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        names.discard(LOCALS)
        return tuple(sorted(names))

    def show(self) -> str:
        """The generated code, as ``%%parallel_for --show`` prints it."""
        parts = []
        if self.prelude.body:
            parts.append("# runs first, in the kernel\n" + ast.unparse(self.prelude))
        parts.append(
            f"# evaluated once in the kernel and listed\nitems = list({ast.unparse(self.iterable.body)})"
        )
        parts.append("# runs once per item on the cluster\n" + ast.unparse(self.body))
        if self.accumulators:
            names = ", ".join(self.accumulators)
            parts.append(
                f"# recorded additions to {names} are replayed in the kernel in item order"
            )
        if self.postlude.body or self.last_expr:
            tail = ast.unparse(self.postlude)
            if self.last_expr is not None:
                tail += ("\n" if tail else "") + ast.unparse(self.last_expr.body)
            parts.append("# runs after every item has ended, in the kernel\n" + tail)
        return "\n\n".join(parts)
