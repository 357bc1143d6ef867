"""Workload 3: the loop dask-magic is made for, ``read_csv`` + groupby over CSV files,
with 5 % corrupt files (``files``) and without them (``clean``)."""

from __future__ import annotations

import functools
import os
from typing import Any

from harness import MAGIC, RESULTS, Bench, Peer, log, run_rounds, select


def run(b: Bench) -> dict[str, Any]:
    """The file loop over every file, 5 % of them corrupt."""
    return _file_loop(b, corrupt=True)


def run_clean(b: Bench) -> dict[str, Any]:
    """The same loop over the good files only."""
    return _file_loop(b, corrupt=False)


def _file_loop(b: Bench, corrupt: bool) -> dict[str, Any]:
    import bench_work as w
    import data
    import peers as p

    cfg, workers = b.cfg, b.cfg.workers
    log(
        f"  data: {cfg.files} files x {cfg.rows:,} rows "
        "(written once under benchmarks/results/data)"
    )
    paths = data.dataset(RESULTS / "data", cfg.files, cfg.rows, processes=os.cpu_count() or 1)
    if not corrupt:
        paths = [path for i, path in enumerate(paths) if not data.corrupt_kind(i)]
    n, bad = len(paths), data.n_corrupt(cfg.files) if corrupt else 0
    good = n - bad
    b.ip.push({"paths": paths})
    chunk = p.tuned_chunksize(n, workers)

    def serial_ok(_: Any) -> str | None:
        return None if (len(b.ns("out")), len(b.ns("errors"))) == (good, bad) else "wrong counts"

    def magic_ok(_: Any) -> str | None:
        run = b.last_run()
        counts = (len(b.ns("out")), run.counts.failed)
        return None if counts == (good, bad) else f"{counts} (done, failed), expected {(good, bad)}"

    def peer_ok(result: Any) -> str | None:
        results = getattr(result, "results", None)
        flat = [r for share in results for r in share] if results is not None else list(result)
        ok = sum(1 for status, _ in flat if status == "ok")
        return None if (ok, len(flat) - ok) == (good, bad) else f"{ok} ok of {len(flat)}"

    reset = functools.partial(b.ip.run_cell, "out = []\nerrors = []")
    serial_body = (
        "for path in paths:\n"
        "    try:\n"
        "        df = pd.read_csv(path)\n"
        "        out.append(df.groupby('key')['value'].sum())\n"
        "    except Exception as exc:\n"
        "        errors.append((path, exc))\n"
    )
    magic_body = (
        f"{MAGIC}\n"
        "for path in paths:\n"
        "    df = pd.read_csv(path)\n"
        "    out.append(df.groupby('key')['value'].sum())\n"
    )
    candidates = [
        Peer(
            "serial",
            lambda: b.cell(serial_body),
            reset,
            serial_ok,
            rounds=cfg.rounds["serial-slow"],
            warmup=False,
            note="try/except per item",
        ),
        Peer(
            "dask-magic",
            lambda: b.cell(magic_body),
            reset,
            magic_ok,
            note="failures captured by the magic",
        ),
        Peer(
            "dask-delayed",
            lambda: p.dask_delayed(b.client, w.summarize_safe, [(x,) for x in paths]),
            check=peer_ok,
        ),
        Peer(
            "client-map", lambda: p.client_map(b.client, w.summarize_safe, [paths]), check=peer_ok
        ),
        Peer(
            "joblib",
            lambda: p.joblib_run(workers, w.summarize_safe, [(x,) for x in paths]),
            check=peer_ok,
        ),
        Peer("ppe-1", lambda: p.ppe_map(b.pools, w.summarize_safe, [paths], 1), check=peer_ok),
        Peer(
            "ppe-tuned",
            lambda: p.ppe_map(b.pools, w.summarize_safe, [paths], chunk),
            check=peer_ok,
            note=f"chunksize {chunk}",
        ),
        Peer(
            "pool-tuned",
            lambda: p.pool_imap_unordered(b.pools, w.summarize_safe, paths, chunk),
            check=peer_ok,
            note=f"chunksize {chunk}",
        ),
        *b.physical_peers("files", paths, peer_ok),
    ]
    name = "files" if corrupt else "clean"
    chosen, skipped = select(cfg, candidates)
    rows = run_rounds(chosen, cfg.rounds[name], n, skipped)
    b.reset_peers()
    number = "3." if corrupt else "3b."
    return {
        "name": name,
        "title": f"{number} file loop: {n} CSV files x {cfg.rows:,} rows, {bad} corrupt; "
        "read_csv + groupby",
        "items": n,
        "rows": rows,
        "metrics": {"corrupt": bad},
        "kind": "efficiency",
    }
