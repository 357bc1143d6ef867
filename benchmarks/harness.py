"""The measuring harness: configuration, peers and rows, interleaved rounds, the shell.

What every workload module uses: `Config` (sizes and rounds), `Peer` (one way of running the
loop) and `Row` (its times), `run_rounds` (a warm-up round, then timed rounds with the peers'
order rotating), and `Bench` (IPython's real shell with dask_magic loaded, its warm local
cluster, the stdlib pools and the physical-limit processes).

It measures; it does not judge (``targets.py``) or format (``report.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
#: How the benchmark starts a ``%%parallel_for`` cell; ``--name`` binds its run for the checks.
RUN_NAME = "_bench_run"
#: ``--fresh``: every round runs every item, as every peer does (a re-run of the same cell
#: would otherwise be restored from the journal); the journal's writes are counted, as on the
#: first run of a loop, unless ``run.py --journal off`` switches the journal off.
MAGIC = f"%%parallel_for --progress none --fresh --name {RUN_NAME}"
#: CPython's default GIL switch interval, which every peer runs with
PYTHON_SWITCH_INTERVAL = 0.005
WORKLOADS = ("tiny", "cpu", "files", "clean", "big", "fixed", "panel")
PEER_LABELS = {
    "serial": "serial loop",
    "dask-magic": "`%%parallel_for`",
    "dask-delayed": "plain Dask recipe (`delayed` + `compute(sync=True)`)",
    "client-map": "`Client.map` + `as_completed`",
    "joblib": "joblib (loky, batch_size auto)",
    "ppe-1": "`ProcessPoolExecutor` chunksize 1",
    "ppe-tuned": "`ProcessPoolExecutor` tuned chunksize",
    "pool-tuned": "`Pool.imap_unordered` tuned chunksize",
    "physical": "physical limit: one item at a time from a shared counter",
    "physical-guided": "physical limit: guided chunks from a shared counter",
    "physical-static": "physical limit: equal shares handed out in advance",
}
#: The physical-limit rows: pre-started processes, every item delivered before the clock starts,
#: nothing per item but the work; the best of them is the limit every ratio is taken against.
PHYSICAL = ("physical", "physical-guided", "physical-static")


def setup_paths() -> None:
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
    journal: str = "fresh"  # or "off": DASK_MAGIC_JOURNAL=off, the engine without the journal
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
            "cpu": 5,
            "files": 5,  # one round of a peer moved by up to 50 % on the shared 2 cores
            "clean": 5,
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
        cfg = cls(workers=workers, quick=args.quick, peers=peers, journal=args.journal)
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
                "clean": 2,
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
                with _switch_interval_for(peer):
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


@contextlib.contextmanager
def _switch_interval_for(peer: Peer) -> Iterator[None]:
    """A peer runs with Python's own GIL switch interval, as in a kernel without dask-magic
    (which lowers it while its local cluster lives: `dask_magic.engine.handoffs`)."""
    if peer.id.startswith("dask-magic"):
        yield
        return
    lowered = sys.getswitchinterval()
    sys.setswitchinterval(PYTHON_SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(lowered)


# -- the harness -----------------------------------------------------------------------------


class Bench:
    """The IPython shell with dask_magic loaded, its warm cluster, and the peers' pools."""

    def __init__(self, cfg: Config) -> None:
        import peers
        from IPython.testing.globalipapp import start_ipython

        self.cfg = cfg
        if cfg.journal == "off":
            os.environ["DASK_MAGIC_JOURNAL"] = "off"
        self.environ = dict(os.environ)  # what every non-Dask peer's processes start with
        self.ip = start_ipython()
        self.ip.run_line_magic("load_ext", "dask_magic")
        self.ip.run_cell("import numpy as np\nimport pandas as pd\nfrom bench_work import *")
        log(f"starting the local cluster: {cfg.workers} workers")
        self.cell(
            f"{MAGIC} --workers {cfg.workers}\nfor x in range({2 * cfg.workers}):\n    pass\n"
        )
        from dask_magic.engine import cluster

        self.client = cluster.get_client()
        info = cluster.cluster_info(self.client)
        self.cluster_info = {
            "workers": info.workers,
            "threads": info.threads,
            "memory": info.memory,
        }
        if dict(os.environ) != self.environ:  # nothing the cluster start set may reach the peers
            log("the cluster start changed os.environ; restored for the other peers")
            os.environ.clear()
            os.environ.update(self.environ)
        self.pools = peers.Pools(cfg.workers)
        self._physical: Any = None

    @property
    def physical(self) -> Any:
        import peers

        if self._physical is None:
            self._physical = peers.Physical(self.cfg.workers)
        return self._physical

    def physical_peers(
        self, kind: str, items: Any, check: Any, args: dict[str, Any] | None = None, note: str = ""
    ) -> list[Peer]:
        """The physical-limit rows: the same processes, items handed out three ways."""
        return [
            Peer(
                peer_id,
                functools.partial(self._physical_run, kind, items, args, mode),
                check=check,
                note=note,
            )
            for peer_id, mode in zip(PHYSICAL, ("one", "guided", "static"), strict=True)
        ]

    def _physical_run(self, kind: str, items: Any, args: Any, mode: str) -> Any:
        return self.physical.run(kind, items, args, mode)

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
        """The run of the last cell started with `MAGIC` (bound by its ``--name``)."""
        return self.ip.user_ns[RUN_NAME]

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


def check_len(expected: int) -> Callable[[Any], str | None]:
    def check(result: Any) -> str | None:
        results = getattr(result, "results", None)
        if results is not None:  # the physical limit: one list per process
            got = sum(len(r) for r in results)
        else:
            got = len(result)
        return None if got == expected else f"{got} results, expected {expected}"

    return check


# -- workloads -------------------------------------------------------------------------------


def select(
    cfg: Config, candidates: list[Peer], always: set[str] = frozenset()
) -> tuple[list[Peer], dict[str, str]]:
    chosen = [c for c in candidates if c.id in cfg.peers or c.id in always]
    skipped = {c.id: "left out with --peers" for c in candidates if c not in chosen}
    return chosen, skipped


# -- report ----------------------------------------------------------------------------------
