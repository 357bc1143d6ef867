"""`LoopPlan`: everything the engine and the magic need to run one ``%%parallel_for`` cell."""

from __future__ import annotations

import ast
import dis
import sys
import types
from dataclasses import dataclass, field

from dask_magic.contract import BODY_DISPLAY_NAME, FUNCTION_NAME, LOCALS
from dask_magic.errors import Finding


@dataclass(frozen=True)
class OrderedStep:
    """One statement of the ordered part, as the kernel runs it."""

    lineno: int
    end_lineno: int
    module: ast.Module  # the statement, hoisted parts replaced by ``@dm_h<i>``
    needs: tuple[str, ...]  # the item's names it reads (sent from the worker)
    hoisted: tuple[str, ...]  # source of each hoisted sub-expression (for --show)


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
    #: the ordered part: statements run in the kernel, in item order (``@dm_rec.run(k, ...)``)
    steps: tuple[OrderedStep, ...] = ()
    #: names whose value lives in the kernel (carried, assigned by the ordered part, plots, ...)
    kernel_names: tuple[str, ...] = ()
    #: names the ordered part assigns (a retry restores them before it replays the items)
    state_names: tuple[str, ...] = ()
    #: ``(name, target)`` of ``df[c] = f(df[c])`` updates run in parallel: keys must be distinct
    own_keys: tuple[tuple[str, str], ...] = ()
    #: the ordered part draws, writes or changes objects a retry cannot restore and replay
    external: bool = False
    #: notebook objects the body changes on the worker too (``svc.C = C``): not fingerprinted
    mirrored_roots: tuple[str, ...] = ()
    #: first line of each body statement -> "parallel" or "ordered" (``--show``)
    line_modes: dict[int, str] = field(default_factory=dict)
    #: names first read in an ``except`` before the item surely assigned them
    may_depend: tuple[str, ...] = ()
    #: line -> sources of the sub-expressions of the ordered part computed on the worker
    hoisted_lines: dict[int, list[str]] = field(default_factory=dict)
    warnings: tuple[Finding, ...] = ()  # printed before the run; they refuse nothing
    _code: types.CodeType | None = field(default=None, repr=False)
    _step_codes: list[types.CodeType] | None = field(default=None, repr=False)
    _free_names: tuple[str, ...] | None = field(default=None, repr=False)

    def body_code(self) -> types.CodeType:
        """The compiled per-item function's code object, named `BODY_DISPLAY_NAME`."""
        if self._code is None:
            module = compile(self.body, self.filename, "exec")
            code = next(
                c
                for c in module.co_consts
                if isinstance(c, types.CodeType) and c.co_name == FUNCTION_NAME
            )
            code = code.replace(co_name=BODY_DISPLAY_NAME)
            if sys.version_info >= (3, 11):  # the qualified name shows in 3.11+ tracebacks
                code = code.replace(co_qualname=BODY_DISPLAY_NAME)
            self._code = code
        return self._code

    def step_codes(self) -> list[types.CodeType]:
        """The ordered steps compiled under the cell's filename (their lines are the user's)."""
        if self._step_codes is None:
            self._step_codes = [compile(step.module, self.filename, "exec") for step in self.steps]
        return self._step_codes

    def free_names(self) -> tuple[str, ...]:
        """Names the body reads from the notebook (globals of the body and its nested code);
        walked once per plan (a pass asks three times: the env, the journal's keys, --why)."""
        if self._free_names is None:
            self._free_names = self._walk_free_names()
        return self._free_names

    def _walk_free_names(self) -> tuple[str, ...]:
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
            "# evaluated once in the kernel and listed\n"
            f"items = list({ast.unparse(self.iterable.body)})"
        )
        parts.append(annotated_body(self.source, self.line_modes, self.hoisted_lines))
        parts.append("# runs once per item on the cluster\n" + ast.unparse(self.body))
        for number, step in enumerate(self.steps):
            code = ast.unparse(step.module)
            parts.append(
                f"# ordered step {number} (line {step.lineno}), run in the notebook in item "
                f"order\n{code}"
            )
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


_LETTER = {"parallel": "P", "ordered": "O", "record": "O", "mirror": "P+O"}
_LEGEND = (
    "# the loop body, line by line: P runs in parallel on the workers, O in the notebook in item "
    "order\n#   (O also marks additions replayed in item order; P+O a store made on both sides)"
)


def annotated_body(source: str, modes: dict[int, str], hoisted: dict[int, list[str]]) -> str:
    """The body's lines as the user wrote them, each with its mode letter."""
    lines = source.splitlines()
    width = max((len(lines[n - 1]) for n in modes if n <= len(lines)), default=0)
    out = [_LEGEND]
    for number in sorted(modes):
        if number > len(lines) or not lines[number - 1].strip():
            continue
        text = lines[number - 1]
        letter = _LETTER[modes[number]]
        note = (
            f"  <- computed on the worker: {', '.join(hoisted[number])}"
            if number in hoisted
            else ""
        )
        out.append(f"# {number:>3} {letter:<3} {text.ljust(width)}{note}".rstrip())
    return "\n".join(out)
