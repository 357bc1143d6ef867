"""Turn a ``%%parallel_for`` cell into a `LoopPlan`, or refuse it with a precise, fixable error.

Pure stdlib: no dask, no IPython. The facade is `rewrite_loop`; the analysis (read-only,
returns findings) and the transformation (builds the per-item function) live in their own
modules, as in pytest's assertion rewriter.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from ..errors import UnsupportedLoopError
from .analysis import analyze_body, locate_loop
from .plan import LoopPlan
from .random_state import find_global_random
from .transform import build_body_function

__all__ = ["LoopPlan", "UnsupportedLoopError", "rewrite_loop"]


def rewrite_loop(
    source: str,
    *,
    filename: str = "<cell>",
    line_offset: int = 0,
    display_source: str | None = None,
    origins: Mapping[str, str | None] | None = None,
) -> LoopPlan:
    """Analyse ``source`` and build its plan.

    Parameters
    ----------
    source:
        Python source of the cell body (after IPython's input transformation).
    filename:
        Name the code is compiled under; tracebacks and linecache use it.
    line_offset:
        Lines above ``source`` in what the user sees (1 for the ``%%parallel_for`` line).
    display_source:
        The text the user sees, for error messages; defaults to ``source`` shifted by
        ``line_offset`` blank lines.
    origins:
        What the notebook's names are, for the warnings (see `random_state.NamespaceOrigins`);
        without it, ``np``, ``random`` and ``torch`` mean the libraries.

    Raises
    ------
    SyntaxError
        The cell does not parse (line numbers already shifted).
    UnsupportedLoopError
        The loop cannot run in parallel without changing what it computes.
    """
    shown = display_source if display_source is not None else "\n" * line_offset + source
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        if exc.lineno is not None:
            exc.lineno += line_offset
            if getattr(exc, "end_lineno", None):
                exc.end_lineno += line_offset
        raise
    ast.increment_lineno(tree, line_offset)
    index, loop, problems = locate_loop(tree, 0)
    if loop is None:
        raise UnsupportedLoopError(problems, shown, filename)
    facts = analyze_body(loop, 0)
    if facts.findings:
        raise UnsupportedLoopError(facts.findings, shown, filename)
    # found before the body is transformed, so the warnings see the user's own nodes
    warnings = find_global_random(ast.Module(loop.body, []), set(facts.local_names), origins)
    plan = _plan(tree, index, loop, facts, filename, shown)
    plan.warnings = warnings
    return plan


def _plan(
    tree: ast.Module, index: int, loop: ast.For, facts, filename: str, shown: str
) -> LoopPlan:  # noqa: ANN001
    after = [*loop.orelse, *tree.body[index + 1 :]]
    last_expr = None
    if after and isinstance(after[-1], ast.Expr):
        last_expr = ast.Expression(after.pop().value)
    iterable = ast.Expression(loop.iter)
    ast.fix_missing_locations(iterable)
    return LoopPlan(
        filename=filename,
        source=shown,
        prelude=ast.Module(tree.body[:index], type_ignores=[]),
        iterable=iterable,
        target=loop.target,
        body=build_body_function(loop, facts),
        postlude=ast.Module(after, type_ignores=[]),
        last_expr=last_expr,
        target_names=tuple(dict.fromkeys(facts.target_names)),
        local_names=tuple(facts.local_names),
        accumulators=tuple(facts.accumulators),
        loop_lineno=loop.lineno,
    )
