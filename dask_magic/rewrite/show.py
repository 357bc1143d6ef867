"""What ``%%parallel_for --show`` prints: every body line marked parallel or ordered.

# the loop body: P runs in parallel on the workers, O in the notebook in item order
#  3 P    df = pd.read_csv(f)
#  4 O    total = total + len(df)        <- computed on the worker: len(df)
"""

from __future__ import annotations

import ast

from .split import MIRROR, ORDERED, PARALLEL, RECORD, Split, body_statements

_LETTER = {PARALLEL: "P", ORDERED: "O", RECORD: "O", MIRROR: "P+O"}
_LEGEND = (
    "# the loop body, line by line: P runs in parallel on the workers, O in the notebook in item "
    "order\n#   (O also marks additions replayed in item order; P+O a store made on both sides)"
)


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
