"""The report: the machine, per-item figures and ratios, and the markdown tables.

Every ratio is between figures of the same run: against the serial loop (speedup,
efficiency), against ``%%parallel_for``, and against the *limit*, the best of the
physical-limit rows (pre-started processes, items delivered in advance, nothing per item but
the work), which no peer can beat by more than the noise.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

import targets
from harness import PHYSICAL, WORKLOADS, Row


def machine() -> dict[str, Any]:
    import dask
    import distributed
    import joblib

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory = psutil.virtual_memory().total
    except ImportError:
        memory = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 2**30, 1) if memory else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "joblib": joblib.__version__,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def load_text(values: list[float] | None) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "?"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:,.1f} µs"


def derive(result: dict[str, Any], workers: int) -> None:
    """Per-item times, speedups and efficiencies, all against rows of the same run."""
    rows: dict[str, Row] = result["rows"]
    serial = rows.get("serial")
    serial_per_item = serial.median / serial.items if serial and serial.median else None
    magic = rows.get("dask-magic")
    magic_per_item = magic.median / magic.items if magic and magic.median else None
    limits = [r.median / r.items for k, r in rows.items() if k in PHYSICAL and r.median and r.items]
    limit_per_item = min(limits) if limits else None
    result["limit_per_item_s"] = limit_per_item
    table = {}
    for key, row in rows.items():
        d = row.as_dict()
        if row.median is not None and row.items:
            per_item = row.median / row.items
            d["per_item_s"] = per_item
            if serial_per_item:
                d["speedup"] = serial_per_item / per_item
                d["efficiency"] = d["speedup"] / workers
            if magic_per_item:
                d["vs_dask_magic"] = per_item / magic_per_item
            if limit_per_item:
                d["vs_limit"] = per_item / limit_per_item
        table[key] = d
    result["table"] = table


def markdown(report: dict[str, Any]) -> str:
    m, w = report["machine"], report["workers"]
    lines = [
        f"### dask-magic benchmarks: {w} workers on {m['cores']} cores ({m['cpu']}), {m['date']}",
        "",
        f"Python {m['python']}, dask {m['dask']}, distributed {m['distributed']}, "
        f"joblib {m['joblib']}; {report['mode']}; journal {report.get('journal', 'on')}; "
        f"times are medians of {report['rounds_note']} after a warm-up round, peers "
        f"interleaved; load average {load_text(m.get('load_average_at_start'))} at the start, "
        f"{load_text(report.get('load_average_at_end'))} at the end.",
        "",
    ]
    for name in WORKLOADS:
        result = report["results"].get(name)
        if result is None:
            continue
        lines += [f"#### {result['title']}", ""]
        if result["kind"] == "panel":
            lines += [
                f"Counted: {result['metrics']['how']}.",
                "",
                "| run | duration | panel updates | updates/s | comm messages | messages/s "
                "| closest updates |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for c in result["metrics"]["cases"]:
                gap = f"{c['min_gap_s'] * 1e3:.0f} ms apart" if c["min_gap_s"] else "-"
                lines.append(
                    f"| {c['label']} | {c['duration_s']:.2f} s | {c['updates']} "
                    f"| {c['updates_per_s']:.1f} | {c['comm_messages']} "
                    f"| {c['messages_per_s']:.1f} | {gap} |"
                )
            lines.append("")
            continue
        efficiency = result["kind"] == "efficiency"
        header = (
            "| peer | median | per item | "
            + ("speedup | efficiency | " if efficiency else "")
            + "vs `%%parallel_for` | vs limit | note |"
        )
        lines += [
            header,
            "| " + " | ".join(["---"] + ["---:"] * (header.count("|") - 3) + ["---"]) + " |",
        ]
        for d in result["table"].values():
            if d["skipped"] or d["problem"]:
                why = " ".join((d["skipped"] or d["problem"]).split()).replace("|", "/")[:200]
                lines.append(
                    f"| {d['label']} | skipped | | "
                    + ("| | " if efficiency else "")
                    + f"| | {why} |"
                )
                continue
            cells = [d["label"], _ms(d["median_s"]), _us(d.get("per_item_s"))]
            if efficiency:
                cells += [
                    f"{d['speedup']:.2f}x" if "speedup" in d else "-",
                    f"{d['efficiency']:.3f}" if "efficiency" in d else "-",
                ]
            cells += [
                f"{d['vs_dask_magic']:.2f}" if "vs_dask_magic" in d else "-",
                f"{d['vs_limit']:.2f}" if "vs_limit" in d else "-",
                d["note"],
            ]
            lines.append("| " + " | ".join(cells) + " |")
        metrics = {k: v for k, v in result["metrics"].items() if k != "fresh"}
        if metrics:
            lines.append("")
            lines.append(
                "; ".join(
                    f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}"
                    for k, v in metrics.items()
                )
            )
        lines.append("")
    if report["targets"]:
        lines += targets.as_markdown(report["targets"])
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------
