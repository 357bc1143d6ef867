"""Workload 2: items of about 0.1 s of pure-Python arithmetic (the GIL-bound case)."""

from __future__ import annotations

import functools
from typing import Any

from harness import MAGIC, Bench, Peer, check_len, run_rounds, select


def run(b: Bench) -> dict[str, Any]:
    import bench_work as w
    import peers as p

    cfg, workers = b.cfg, b.cfg.workers
    iterations = w.calibrate_cpu(cfg.cpu_seconds)
    n = cfg.cpu_per_worker * workers
    items = list(range(n))
    b.ip.push({"items": items, "ITER": iterations})
    chunk = p.tuned_chunksize(n, workers)
    expected = [w.cpu_work(x, iterations) for x in items[:2]]

    def ns_out_ok(_: Any) -> str | None:
        out = b.ns("out")
        return None if len(out) == n and out[:2] == expected else f"out has {len(out)} items"

    reset = functools.partial(b.ip.run_cell, "out = []")
    body = "for x in items:\n    out.append(cpu_work(x, ITER))\n"
    fn = functools.partial(w.cpu_work, iterations=iterations)
    candidates = [
        Peer(
            "serial",
            lambda: b.cell(body),
            reset,
            ns_out_ok,
            rounds=cfg.rounds["serial-slow"],
            warmup=False,
        ),
        Peer(
            "dask-magic",
            lambda: b.cell(MAGIC + "\n" + body),
            reset,
            ns_out_ok,
        ),
        Peer(
            "dask-delayed",
            lambda: p.dask_delayed(b.client, w.cpu_work, [(x, iterations) for x in items]),
            check=check_len(n),
        ),
        Peer(
            "client-map",
            lambda: p.client_map(b.client, w.cpu_work, [items, [iterations] * n]),
            check=check_len(n),
        ),
        Peer(
            "joblib",
            lambda: p.joblib_run(workers, w.cpu_work, [(x, iterations) for x in items]),
            check=check_len(n),
        ),
        Peer(
            "ppe-1",
            lambda: p.ppe_map(b.pools, w.cpu_work, [items, [iterations] * n], 1),
            check=check_len(n),
        ),
        Peer(
            "ppe-tuned",
            lambda: p.ppe_map(b.pools, w.cpu_work, [items, [iterations] * n], chunk),
            check=check_len(n),
            note=f"chunksize {chunk}",
        ),
        Peer(
            "pool-tuned",
            lambda: p.pool_imap_unordered(b.pools, fn, items, chunk),
            check=check_len(n),
            note=f"chunksize {chunk}",
        ),
        *b.physical_peers("cpu", items, check_len(n), {"iterations": iterations}),
    ]
    chosen, skipped = select(cfg, candidates)
    rows = run_rounds(chosen, cfg.rounds["cpu"], n, skipped)
    b.reset_peers()
    return {
        "name": "cpu",
        "title": f"2. CPU-bound: {n} items of about {cfg.cpu_seconds} s of pure-Python arithmetic",
        "items": n,
        "rows": rows,
        "metrics": {"iterations": iterations},
        "kind": "efficiency",
    }
