"""Turn a ``%%parallel_for`` cell into a `LoopPlan`, or refuse it with a precise, fixable error.

Pure stdlib: no dask, no IPython. The facade is `rewrite_loop`; the analysis (read-only,
returns findings) and the transformation (builds the per-item function) live in their own
modules, as in pytest's assertion rewriter.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from dask_magic.errors import UnsupportedLoopError

from .analysis import BodyFacts, analyze_body, locate_loop
from .plan import LoopPlan
from .random_state import find_global_random
from .scopes import root_name
from .show import hoisted_by_line, line_modes
from .split import RECORD, body_statements
from .transform import build_body_function

__all__ = ["LoopPlan", "UnsupportedLoopError", "rewrite_loop"]


def rewrite_loop(
    source: str,
    *,
    filename: str = "<cell>",
    line_offset: int = 0,
    display_source: str | None = None,
    kinds: Mapping[str, str] | None = None,
    own_keys: bool = True,
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
    kinds:
        Notebook names by runtime kind (`dask_magic.contract` ``KIND_*``): which are modules,
        plotting state, sinks, ``display``; they decide what runs in the ordered part.
    own_keys:
        Run ``df[c] = f(df[c])`` (``c`` the loop target) in parallel; ``False`` puts it in the
        ordered part (when the items' keys turn out not to be distinct).
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
    tree = _parse(source, filename, line_offset)
    index, loop, facts = _analyzed(tree, shown, filename, kinds, own_keys)
    # found before the body is transformed, so the warnings see the user's own nodes
    warnings = find_global_random(ast.Module(loop.body, []), set(facts.local_names), origins)
    plan = _plan(tree, index, loop, facts, filename, shown)
    plan.warnings = warnings
    return plan


def _parse(source: str, filename: str, line_offset: int) -> ast.Module:
    """``source`` parsed, its line numbers (a SyntaxError's too) those the user sees."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        if exc.lineno is not None:
            exc.lineno += line_offset
            if exc.end_lineno:
                exc.end_lineno += line_offset
        raise
    ast.increment_lineno(tree, line_offset)
    return tree


def _analyzed(
    tree: ast.Module,
    shown: str,
    filename: str,
    kinds: Mapping[str, str] | None,
    own_keys: bool,
) -> tuple[int, ast.For, BodyFacts]:
    """The loop's position in ``tree``, the loop and its facts; or why it cannot run."""
    index, loop, problems = locate_loop(tree, 0)
    if loop is None:
        raise UnsupportedLoopError(problems, shown, filename)
    facts = analyze_body(loop, 0, kinds, own_keys)
    if facts.findings:
        raise UnsupportedLoopError(facts.findings, shown, filename)
    return index, loop, facts


def _record_roots(loop: ast.For, facts: BodyFacts) -> list[str]:
    roots = dict.fromkeys(facts.accumulators)
    for stmt in body_statements(loop.body, facts.split):
        if facts.split.mode(stmt) == RECORD:
            if isinstance(stmt, ast.Expr):
                node = stmt.value.func.value  # type: ignore[attr-defined]
            else:
                node = stmt.target if isinstance(stmt, ast.AugAssign) else stmt.targets[0]  # type: ignore[attr-defined]
            root = root_name(node)
            if root is not None:
                roots.setdefault(root.id)
    return list(roots)


def _plan(
    tree: ast.Module, index: int, loop: ast.For, facts: BodyFacts, filename: str, shown: str
) -> LoopPlan:
    modes = line_modes(loop, facts.split)
    hoisted = hoisted_by_line(facts.split, loop)
    # read before the body is built: building it replaces the loop's statements, and the
    # split knows statements by id (a new one could take a freed id and look recorded)
    accumulators = tuple(_record_roots(loop, facts))
    body, steps = build_body_function(loop, facts)
    after = [*loop.orelse, *tree.body[index + 1 :]]
    last_expr = None
    if after and isinstance(tail := after[-1], ast.Expr):
        after.pop()
        last_expr = ast.Expression(tail.value)
    iterable = ast.Expression(loop.iter)
    ast.fix_missing_locations(iterable)
    return LoopPlan(
        filename=filename,
        source=shown,
        prelude=ast.Module(tree.body[:index], type_ignores=[]),
        iterable=iterable,
        target=loop.target,
        body=body,
        postlude=ast.Module(after, type_ignores=[]),
        last_expr=last_expr,
        target_names=tuple(dict.fromkeys(facts.target_names)),
        local_names=tuple(facts.local_names),
        accumulators=accumulators,
        loop_lineno=loop.lineno,
        steps=steps,
        kernel_names=tuple(sorted(facts.split.kernel_names)),
        state_names=tuple(sorted(facts.split.assigned)),
        own_keys=tuple(facts.split.own_keys),
        external=facts.split.external,
        mirrored_roots=tuple(sorted(facts.split.mirrored_roots)),
        line_modes=modes,
        may_depend=tuple(facts.may_depend),
        hoisted_lines=hoisted,
    )
