"""Workload 5: the fixed cost of a 1-item cell, warm and in a fresh kernel."""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
from typing import Any

from harness import HERE, MAGIC, Bench, Peer, Row, log, run_rounds


def run(b: Bench) -> dict[str, Any]:
    import bench_work as w
    import peers as p

    cfg = b.cfg
    b.ip.push({"out": []})
    reset = functools.partial(b.ip.run_cell, "out = []")
    candidates = [
        Peer(
            "submit",
            lambda: b.client.submit(w.inc, 1, pure=False).result(),
            label="warm `client.submit(f, x).result()` round trip",
        ),
        Peer(
            "dask-delayed",
            lambda: p.dask_delayed(b.client, w.inc, [(1,)]),
            label="plain Dask recipe, 1 item",
        ),
        Peer(
            "dask-magic",
            lambda: b.cell(f"{MAGIC}\nfor x in [1]:\n    out.append(inc(x))\n"),
            reset,
            label="`%%parallel_for`, 1-item cell, warm cluster",
        ),
    ]
    rows = run_rounds(candidates, cfg.rounds["fixed"], 1)
    # the first cell of a fresh kernel, against starting the same LocalCluster by hand
    fresh: dict[str, list[dict[str, float]]] = {"magic": [], "cluster": []}
    for round_no in range(cfg.rounds["fresh"]):
        for mode in ("cluster", "magic"):
            out = subprocess.run(
                [sys.executable, str(HERE / "fresh_kernel.py"), mode, str(cfg.workers)],
                capture_output=True,
                text=True,
                timeout=300,
                env=os.environ.copy(),
            )
            try:
                fresh[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
            except (IndexError, json.JSONDecodeError):
                log(f"    fresh {mode}: failed\n{out.stderr[-2000:]}")
                continue
            log(f"    fresh {mode} round {round_no}: {fresh[mode][-1]}")
    rows["fresh-cluster"] = Row(
        "fresh-cluster",
        "fresh process: `LocalCluster` + `Client` start (same arguments)",
        times=[r["cluster_start_s"] for r in fresh["cluster"]],
        items=1,
        note="`import distributed` not counted",
    )
    rows["fresh-magic"] = Row(
        "fresh-magic",
        "fresh kernel: first `%%parallel_for --fresh` cell, 1 item (starts the cluster)",
        times=[r["first_cell_s"] for r in fresh["magic"]],
        items=1,
        note="`%load_ext dask_magic` not counted",
    )
    load_ext = [r["load_ext_s"] for r in fresh["magic"] if "load_ext_s" in r]
    rows["fresh-magic-total"] = Row(
        "fresh-magic-total",
        "fresh kernel: `%load_ext dask_magic` + that first cell",
        times=[r["load_ext_and_first_cell_s"] for r in fresh["magic"] if "load_ext_s" in r],
        items=1,
        note=f"`%load_ext` alone {statistics.median(load_ext) * 1e3:.0f} ms" if load_ext else "",
    )
    metrics: dict[str, Any] = {"fresh": fresh}
    overheads = [
        r["first_cell_s"] - r["cluster_start_in_cell_s"]
        for r in fresh["magic"]
        if "cluster_start_in_cell_s" in r
    ]
    if overheads:
        metrics["first_cell_minus_its_cluster_start_s"] = statistics.median(overheads)
        metrics["cluster_start_in_cell_s"] = statistics.median(
            r["cluster_start_in_cell_s"] for r in fresh["magic"]
        )
    if load_ext:
        metrics["load_ext_s"] = statistics.median(load_ext)
    return {
        "name": "fixed",
        "title": "5. fixed cost: a 1-item loop",
        "items": 1,
        "rows": rows,
        "metrics": metrics,
        "kind": "time",
    }
