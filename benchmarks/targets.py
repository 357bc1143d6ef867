"""The performance targets, as a table the report checks and prints as met or missed.

Each row compares two figures of the same run (never a wall-clock time on its own): a figure
of ``%%parallel_for`` against the same figure of a peer, or against a fixed number. A row
whose figures are missing (a workload left out with ``--only``) is not judged.

Figures (`figure`): ``median_s``, ``per_item_s``, ``speedup`` and ``efficiency`` of a row of
a workload's table; ``metric:NAME`` reads ``NAME`` from the workload's metrics.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    """``value(workload, peer, figure) / value(workload, against, figure)  op  goal``.

    With ``against=None`` the value itself is compared with ``goal``.
    """

    name: str
    workload: str
    figure: str
    op: str  # "<=" or ">="
    goal: float
    peer: str = "dask-magic"
    against: str | None = None
    why: str = ""


TARGETS: tuple[Target, ...] = (
    Target(
        "file loop, 5 % corrupt: speedup >= joblib's",
        "files",
        "speedup",
        ">=",
        1.0,
        against="joblib",
    ),
    Target("file loop, 5 % corrupt: never slower than serial", "files", "speedup", ">=", 1.0),
    Target(
        "file loop, no corrupt file: speedup >= joblib's",
        "clean",
        "speedup",
        ">=",
        1.0,
        against="joblib",
    ),
    Target("file loop, no corrupt file: never slower than serial", "clean", "speedup", ">=", 1.0),
    Target(
        "CPU-bound: efficiency >= 0.97 x ProcessPoolExecutor tuned",
        "cpu",
        "efficiency",
        ">=",
        0.97,
        against="ppe-tuned",
    ),
    Target(
        "tiny items: time per item <= 0.5 x joblib's",
        "tiny",
        "per_item_s",
        "<=",
        0.5,
        against="joblib",
    ),
    Target(
        "warm 1-item cell <= 1.5 x a client.submit round trip",
        "fixed",
        "median_s",
        "<=",
        1.5,
        against="submit",
    ),
    Target(
        "big object: first run no slower than a manual scatter",
        "big",
        "median_s",
        "<=",
        1.0,
        against="dask-scatter",
    ),
    Target(
        "big object: re-run transfer <= 0.1 x the first run's",
        "big",
        "metric:transfer_rerun_s",
        "<=",
        0.1,
        peer="",
        against="metric:transfer_first_s",
    ),
)

_OPS = {"<=": operator.le, ">=": operator.ge}


def _value(results: dict[str, Any], workload: str, peer: str, figure: str) -> float | None:
    result = results.get(workload)
    if result is None:
        return None
    if figure.startswith("metric:"):
        value = result.get("metrics", {}).get(figure.split(":", 1)[1])
    else:
        value = result.get("table", {}).get(peer, {}).get(figure)
    return float(value) if isinstance(value, (int, float)) else None


def evaluate(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target with its measured value and whether it was met (None: not measured)."""
    judged = []
    for target in TARGETS:
        value = _value(results, target.workload, target.peer, target.figure)
        base = None
        if target.against is not None:
            figure = target.against if target.against.startswith("metric:") else target.figure
            base = _value(results, target.workload, target.against, figure)
        if value is None or (target.against is not None and not base):
            judged.append({"target": target.name, "measured": "-", "goal": "", "met": None})
            continue
        ratio = value / base if base else value
        shown = (
            f"{ratio:.3f} ({_fmt(value)} vs {target.against} {_fmt(base)})"
            if base
            else f"{ratio:.3f}"
        )
        judged.append(
            {
                "target": target.name,
                "measured": shown,
                "goal": f"{target.op} {target.goal:g}",
                "met": bool(_OPS[target.op](ratio, target.goal)),
            }
        )
    return judged


def _fmt(value: float) -> str:
    if value < 0.01:
        return f"{value * 1e6:,.1f} µs"
    if value < 10:
        return f"{value:.3f}"
    return f"{value:,.1f}"


def as_markdown(judged: list[dict[str, Any]]) -> list[str]:
    lines = [
        "#### Targets",
        "",
        "| target | measured | goal | status |",
        "| --- | --- | --- | --- |",
    ]
    for row in judged:
        status = {True: "met", False: "**missed**", None: "not measured"}[row["met"]]
        lines.append(f"| {row['target']} | {row['measured']} | {row['goal']} | {status} |")
    lines.append("")
    return lines
