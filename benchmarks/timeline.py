"""Where the time of a ``%%parallel_for`` cell goes: a timeline per worker of its tasks.

    python benchmarks/timeline.py --only cpu,files,tiny,sleep,pass --rounds 3
    python benchmarks/timeline.py --only files --magic "--batch 1"

Runs the cells of ``run.py`` (and a ``pass`` and a ``sleep(0.1)`` cell) in IPython's real
shell inside ``distributed.get_task_stream``, and wraps `DaskRun.submit` /
`DaskRun._load_finished` to see what the kernel sent (items per task, time budgets) and what
came back (items run, items returned unstarted). Prints, per round: the cell's wall time, per
worker its busy time (the tasks' compute) and idle time inside the cell (before the first
task, between tasks, after the last), the CPU seconds of every process and of the kernel's
threads, and a ``SUMMARY`` line. CPU seconds and task counts say more than wall times on a
shared machine (though the task sizes follow the items' measured times, and so the load).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from harness import MAGIC  # noqa: E402


class Recorder:
    """What the kernel submitted and got back during one cell."""

    def __init__(self) -> None:
        self.submitted: list[tuple[float, list[int], float | None]] = []
        self.returned: list[tuple[float, int, int]] = []  # when, items run, items sent back
        self.durations: list[float] = []

    def install(self) -> None:
        from dask_magic.engine import execute

        submit, load = execute.DaskRun.submit, execute.DaskRun._load_finished
        rec = self

        def submit_wrapped(run: Any, batches: Any, budget: Any = None, payloads: Any = None):
            rec.submitted.append((time.time(), [len(b) for b in batches], budget))
            return submit(run, batches, budget, payloads)

        def load_wrapped(run: Any, finished: Any) -> Any:
            sizes = {f: len(run.in_flight.get(f, ())) for f in finished}
            sent = load(run, finished)
            for (got, _), size in zip(sent, sizes.values(), strict=False):
                rec.returned.append((time.time(), len(got), size - len(got)))
                rec.durations += got.durations
            return sent

        execute.DaskRun.submit = submit_wrapped  # type: ignore[method-assign]
        execute.DaskRun._load_finished = load_wrapped  # type: ignore[method-assign]


def worker_lines(stream: list[dict], start: float, end: float) -> list[str]:
    """Busy and idle time per worker inside [start, end], from the task stream."""
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for task in stream:
        for ss in task["startstops"]:
            if ss["action"] == "compute":
                by_worker.setdefault(task["worker"], []).append((ss["start"], ss["stop"]))
    lines = []
    for worker, spans in sorted(by_worker.items()):
        spans.sort()
        busy = sum(b - a for a, b in spans)
        head = spans[0][0] - start
        tail = end - spans[-1][1]
        gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
        lines.append(
            f"    {worker[-5:]}: {len(spans)} tasks, busy {busy * 1e3:6.0f} ms, "
            f"idle: head {head * 1e3:4.0f} ms, between {sum(gaps) * 1e3:4.0f} ms "
            f"(max {max(gaps, default=0) * 1e3:3.0f}), tail {tail * 1e3:4.0f} ms"
        )
    return lines


def run_cell(ip: Any, client: Any, source: str, reset: str) -> None:
    from distributed import get_task_stream

    rec = Recorder()
    rec.install()
    ip.run_cell(reset)
    procs = processes(client)
    cpu_before = {name: cpu_seconds(proc) for name, proc in procs.items()}
    threads_before = thread_seconds()
    with get_task_stream(client) as ts, contextlib.redirect_stdout(io.StringIO()):
        start = time.time()
        result = ip.run_cell(source)
        end = time.time()
    cpu = {name: cpu_seconds(proc) - cpu_before[name] for name, proc in procs.items()}
    threads = thread_seconds()
    by_thread = {k: v - threads_before.get(k, 0.0) for k, v in threads.items()}
    from dask_magic.engine import execute

    uninstall(execute)
    assert result.success, result.error_in_exec
    print(f"  cell {(end - start) * 1e3:.0f} ms; submitted (s after start, sizes, budget):")
    for when, sizes, budget in rec.submitted:
        print(f"    +{(when - start) * 1e3:5.0f} ms {sizes} budget={budget}")
    back = sum(r[2] for r in rec.returned)
    print(f"  tasks back: {len(rec.returned)}, items sent back unstarted: {back}")
    print(
        f"  items: {len(rec.durations)}, sum of durations {sum(rec.durations) * 1e3:.0f} ms, "
        f"median {statistics.median(rec.durations) * 1e3:.1f} ms"
    )
    print("\n".join(worker_lines(ts.data, start, end)))
    print("  CPU ms: " + ", ".join(f"{k} {v * 1e3:.0f}" for k, v in cpu.items()))
    busy = sorted(by_thread.items(), key=lambda kv: -kv[1])[:4]
    print("  kernel threads CPU ms: " + ", ".join(f"{k} {v * 1e3:.0f}" for k, v in busy))
    print_summary(rec, ts.data, cpu, by_thread.get("IO loop", 0.0), end - start)


def print_summary(
    rec: Recorder, stream: list[dict], cpu: dict[str, float], io_loop: float, wall: float
) -> None:
    """One line per cell, for comparing runs (idle: 2 threads x wall - the tasks' compute)."""
    workers_cpu = sum(v for k, v in cpu.items() if k not in ("kernel", "scheduler"))
    compute = sum(
        ss["stop"] - ss["start"]
        for task in stream
        for ss in task["startstops"]
        if ss["action"] == "compute"
    )
    print(
        f"SUMMARY wall={wall * 1e3:.0f} tasks={len(rec.returned)} "
        f"back={sum(r[2] for r in rec.returned)} kernel_cpu={cpu['kernel'] * 1e3:.0f} "
        f"io_loop_cpu={io_loop * 1e3:.0f} workers_cpu={workers_cpu * 1e3:.0f} "
        f"idle={(2 * wall - compute) * 1e3:.0f} items_sum={sum(rec.durations) * 1e3:.0f}"
    )


def thread_seconds() -> dict[str, float]:
    """CPU seconds of each thread of this process, by name."""
    import threading

    import psutil

    names = {t.native_id: t.name for t in threading.enumerate()}
    return {
        names.get(t.id, str(t.id)): t.user_time + t.system_time for t in psutil.Process().threads()
    }


def processes(client: Any) -> dict[str, Any]:
    """The kernel, the scheduler and every worker, as psutil processes."""
    import os

    import psutil

    procs = {"kernel": psutil.Process()}
    procs["scheduler"] = psutil.Process(client.run_on_scheduler(os.getpid))
    for address, pid in sorted(client.run(os.getpid).items()):
        procs[address[-5:]] = psutil.Process(pid)
    return procs


def cpu_seconds(proc: Any) -> float:
    times = proc.cpu_times()
    return times.user + times.system


_ORIGINAL: dict[str, Any] = {}


def uninstall(execute: Any) -> None:
    """Undo `Recorder.install` (the next round installs a fresh recorder)."""
    execute.DaskRun.submit = _ORIGINAL["submit"]
    execute.DaskRun._load_finished = _ORIGINAL["load"]


def timed_cpu_work(seed: int, iterations: int) -> tuple[float, float]:
    """`cpu_work` with its own start and duration (for the process-pool comparison)."""
    import bench_work as w

    start = time.perf_counter()
    w.cpu_work(seed, iterations)
    return start, time.perf_counter() - start


def ppe_round(pool: Any, n: int, iterations: int) -> None:
    """The same items in a ProcessPoolExecutor (chunksize 2): wall time and item durations."""
    start = time.perf_counter()
    got = list(pool.map(timed_cpu_work, range(n), [iterations] * n, chunksize=2))
    wall = time.perf_counter() - start
    durations = [d for _, d in got]
    print(
        f"  ppe chunksize 2: {wall * 1e3:.0f} ms, sum of durations {sum(durations) * 1e3:.0f} ms, "
        f"median {statistics.median(durations) * 1e3:.1f} ms"
    )


def define_cells(ip: Any, only: str, workers: int) -> dict[str, str]:
    """The loop bodies to time, with their inputs pushed into the shell."""
    import bench_work as w
    import data

    cells = {}
    if "pass" in only:
        ip.push({"items": list(range(8 * workers))})
        cells["pass"] = "for x in items:\n    out.append(x)\n"
    if "tiny" in only:
        ip.push({"items": list(range(10_000))})
        cells["tiny"] = "for x in items:\n    out.append(x + 1)\n"
    if "sleep" in only:
        ip.push({"items": list(range(8 * workers))})
        ip.run_cell("import time")
        cells["sleep"] = "for x in items:\n    time.sleep(0.1)\n    out.append(x)\n"
    if "cpu" in only:
        ip.push({"items": list(range(8 * workers)), "ITER": w.calibrate_cpu(0.1)})
        cells["cpu"] = "for x in items:\n    out.append(cpu_work(x, ITER))\n"
    if "files" in only:
        paths = data.dataset(HERE / "results" / "data", 200, 50_000)
        ip.push({"paths": paths})
        cells["files"] = (
            "for path in paths:\n    df = pd.read_csv(path)\n"
            "    out.append(df.groupby('key')['value'].sum())\n"
        )
    return cells


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="cpu,files")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--magic", default="", help="more options of the magic, e.g. --batch 1")
    args = parser.parse_args()
    from IPython.testing.globalipapp import start_ipython

    import dask_magic
    from dask_magic.engine import cluster, execute

    print("dask_magic from", dask_magic.__file__)
    _ORIGINAL.update(submit=execute.DaskRun.submit, load=execute.DaskRun._load_finished)
    ip = start_ipython()
    ip.run_line_magic("load_ext", "dask_magic")
    ip.run_cell("import pandas as pd\nfrom bench_work import *")
    with contextlib.redirect_stdout(io.StringIO()):
        ip.run_cell(f"{MAGIC} --workers {args.workers}\nfor x in range(4):\n    pass\n")
    client = cluster.get_client()
    cells = define_cells(ip, args.only, args.workers)
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(args.workers) if "cpu" in cells else None
    for name, body in cells.items():
        for r in range(args.rounds + 1):  # round 0 warms up
            print(f"{name} round {r}{' (warm-up)' if r == 0 else ''}")
            run_cell(ip, client, f"{MAGIC} {args.magic}\n{body}", "out = []")
            if name == "cpu" and pool is not None:
                ppe_round(pool, len(ip.user_ns["items"]), ip.user_ns["ITER"])
    client.close()


if __name__ == "__main__":
    main()
