"""dask-magic benchmark suite: every workload against the serial loop and the peers, in one run.

    python benchmarks/run.py [--workers N] [--quick] [--only NAME[,NAME]] [--json out.json]

Workloads (``--only``): ``tiny``, ``cpu``, ``files``, ``clean``, ``big``, ``fixed``, ``panel``.

How it measures (``harness.py``): ``%%parallel_for`` runs the way users run it, in cells of a
real IPython shell on the re-used, warm local cluster; every peer is warm; each round runs every
peer once, in an order that rotates, the first round is dropped and times are medians. The
report (``report.py``) takes every ratio between figures of the same run; ``targets.py`` is the
table of targets it checks. One module per workload lives in ``workloads/``.

Results: a markdown report on stdout (also ``benchmarks/results/latest.md``) and the JSON
(``--json``, default ``benchmarks/results/latest.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from harness import PEER_LABELS, RESULTS, WORKLOADS, Bench, Config, log

harness.setup_paths()  # before the imports below: they live next to this file

import report as report_md  # noqa: E402
import targets  # noqa: E402
import workloads  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workers", type=int, help="workers for every peer (default: what %%parallel_for picks)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller workloads, fewer rounds (a smoke run)"
    )
    parser.add_argument("--only", help=f"comma-separated workloads out of {', '.join(WORKLOADS)}")
    parser.add_argument(
        "--peers",
        help="comma-separated peers (serial and dask-magic always run): " + ", ".join(PEER_LABELS),
    )
    parser.add_argument("--rounds", type=int, help="at most this many timed rounds per workload")
    parser.add_argument(
        "--journal",
        choices=["fresh", "off"],
        default="fresh",
        help="fresh: every item runs and is journaled (a loop's first run); off: no journal",
    )
    parser.add_argument(
        "--json", type=Path, help="where to write the JSON (default benchmarks/results/latest.json)"
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        help="where to write the report (default benchmarks/results/latest.md)",
    )
    args = parser.parse_args(argv)
    harness.setup_paths()
    only = WORKLOADS if not args.only else tuple(args.only.split(","))
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    from dask_magic.engine import cluster

    workers = args.workers or cluster.default_workers()
    cfg = Config.make(args, workers)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": report_md.machine(),
        "workers": workers,
        "mode": "quick" if cfg.quick else "full",
        "journal": cfg.journal,
        "rounds": cfg.rounds,
        "results": {},
    }
    log(f"machine: {report['machine']}")
    bench = Bench(cfg)
    report["cluster"] = bench.cluster_info
    json_path = args.json or RESULTS / "latest.json"
    md_path = args.markdown or RESULTS / "latest.md"
    report["rounds_note"] = ", ".join(
        f"{v} ({k})" for k, v in cfg.rounds.items() if k in only or k in ("fresh", "serial-slow")
    )

    def write() -> str:  # after every workload: a run cut short still leaves its results
        report["targets"] = targets.evaluate(report["results"])
        report["seconds"] = time.perf_counter() - started
        report["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        text = report_md.markdown(report)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1, default=str))
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(text)
        return text

    try:
        for name in only:
            log(f"workload {name}")
            result = workloads.WORKLOADS[name](bench)
            if result["rows"]:
                report_md.derive(result, workers)
            else:
                result["table"] = {}
            result["rows"] = {k: r.as_dict() for k, r in result["rows"].items()}
            report["results"][name] = result
            write()
    finally:
        bench.close()
    text = write()
    print(text)
    log(f"wrote {json_path} and {md_path} ({report['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
