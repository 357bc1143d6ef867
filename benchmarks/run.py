"""dask-magic benchmark suite: every workload against the serial loop and the peers, in one run.

    python benchmarks/run.py [--workers N] [--quick] [--only NAME[,NAME]] [--json out.json]

Workloads (``--only``): ``tiny``, ``cpu``, ``files``, ``big``, ``fixed``, ``panel``.

How it measures:

* ``%%parallel_for`` runs the way users run it: cells of a real IPython shell
  (``IPython.testing.globalipapp``), on the re-used local cluster, already warm except where
  the workload is start-up (``fixed`` starts fresh processes for that).
* Every peer is warm (pools started, the loky executor re-used, the same Dask cluster).
* Each round runs every peer once, in a fixed order, and rounds repeat: the first round is the
  warm-up and is dropped, times are medians of the others. Interleaving the peers this way
  makes the ratios robust on a machine shared with other work (a slow moment hits one round
  of every peer, not all the rounds of one peer).
* Ratios are taken between figures of the same run only.

Results: a markdown report on stdout (also ``benchmarks/results/latest.md``) and the JSON
(``--json``, default ``benchmarks/results/latest.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import functools
import gc
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
WORKLOADS = ("tiny", "cpu", "files", "big", "fixed", "panel")
PEER_LABELS = {
    "serial": "serial loop",
    "dask-magic": "`%%parallel_for`",
    "dask-delayed": "plain Dask recipe (`delayed` + `compute(sync=True)`)",
    "client-map": "`Client.map` + `as_completed`",
    "joblib": "joblib (loky, batch_size auto)",
    "ppe-1": "`ProcessPoolExecutor` chunksize 1",
    "ppe-tuned": "`ProcessPoolExecutor` tuned chunksize",
    "pool-tuned": "`Pool.imap_unordered` tuned chunksize",
    "physical": "physical limit (pre-started, items sent ahead, no per-item IPC)",
}


def _setup_paths() -> None:
    """This checkout's dask_magic and bench_work, here and in every spawned process."""
    for path in (str(ROOT), str(HERE)):
        if path not in sys.path:
            sys.path.insert(0, path)
    extra = [str(HERE), str(ROOT)]
    if os.environ.get("PYTHONPATH"):
        extra.append(os.environ["PYTHONPATH"])
    os.environ["PYTHONPATH"] = os.pathsep.join(extra)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- configuration ---------------------------------------------------------------------------


@dataclass
class Config:
    workers: int
    quick: bool
    peers: set[str]
    tiny_items: int = 10_000
    tiny_task_subset: int = 1_000  # per-item-task peers on tiny items: time this many
    cpu_seconds: float = 0.1
    cpu_per_worker: int = 8
    files: int = 200
    rows: int = 50_000
    big_elements: int = 25_000_000  # 200 MB of float64
    panel_big_items: int = 100_000
    rounds: dict[str, int] = field(
        default_factory=lambda: {
            "tiny": 7,
            "cpu": 3,
            "files": 3,
            "big": 3,
            "fixed": 25,
            "fresh": 3,
            "serial-slow": 2,
        }
    )

    @classmethod
    def make(cls, args: argparse.Namespace, workers: int) -> Config:
        peers = set(PEER_LABELS) if not args.peers else set(args.peers.split(","))
        peers |= {"serial", "dask-magic"}
        cfg = cls(workers=workers, quick=args.quick, peers=peers)
        if args.quick:
            cfg.tiny_task_subset = 200
            cfg.cpu_seconds = 0.05
            cfg.files, cfg.rows = 40, 10_000
            cfg.big_elements = 6_250_000  # 50 MB
            cfg.panel_big_items = 30_000
            cfg.rounds = {
                "tiny": 3,
                "cpu": 2,
                "files": 2,
                "big": 2,
                "fixed": 10,
                "fresh": 1,
                "serial-slow": 1,
            }
        if args.rounds:
            cfg.rounds = {k: min(v, args.rounds) for k, v in cfg.rounds.items()}
        return cfg


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Peer:
    id: str
    run: Callable[[], Any]
    before: Callable[[], None] | None = None
    check: Callable[[Any], str | None] | None = None  # None when right, else what is wrong
    items: int | None = None  # items this peer's time covers (when it is a subset)
    note: str = ""
    label: str = ""
    rounds: int | None = None  # fewer rounds for a slow peer (the serial loop at scale)
    follows: bool = False  # runs right after the peer before it (a re-run of the same cell)
    warmup: bool = True  # the serial loop of a slow workload has nothing to warm up


@dataclass
class Row:
    peer: str
    label: str
    times: list[float] = field(default_factory=list)
    items: int = 0
    note: str = ""
    skipped: str = ""
    problem: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "label": self.label,
            "times_s": self.times,
            "median_s": self.median,
            "items": self.items,
            "note": self.note,
            "skipped": self.skipped,
            "problem": self.problem,
        }


#: Pause between two peers (longer after a long one), so that one peer's aftermath (memory
#: being returned, processes going idle) is not charged to the next.
SETTLE_SECONDS, SETTLE_AFTER_LONG_SECONDS = 0.05, 0.5


def _units(peers: list[Peer]) -> list[list[Peer]]:
    units: list[list[Peer]] = []
    for peer in peers:
        if peer.follows and units:
            units[-1].append(peer)
        else:
            units.append([peer])
    return units


def run_rounds(
    peers: list[Peer], rounds: int, n_items: int, skipped: dict[str, str] | None = None
) -> dict[str, Row]:
    """Warm-up round + ``rounds`` timed rounds, peers interleaved in each round.

    The order of the peers rotates from round to round, so that no peer always runs right
    after the same neighbour (a heavy peer leaves the machine busy for a moment).
    """
    rows = {
        p.id: Row(
            p.id, p.label or PEER_LABELS.get(p.id, p.id), items=p.items or n_items, note=p.note
        )
        for p in peers
    }
    for peer_id, reason in (skipped or {}).items():
        rows[peer_id] = Row(peer_id, PEER_LABELS.get(peer_id, peer_id), skipped=reason)
        log(f"    skip {peer_id}: {reason}")
    units = _units(peers)
    for round_no in range(rounds + 1):
        shift = round_no % len(units)
        order = [peer for unit in units[shift:] + units[:shift] for peer in unit]
        for peer in order:
            limit = peer.rounds if peer.rounds is not None else rounds
            if round_no > limit or (round_no == 0 and not peer.warmup):
                continue
            row = rows[peer.id]
            if row.problem:
                continue
            if peer.before is not None:
                peer.before()
            gc.collect()
            start = time.perf_counter()
            try:
                result = peer.run()
            except Exception as exc:  # a broken peer is reported, not fatal to the suite
                row.problem = f"{type(exc).__name__}: {exc}"
                log(f"    {peer.id}: FAILED {row.problem}")
                continue
            elapsed = time.perf_counter() - start
            if type(result).__name__ == "Elapsed":
                elapsed = float(result)
            if peer.check is not None and (round_no == 0 or round_no == limit or not row.times):
                wrong = peer.check(result)
                if wrong:
                    row.problem = f"wrong result: {wrong}"
                    log(f"    {peer.id}: {row.problem}")
            if round_no > 0:
                row.times.append(elapsed)
            log(
                f"    round {round_no} {peer.id}: {elapsed * 1e3:.1f} ms"
                + (" (warm-up)" if round_no == 0 else "")
            )
            time.sleep(
                SETTLE_AFTER_LONG_SECONDS if time.perf_counter() - start > 1.0 else SETTLE_SECONDS
            )
    return rows


# -- the harness -----------------------------------------------------------------------------


class Bench:
    """The IPython shell with dask_magic loaded, its warm cluster, and the peers' pools."""

    def __init__(self, cfg: Config) -> None:
        import peers
        from IPython.testing.globalipapp import start_ipython

        self.cfg = cfg
        self.ip = start_ipython()
        self.ip.run_line_magic("load_ext", "dask_magic")
        self.ip.run_cell("import numpy as np\nimport pandas as pd\nfrom bench_work import *")
        log(f"starting the local cluster: {cfg.workers} workers")
        self.cell(
            f"%%parallel_for --progress none --workers {cfg.workers}\nfor x in range({2 * cfg.workers}):\n    pass\n"
        )
        from dask_magic.engine import cluster

        self.client = cluster.get_client()
        info = cluster.cluster_info(self.client)
        self.cluster_info = {
            "workers": info.workers,
            "threads": info.threads,
            "memory": info.memory,
        }
        self.pools = peers.Pools(cfg.workers)
        self._physical: Any = None

    @property
    def physical(self) -> Any:
        import peers

        if self._physical is None:
            self._physical = peers.Physical(self.cfg.workers)
        return self._physical

    def cell(self, source: str) -> Any:
        """Run a cell as a user would (its output is kept off the report)."""
        with contextlib.redirect_stdout(io.StringIO()):
            result = self.ip.run_cell(source)
        if not result.success:
            raise RuntimeError(
                f"cell failed: {result.error_before_exec or result.error_in_exec!r}\n{source}"
            )
        return result.result

    def last_run(self) -> Any:
        from dask_magic import magics

        return magics._MAGICS[id(self.ip)].last_run

    def ns(self, name: str) -> Any:
        return self.ip.user_ns[name]

    def reset_peers(self) -> None:
        self.pools.close()
        if self._physical is not None:
            self._physical.close()
            self._physical = None

    def close(self) -> None:
        self.reset_peers()
        try:
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=True)
        except Exception:
            pass
        from dask_magic.engine import cluster

        cluster.close_cluster()


def _check_len(expected: int) -> Callable[[Any], str | None]:
    def check(result: Any) -> str | None:
        results = getattr(result, "results", None)
        if results is not None:  # the physical limit: one list per process
            got = sum(len(r) for r in results)
        else:
            got = len(result)
        return None if got == expected else f"{got} results, expected {expected}"

    return check


# -- workloads -------------------------------------------------------------------------------


def workload_tiny(b: Bench) -> dict[str, Any]:
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
            lambda: b.cell(
                "%%parallel_for --progress none\nfor x in items:\n    out.append(x + 1)\n"
            ),
            reset,
            ns_out_ok,
        ),
        Peer(
            "dask-delayed",
            lambda: p.dask_delayed(b.client, w.inc, [(x,) for x in items[:m]]),
            check=_check_len(m),
            items=m,
            note=f"one task per item: timed on the first {m:,} items",
        ),
        Peer(
            "client-map",
            lambda: p.client_map(b.client, w.inc, [items[:m]]),
            check=_check_len(m),
            items=m,
            note=f"one task per item: timed on the first {m:,} items",
        ),
        Peer(
            "joblib",
            lambda: p.joblib_run(workers, w.inc, [(x,) for x in items]),
            check=_check_len(n),
        ),
        Peer("ppe-1", lambda: p.ppe_map(b.pools, w.inc, [items], 1), check=_check_len(n)),
        Peer(
            "ppe-tuned",
            lambda: p.ppe_map(b.pools, w.inc, [items], chunk),
            check=_check_len(n),
            note=f"chunksize {chunk}",
        ),
        Peer(
            "pool-tuned",
            lambda: p.pool_imap_unordered(b.pools, w.inc, items, chunk),
            check=_check_len(n),
            note=f"chunksize {chunk}",
        ),
        Peer("physical", lambda: b.physical.run("tiny", items), check=_check_len(n)),
    ]
    chosen, skipped = _select(cfg, candidates)
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


def workload_cpu(b: Bench) -> dict[str, Any]:
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
            lambda: b.cell("%%parallel_for --progress none\n" + body),
            reset,
            ns_out_ok,
        ),
        Peer(
            "dask-delayed",
            lambda: p.dask_delayed(b.client, w.cpu_work, [(x, iterations) for x in items]),
            check=_check_len(n),
        ),
        Peer(
            "client-map",
            lambda: p.client_map(b.client, w.cpu_work, [items, [iterations] * n]),
            check=_check_len(n),
        ),
        Peer(
            "joblib",
            lambda: p.joblib_run(workers, w.cpu_work, [(x, iterations) for x in items]),
            check=_check_len(n),
        ),
        Peer(
            "ppe-1",
            lambda: p.ppe_map(b.pools, w.cpu_work, [items, [iterations] * n], 1),
            check=_check_len(n),
        ),
        Peer(
            "ppe-tuned",
            lambda: p.ppe_map(b.pools, w.cpu_work, [items, [iterations] * n], chunk),
            check=_check_len(n),
            note=f"chunksize {chunk}",
        ),
        Peer(
            "pool-tuned",
            lambda: p.pool_imap_unordered(b.pools, fn, items, chunk),
            check=_check_len(n),
            note=f"chunksize {chunk}",
        ),
        Peer(
            "physical",
            lambda: b.physical.run("cpu", items, {"iterations": iterations}),
            check=_check_len(n),
        ),
    ]
    chosen, skipped = _select(cfg, candidates)
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


def workload_files(b: Bench) -> dict[str, Any]:
    import bench_work as w
    import data
    import peers as p

    cfg, workers = b.cfg, b.cfg.workers
    log(
        f"  data: {cfg.files} files x {cfg.rows:,} rows (written once under benchmarks/results/data)"
    )
    paths = data.dataset(RESULTS / "data", cfg.files, cfg.rows, processes=os.cpu_count() or 1)
    n, bad = len(paths), data.n_corrupt(len(paths))
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
        "%%parallel_for --progress none\n"
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
        Peer("physical", lambda: b.physical.run("files", paths), check=peer_ok),
    ]
    chosen, skipped = _select(cfg, candidates)
    rows = run_rounds(chosen, cfg.rounds["files"], n, skipped)
    b.reset_peers()
    return {
        "name": "files",
        "title": f"3. file loop: {n} CSV files x {cfg.rows:,} rows, {bad} corrupt; read_csv + groupby",
        "items": n,
        "rows": rows,
        "metrics": {"corrupt": bad},
        "kind": "efficiency",
    }


def workload_big(b: Bench) -> dict[str, Any]:
    import bench_work as w
    import numpy as np
    import peers as p

    from dask_magic.engine import scatter

    cfg, workers = b.cfg, b.cfg.workers
    n = 4 * workers
    items = list(range(n))
    size = cfg.big_elements
    mb = size * 8 / 1e6
    b.ip.push({"items": items})
    state: dict[str, Any] = {"k": 0}

    def fresh_big() -> None:  # a new object with new content: nothing can be re-used
        state["k"] += 1
        big = np.arange(size, dtype=np.float64) + state["k"]
        state["big"] = big
        b.ip.push({"big": big, "out": []})

    def small_big() -> None:
        b.ip.push({"big": np.arange(1000, dtype=np.float64), "out": []})

    def same_big() -> None:
        b.ip.push({"big": state["big"], "out": []})

    def ns_out_ok(_: Any) -> str | None:
        return None if len(b.ns("out")) == n else f"out has {len(b.ns('out'))} items"

    def scatter_then_compute() -> Any:
        import dask

        state["scattered"] = fut = b.client.scatter(state["big"], broadcast=True)
        return b.client.compute([dask.delayed(w.big_item)(fut, x) for x in items], sync=True)

    def compute_with_kept_future() -> Any:
        import dask

        fut = state.pop("scattered")
        return b.client.compute([dask.delayed(w.big_item)(fut, x) for x in items], sync=True)

    def client_map_scattered() -> Any:
        fut = b.client.scatter(state["big"], broadcast=True)
        return p.client_map(b.client, w.big_item_x, [items], big=fut)

    fresh_big()
    b.physical.load(state["big"])
    chunk = p.tuned_chunksize(n, workers)
    body = "for x in items:\n    out.append(big_item(big, x))\n"
    magic = "%%parallel_for --progress none\n" + body
    candidates = [
        Peer("serial", lambda: b.cell(body), same_big, ns_out_ok),
        Peer(
            "dask-magic-small",
            lambda: b.cell(magic),
            small_big,
            ns_out_ok,
            label="`%%parallel_for`, 8 KB object",
            note="the same cell without the big object: the time of everything but its transfer",
        ),
        Peer(
            "dask-magic",
            lambda: b.cell(magic),
            fresh_big,
            ns_out_ok,
            label="`%%parallel_for`, first run",
            note="a new object each round",
        ),
        Peer(
            "dask-magic-rerun",
            lambda: b.cell(magic),
            same_big,
            ns_out_ok,
            label="`%%parallel_for`, re-run, object unchanged",
            follows=True,
        ),
        Peer(
            "dask-delayed",
            lambda: p.dask_delayed(b.client, w.big_item, [(state["big"], x) for x in items]),
            check=_check_len(n),
            label="plain Dask recipe, naive (array in every task)",
        ),
        Peer(
            "dask-scatter",
            scatter_then_compute,
            check=_check_len(n),
            label="plain Dask recipe, manual `scatter(broadcast=True)`",
            note="scatter included",
        ),
        Peer(
            "dask-scatter-rerun",
            compute_with_kept_future,
            check=_check_len(n),
            label="plain Dask recipe, re-run with the scattered future kept",
            follows=True,
        ),
        Peer(
            "client-map",
            client_map_scattered,
            check=_check_len(n),
            note="scattered first (`Client.map(f, items, big=big)` re-uses the key 'big' across calls)",
        ),
        Peer(
            "joblib",
            lambda: p.joblib_run(workers, w.big_item, [(state["big"], x) for x in items]),
            check=_check_len(n),
            note="auto-memmapped by loky",
        ),
        Peer(
            "ppe-tuned",
            lambda: p.ppe_map(b.pools, w.big_item, [[state["big"]] * n, items], chunk),
            check=_check_len(n),
            note=f"chunksize {chunk}: pickled per chunk",
        ),
        Peer(
            "pool-tuned",
            lambda: p.pool_imap_unordered(
                b.pools, functools.partial(w.big_item, state["big"]), items, chunk
            ),
            check=_check_len(n),
            note=f"chunksize {chunk}: pickled per chunk",
        ),
        Peer(
            "physical",
            lambda: b.physical.run("big", items),
            check=_check_len(n),
            note="object loaded into each process before the clock starts",
        ),
    ]
    skipped = {}
    if chunk == 1 and "ppe-1" in cfg.peers:
        skipped["ppe-1"] = "the tuned chunksize is 1 here: same as the ppe-tuned row"
    chosen, more_skipped = _select(
        cfg,
        candidates,
        always={"dask-magic-small", "dask-magic-rerun", "dask-scatter", "dask-scatter-rerun"},
    )
    skipped.update(more_skipped)
    # The peers that pickle the array into every task (1.6 GB per call) run in a phase of their
    # own, after the others: on the 2-core machine they left every later scatter 2-4x slower
    # for as long as their processes lived, whatever came after them.
    heavy = {"dask-delayed", "ppe-tuned", "pool-tuned"}
    rows = run_rounds([c for c in chosen if c.id not in heavy], cfg.rounds["big"], n, skipped)
    rows.update(run_rounds([c for c in chosen if c.id in heavy], cfg.rounds["big"], n))
    b.reset_peers()
    b.ip.push({"big": None})
    state.clear()
    scatter.default_cache.clear()
    med = {k: r.median for k, r in rows.items()}
    metrics: dict[str, Any] = {"object_mb": mb}
    if med.get("dask-magic") and med.get("dask-magic-small") is not None:
        metrics["transfer_first_s"] = med["dask-magic"] - med["dask-magic-small"]
        metrics["transfer_rerun_s"] = max(0.0, med["dask-magic-rerun"] - med["dask-magic-small"])
    return {
        "name": "big",
        "title": f"4. big object: a {mb:.0f} MB array read by each of {n} items",
        "items": n,
        "rows": rows,
        "metrics": metrics,
        "kind": "time",
    }


def workload_fixed(b: Bench) -> dict[str, Any]:
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
            lambda: b.cell(
                "%%parallel_for --progress none\nfor x in [1]:\n    out.append(inc(x))\n"
            ),
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
        "fresh kernel: first `%%parallel_for` cell, 1 item (starts the cluster)",
        times=[r["first_cell_s"] for r in fresh["magic"]],
        items=1,
        note="`%load_ext dask_magic` not counted",
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
    return {
        "name": "fixed",
        "title": "5. fixed cost: a 1-item loop",
        "items": 1,
        "rows": rows,
        "metrics": metrics,
        "kind": "time",
    }


class _Counting:
    """Counts comm messages (the widget traffic to the browser) and observer updates."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, str]] = []
        self.updates: list[float] = []


def workload_panel(b: Bench) -> dict[str, Any]:
    import comm
    from comm.base_comm import BaseComm

    counting = _Counting()

    class CountingComm(BaseComm):
        def publish_msg(
            self,
            msg_type: str,
            data: Any = None,
            metadata: Any = None,
            buffers: Any = None,
            **keys: Any,
        ) -> None:
            counting.messages.append((time.perf_counter(), msg_type))

    original_create = comm.create_comm
    comm.create_comm = lambda *a, **kw: CountingComm(*a, **kw)
    how = "ProgressPanel (ipywidgets) with a counting comm"
    try:
        from dask_magic.ui import panel as panel_module

        target = panel_module.ProgressPanel
    except ImportError:  # the panel is not there yet: count the Run's observer calls instead
        panel_module = None
        how = "no panel module: a counting Run observer"
        target = None
    original_update = getattr(target, "update", None)

    if target is not None:

        def update(self: Any, snapshot: Any) -> None:
            counting.updates.append(time.perf_counter())
            return original_update(self, snapshot)

        target.update = update
    else:
        from dask_magic import magics

        class CountingObserver:
            def update(self, snapshot: Any) -> None:
                counting.updates.append(time.perf_counter())

            def finish(self, snapshot: Any) -> None:
                pass

        original_observers = magics._observers
        magics._observers = lambda progress: [CountingObserver()]

    import data

    data_paths = data.dataset(
        RESULTS / "data", b.cfg.files, b.cfg.rows, processes=os.cpu_count() or 1
    )
    cases = [
        (
            "tiny",
            f"{b.cfg.tiny_items:,} tiny items",
            list(range(b.cfg.tiny_items)),
            "for x in items:\n    out.append(x + 1)\n",
        ),
        (
            "tiny-many",
            f"{b.cfg.panel_big_items:,} tiny items",
            list(range(b.cfg.panel_big_items)),
            "for x in items:\n    out.append(x + 1)\n",
        ),
    ]
    if data_paths:
        cases.append(
            (
                "files",
                f"{len(data_paths)} files",
                data_paths,
                "for path in items:\n    df = pd.read_csv(path)\n    out.append(df.groupby('key')['value'].sum())\n",
            )
        )
    results = []
    try:
        for case, label, items, body in cases:
            b.ip.push({"items": items, "out": []})
            counting.messages.clear()
            counting.updates.clear()
            start = time.perf_counter()
            b.cell(
                f"%%parallel_for --progress {'widget' if target is not None else 'none'}\n" + body
            )
            duration = time.perf_counter() - start
            msgs = [t for t, kind in counting.messages if kind == "comm_msg"]
            gaps = [b2 - a for a, b2 in zip(counting.updates, counting.updates[1:])]
            results.append(
                {
                    "case": case,
                    "label": label,
                    "duration_s": duration,
                    "updates": len(counting.updates),
                    "comm_messages": len(msgs),
                    "comm_opens": sum(1 for _, k in counting.messages if k == "comm_open"),
                    "updates_per_s": len(counting.updates) / duration,
                    "messages_per_s": len(msgs) / duration,
                    "min_gap_s": min(gaps) if gaps else None,
                }
            )
            log(f"    panel {case}: {results[-1]}")
    finally:
        comm.create_comm = original_create
        if target is not None:
            target.update = original_update
        else:
            magics._observers = original_observers
    return {
        "name": "panel",
        "title": "6. panel: messages sent while a run is live",
        "items": 0,
        "rows": {},
        "metrics": {"how": how, "cases": results},
        "kind": "panel",
    }


def _select(
    cfg: Config, candidates: list[Peer], always: set[str] = frozenset()
) -> tuple[list[Peer], dict[str, str]]:
    chosen = [c for c in candidates if c.id in cfg.peers or c.id in always]
    skipped = {c.id: "left out with --peers" for c in candidates if c not in chosen}
    return chosen, skipped


# -- report ----------------------------------------------------------------------------------


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


def _load(values: list[float] | None) -> str:
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
        table[key] = d
    result["table"] = table


def targets(results: dict[str, dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    """Each target of issue 6, with the figures it was judged on."""
    found: list[dict[str, Any]] = []

    def add(name: str, value: str, goal: str, met: bool | None, detail: str = "") -> None:
        found.append(
            {"target": name, "measured": value, "goal": goal, "met": met, "detail": detail}
        )

    def med(workload: str, peer: str, key: str = "median_s") -> float | None:
        return results.get(workload, {}).get("table", {}).get(peer, {}).get(key)

    if "tiny" in results:
        magic, joblib_, delayed = (
            med("tiny", k, "per_item_s") for k in ("dask-magic", "joblib", "dask-delayed")
        )
        if magic and joblib_:
            add(
                "tiny: time per item <= joblib's",
                f"{magic * 1e6:.1f} µs vs {joblib_ * 1e6:.1f} µs",
                "ratio <= 1",
                magic <= joblib_,
                f"ratio {magic / joblib_:.2f}",
            )
        if magic and delayed:
            add(
                "tiny: >= 200x faster than the plain Dask recipe",
                f"{delayed / magic:,.0f}x",
                ">= 200x",
                delayed / magic >= 200,
                f"{delayed * 1e6:,.0f} µs vs {magic * 1e6:.1f} µs per item",
            )
    for workload in ("cpu", "files"):
        if workload not in results:
            continue
        table = results[workload]["table"]
        eff = {k: v.get("efficiency") for k, v in table.items() if v.get("efficiency") is not None}
        magic, phys = eff.get("dask-magic"), eff.get("physical")
        if magic and phys:
            add(
                f"{workload}: efficiency >= 0.95 x physical limit",
                f"{magic:.3f} vs {phys:.3f}",
                ">= 0.95",
                magic >= 0.95 * phys,
                f"ratio {magic / phys:.3f}",
            )
        others = {k: v for k, v in eff.items() if k not in ("dask-magic", "physical", "serial")}
        if magic and others:
            best = max(others, key=others.get)
            add(
                f"{workload}: ahead of every peer",
                f"{magic:.3f} vs best peer {best} {others[best]:.3f}",
                "> every peer",
                magic >= max(others.values()),
                "",
            )
    if "big" in results:
        m = results["big"]["metrics"]
        first, scatter_ = med("big", "dask-magic"), med("big", "dask-scatter")
        if first and scatter_:
            add(
                "big: first run no slower than manual scatter",
                f"{first:.3f} s vs {scatter_:.3f} s",
                "<= 1.0x",
                first <= scatter_,
                f"ratio {first / scatter_:.2f}",
            )
        if "transfer_first_s" in m:
            tf, tr = m["transfer_first_s"], m["transfer_rerun_s"]
            add(
                "big: re-run transfer <= 0.1 x first run's",
                f"{tr * 1e3:.1f} ms vs {tf * 1e3:.1f} ms",
                "<= 0.1",
                tf > 0 and tr <= 0.1 * tf,
                f"ratio {tr / tf:.3f}" if tf > 0 else "",
            )
    if "fixed" in results:
        cell, submit = med("fixed", "dask-magic"), med("fixed", "submit")
        if cell and submit:
            add(
                "fixed: warm 1-item cell <= 2 x client.submit round trip",
                f"{cell * 1e3:.1f} ms vs {submit * 1e3:.1f} ms",
                "<= 2.0x",
                cell <= 2 * submit,
                f"ratio {cell / submit:.2f}",
            )
        first, start = med("fixed", "fresh-magic"), med("fixed", "fresh-cluster")
        inside = results["fixed"]["metrics"].get("first_cell_minus_its_cluster_start_s")
        if first and start:
            add(
                "fixed: first cell <= cluster start + 0.3 s (separate processes)",
                f"{first:.2f} s vs {start:.2f} s + 0.3 s",
                "<= +0.3 s",
                first <= start + 0.3,
                f"difference {first - start:+.2f} s",
            )
        if inside is not None:
            add(
                "fixed: first cell <= cluster start + 0.3 s (the start inside that cell)",
                f"{inside:+.3f} s beyond its own cluster start",
                "<= +0.3 s",
                inside <= 0.3,
                "",
            )
    if "panel" in results:
        cases = results["panel"]["metrics"]["cases"]
        for case in cases:
            long_enough = case["duration_s"] >= 1.0
            gap = case["min_gap_s"]
            add(
                f"panel: about 10 updates per second at most ({case['label']})",
                f"{case['updates']} updates, {case['comm_messages']} comm messages in {case['duration_s']:.2f} s",
                "<= ~10 /s",
                (gap is None or gap >= 0.09) and (not long_enough or case["updates_per_s"] <= 11),
                f"{case['updates_per_s']:.1f} updates/s, {case['messages_per_s']:.1f} msgs/s"
                + (f", min gap {gap * 1e3:.0f} ms" if gap else ""),
            )
    return found


def markdown(report: dict[str, Any]) -> str:
    m, w = report["machine"], report["workers"]
    lines = [
        f"### dask-magic benchmarks: {w} workers on {m['cores']} cores ({m['cpu']}), {m['date']}",
        "",
        f"Python {m['python']}, dask {m['dask']}, distributed {m['distributed']}, joblib {m['joblib']}; "
        f"{report['mode']}; times are medians of {report['rounds_note']} after a warm-up round, peers interleaved; "
        f"load average {_load(m.get('load_average_at_start'))} at the start, {_load(report.get('load_average_at_end'))} at the end.",
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
                "| run | duration | panel updates | updates/s | comm messages | messages/s | closest updates |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for c in result["metrics"]["cases"]:
                gap = f"{c['min_gap_s'] * 1e3:.0f} ms apart" if c["min_gap_s"] else "-"
                lines.append(
                    f"| {c['label']} | {c['duration_s']:.2f} s | {c['updates']} | {c['updates_per_s']:.1f} | "
                    f"{c['comm_messages']} | {c['messages_per_s']:.1f} | {gap} |"
                )
            lines.append("")
            continue
        efficiency = result["kind"] == "efficiency"
        header = (
            "| peer | median | per item | "
            + ("speedup | efficiency | " if efficiency else "")
            + "vs `%%parallel_for` | note |"
        )
        lines += [
            header,
            "| " + " | ".join(["---"] + ["---:"] * (header.count("|") - 3) + ["---"]) + " |",
        ]
        for key, d in result["table"].items():
            if d["skipped"] or d["problem"]:
                why = " ".join((d["skipped"] or d["problem"]).split()).replace("|", "/")[:200]
                lines.append(
                    f"| {d['label']} | skipped | | " + ("| | " if efficiency else "") + f"| {why} |"
                )
                continue
            cells = [d["label"], _ms(d["median_s"]), _us(d.get("per_item_s"))]
            if efficiency:
                cells += [
                    f"{d['speedup']:.2f}x" if "speedup" in d else "-",
                    f"{d['efficiency']:.3f}" if "efficiency" in d else "-",
                ]
            cells += [f"{d['vs_dask_magic']:.2f}" if "vs_dask_magic" in d else "-", d["note"]]
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
        lines += [
            "#### Targets",
            "",
            "| target | measured | goal | met | detail |",
            "| --- | --- | --- | --- | --- |",
        ]
        for t in report["targets"]:
            met = "yes" if t["met"] else ("no" if t["met"] is False else "-")
            lines.append(
                f"| {t['target']} | {t['measured']} | {t['goal']} | {met} | {t['detail']} |"
            )
        lines.append("")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def default_workers() -> int:
    """What ``%%parallel_for`` would start on this machine."""
    from dask.system import CPU_COUNT

    from dask_magic.engine import cluster

    return cluster._local_cluster_size(CPU_COUNT, cluster._memory_budget()).workers


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
        "--json", type=Path, help="where to write the JSON (default benchmarks/results/latest.json)"
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        help="where to write the report (default benchmarks/results/latest.md)",
    )
    args = parser.parse_args(argv)
    _setup_paths()
    only = WORKLOADS if not args.only else tuple(args.only.split(","))
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    workers = args.workers or default_workers()
    cfg = Config.make(args, workers)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": machine(),
        "workers": workers,
        "mode": "quick" if cfg.quick else "full",
        "rounds": cfg.rounds,
        "results": {},
    }
    log(f"machine: {report['machine']}")
    bench = Bench(cfg)
    report["cluster"] = bench.cluster_info
    functions = {
        "tiny": workload_tiny,
        "cpu": workload_cpu,
        "files": workload_files,
        "big": workload_big,
        "fixed": workload_fixed,
        "panel": workload_panel,
    }
    json_path = args.json or RESULTS / "latest.json"
    md_path = args.markdown or RESULTS / "latest.md"
    report["rounds_note"] = ", ".join(
        f"{v} ({k})" for k, v in cfg.rounds.items() if k in only or k in ("fresh", "serial-slow")
    )

    def write() -> str:  # after every workload: a run cut short still leaves its results
        report["targets"] = targets(report["results"], workers)
        report["seconds"] = time.perf_counter() - started
        report["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        text = markdown(report)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1, default=str))
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(text)
        return text

    try:
        for name in only:
            log(f"workload {name}")
            result = functions[name](bench)
            if result["rows"]:
                derive(result, workers)
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
