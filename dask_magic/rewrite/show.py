"""Which body line runs where, for ``%%parallel_for --show`` (`LoopPlan.show` prints it).

# the loop body: P runs in parallel on the workers, O in the notebook in item order
#  3 P    df = pd.read_csv(f)
#  4 O    total = total + len(df)        <- computed on the worker: len(df)
"""

from __future__ import annotations

import ast

from .split import Split, body_statements


def line_modes(loop: ast.For, split: Split) -> dict[int, str]:
    """First-to-last line of each body statement -> its mode (inner statements win)."""
    modes: dict[int, str] = {}
    for stmt in body_statements(loop.body, split):
        mode = split.mode(stmt)
        for line in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1):
            modes[line] = mode
    return modes


def hoisted_by_line(split: Split, loop: ast.For) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for stmt in body_statements(loop.body, split):
        for expr in split.hoisted.get(id(stmt), []):
            found.setdefault(expr.lineno, []).append(ast.unparse(expr))
    return found
