"""Workload 1: 10,000 tiny items doing ``x + 1`` (the per-item cost of the machinery)."""

from __future__ import annotations

import functools
from typing import Any

from harness import MAGIC, Bench, Peer, check_len, run_rounds, select


def run(b: Bench) -> dict[str, Any]:
    import bench_work as w
    import peers as p

    cfg, n, workers = b.cfg, b.cfg.tiny_items, b.cfg.workers
    items = list(range(n))
    b.ip.push({"items": items})
    m = min(cfg.tiny_task_subset, n)
    chunk = p.tuned_chunksize(n, workers)
    expected = [x + 1 for x in items]

    def ns_out_ok(_: Any) -> str | None:
        out = b.ns("out")
        return None if out == expected else f"out has {len(out)} items"

    reset = functools.partial(b.ip.run_cell, "out = []")
    candidates = [
        Peer(
            "serial", lambda: b.cell("for x in items:\n    out.append(x + 1)\n"), reset, ns_out_ok
        ),
        Peer(
            "dask-magic",
            lambda: b.cell(f"{MAGIC}\nfor x in items:\n    out.append(x + 1)\n"),
            reset,
            ns_out_ok,
        ),
        Peer(
            "dask-delayed",
            lambda: p.dask_delayed(b.client, w.inc, [(x,) for x in items[:m]]),
            check=check_len(m),
            items=m,
            note=f"one task per item: timed on the first {m:,} items",
        ),
        Peer(
            "client-map",
            lambda: p.client_map(b.client, w.inc, [items[:m]]),
            check=check_len(m),
            items=m,
            note=f"one task per item: timed on the first {m:,} items",
        ),
        Peer(
            "joblib",
            lambda: p.joblib_run(workers, w.inc, [(x,) for x in items]),
            check=check_len(n),
        ),
        Peer("ppe-1", lambda: p.ppe_map(b.pools, w.inc, [items], 1), check=check_len(n)),
        Peer(
            "ppe-tuned",
            lambda: p.ppe_map(b.pools, w.inc, [items], chunk),
            check=check_len(n),
            note=f"chunksize {chunk}",
        ),
        Peer(
            "pool-tuned",
            lambda: p.pool_imap_unordered(b.pools, w.inc, items, chunk),
            check=check_len(n),
            note=f"chunksize {chunk}",
        ),
        *b.physical_peers("tiny", items, check_len(n)),
    ]
    chosen, skipped = select(cfg, candidates)
    rows = run_rounds(chosen, cfg.rounds["tiny"], n, skipped)
    b.reset_peers()
    return {
        "name": "tiny",
        "title": f"1. tiny items: {n:,} items doing `x + 1`",
        "items": n,
        "rows": rows,
        "metrics": {},
        "kind": "per-item",
    }
