"""Exceptions shared by every layer of dask-magic.

Only the stdlib is imported here, so `rewrite`, `engine` and the magics can all raise and catch
these without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


class DaskMagicError(Exception):
    """Base class of dask-magic's own errors (never raised for a user's item failure)."""


@dataclass(frozen=True)
class Finding:
    """One reason a loop cannot be parallelised, located in the user's cell.

    Attributes
    ----------
    code:
        Stable identifier such as ``"DM004"``; the README's table is keyed by it.
    message:
        What is wrong, in one sentence.
    hint:
        How to fix it, with the concrete rewrite where there is one.
    lineno, col:
        1-based line and 0-based column in the cell as the user sees it
        (the ``%%parallel_for`` line is line 1).
    end_lineno, end_col:
        End of the offending span, for the caret.
    """

    code: str
    message: str
    hint: str
    lineno: int
    col: int
    end_lineno: int | None = None
    end_col: int | None = None


class UnsupportedLoopError(SyntaxError, DaskMagicError):
    """The cell cannot be run as a parallel loop.

    A `SyntaxError` subclass so that Python and IPython can draw a caret under the offending
    span; ``findings`` holds every problem found, the first one fills the SyntaxError fields.
    """

    def __init__(self, findings: list[Finding], source: str, filename: str) -> None:
        first = findings[0]
        lines = source.splitlines()
        text = lines[first.lineno - 1] if 0 < first.lineno <= len(lines) else ""
        super().__init__(
            first.message,
            (
                filename,
                first.lineno,
                first.col + 1,
                text,
                first.end_lineno,
                (first.end_col or 0) + 1,
            ),
        )
        self.findings = list(findings)
        self.source = source

    def render(self) -> str:
        """Every finding as ``line L, column C: message`` + source line + caret + hint."""
        return render_findings(self.findings, self.source)

    def __str__(self) -> str:
        return self.render()


def render_findings(findings: list[Finding] | tuple[Finding, ...], source: str) -> str:
    """Each finding as ``line L, column C: message`` + its source line + caret + ``fix:``."""
    lines = source.splitlines()
    parts = []
    for f in findings:
        text = lines[f.lineno - 1] if 0 < f.lineno <= len(lines) else ""
        width = 1
        if f.end_lineno == f.lineno and f.end_col is not None:
            width = max(1, f.end_col - f.col)
        parts.append(
            f"line {f.lineno}, column {f.col + 1}: {f.message}\n"
            f"    {text}\n"
            f"    {' ' * f.col}{'^' * width}\n"
            f"  fix: {f.hint}"
        )
    return "\n".join(parts)


def render_warnings(findings: list[Finding] | tuple[Finding, ...], source: str) -> str:
    """Warnings that do not stop the loop, as the magic prints them before the run."""
    return "\n".join(f"dask-magic: warning: {render_findings([f], source)}" for f in findings)


class ClusterError(DaskMagicError):
    """The Dask cluster could not be reached, started or used."""


class PicklingError(DaskMagicError):
    """Names the loop body reads cannot be sent to the workers."""
