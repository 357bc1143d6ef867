"""The efficiency curve: the CPU-bound and file-loop workloads at several worker counts.

    python benchmarks/scaling.py [--workers 4,8,16] [--out DIR] [--rounds 3] [--peers ...]

Runs ``run.py --workers N --only cpu,files`` once per N (a fresh process, so a fresh cluster
of N workers each time), then writes ``DIR/scaling.md`` (one table: efficiency by peer and N)
and ``DIR/scaling.json`` (every run's full report), both rewritten after each N; each run's own
report stays as ``DIR/workers-N.json``. Meant for a machine with many cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PEERS = "dask-delayed,joblib,pool-tuned,physical"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="4,8,16")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scaling")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--peers",
        default=DEFAULT_PEERS,
        help=f"peers besides serial and %%parallel_for (default {DEFAULT_PEERS})",
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    reports = {}
    for n in [int(w) for w in args.workers.split(",")]:
        json_path = args.out / f"workers-{n}.json"
        markdown_path = Path(tempfile.gettempdir()) / f"dask-magic-scaling-{n}.md"
        command = [
            sys.executable,
            str(HERE / "run.py"),
            "--workers",
            str(n),
            "--only",
            "cpu,files",
            "--rounds",
            str(args.rounds),
            "--peers",
            args.peers,
            "--json",
            str(json_path),
            "--markdown",
            str(markdown_path),
        ]
        if args.quick:
            command.append("--quick")
        print(f"== {n} workers: {' '.join(command)}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
        print(f"== {n} workers: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        markdown_path.unlink(missing_ok=True)
        if json_path.exists():
            reports[n] = json.loads(json_path.read_text())
        # after every worker count: a run cut short by a time limit keeps what it measured
        (args.out / "scaling.json").write_text(json.dumps(reports, indent=1))
        (args.out / "scaling.md").write_text(curve(reports))
    text = curve(reports)
    print(text)
    return 0


def curve(reports: dict[int, dict]) -> str:
    if not reports:
        return "no results\n"
    counts = sorted(reports)
    first = reports[counts[0]]
    m = first["machine"]
    lines = [
        f"### Efficiency by worker count: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, "
        f"{m['date']}",
        "",
        f"Python {m['python']}, dask {m['dask']}, distributed {m['distributed']}, "
        f"joblib {m['joblib']}; "
        "efficiency = serial time / (time x workers), serial loop timed in the same run.",
        "",
    ]
    for workload in ("cpu", "files"):
        result = first["results"].get(workload)
        if result is None:
            continue
        lines += [
            f"#### {result['title'].split(':', 1)[0]}: " + workload_label(workload, reports),
            "",
            "| peer | " + " | ".join(f"{n} workers" for n in counts) + " |",
            "| --- | " + " | ".join("---:" for _ in counts) + " |",
        ]
        peers = [
            k for k in result["table"] if k != "serial" and not result["table"][k].get("skipped")
        ]
        for peer in peers:
            cells = []
            for n in counts:
                d = reports[n]["results"].get(workload, {}).get("table", {}).get(peer, {})
                eff, med = d.get("efficiency"), d.get("median_s")
                cells.append(
                    f"{eff:.3f} ({med:.2f} s)" if eff is not None and med is not None else "-"
                )
            lines.append(f"| {result['table'][peer]['label']} | " + " | ".join(cells) + " |")
        serial = []
        for n in counts:
            d = reports[n]["results"].get(workload, {}).get("table", {}).get("serial", {})
            serial.append(f"{d['median_s']:.2f} s" if d.get("median_s") else "-")
        lines.append("| serial loop (time) | " + " | ".join(serial) + " |")
        lines.append("")
    lines.append("Targets per worker count (from each run):")
    lines.append("")
    for n in counts:
        for t in reports[n].get("targets", []):
            lines.append(
                f"- {n} workers: {t['target']}: {t['measured']} "
                f"({'met' if t['met'] else 'missed'}; {t['detail']})"
            )
    lines.append("")
    return "\n".join(lines)


def workload_label(workload: str, reports: dict[int, dict]) -> str:
    parts = []
    for n in sorted(reports):
        result = reports[n]["results"].get(workload)
        if result:
            parts.append(f"{result['items']} items at {n}")
    return "; ".join(parts)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
