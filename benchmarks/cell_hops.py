"""Where a warm cell of tiny items spends its time, hop by hop, in milliseconds from its start.

    python benchmarks/cell_hops.py [--cells 20] [--items 10000] [--warmup 3]

Runs the tiny workload's cell (``for x in items: out.append(x + 1)``, ``--fresh`` as in
`make bench`) again and again in one IPython shell on the local cluster dask-magic starts, and
stamps every step on one clock (``time.time``, which every process of the machine shares):

* in the kernel, the entry and exit of the engine's steps (wrapped here, unwrapped at the end):
  the journal's split, the run's start (the ``(index, item)`` pairs are made just before it),
  pickling and submitting the tasks, loading each result, storing and committing it, landing
  and the journal's final write;
* the scheduler's ``compute-task`` message to each worker (its comm's ``write``);
* on each worker, when the task began ``executing`` and when it was ``put-in-memory``, from
  the worker's own state log (``Worker.state.log``).

Prints, per step, the median over the cells of its first and last stamp (a step that runs
once per task has two). The task stream's ``startstops`` are not used: the scheduler shifts
them by its estimate of each worker's clock offset, which on a busy machine moves them by
several milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import statistics
import time
from collections.abc import Callable
from typing import Any

CELL = (
    "%%parallel_for --progress none --fresh --name tiny\nfor x in items:\n    out.append(x + 1)\n"
)


class Stamps:
    """``(label, time)`` of every stamped step of the cell being run."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        """Stamp ``owner.name``'s entry (``label >``) and exit (``label <``)."""
        original = getattr(owner, name)
        events = self.events

        @functools.wraps(original)
        def stamped(*args: Any, **kwargs: Any) -> Any:
            events.append((f"{label} >", time.time()))
            try:
                return original(*args, **kwargs)
            finally:
                events.append((f"{label} <", time.time()))

        setattr(owner, name, stamped)
        self._undo.append(lambda: setattr(owner, name, original))

    def watch_scheduler(self, scheduler: Any) -> None:
        """Stamp every message batch the scheduler writes to a worker, by its first op."""
        for address, stream in scheduler.stream_comms.items():
            comm = stream.comm
            comm.write = self._stamped_write(comm.write, address[-5:])
            self._undo.append(functools.partial(delattr, comm, "write"))

    def _stamped_write(self, write: Callable[..., Any], worker: str) -> Callable[..., Any]:
        events = self.events

        def stamped(msgs: list[dict], *args: Any, **kwargs: Any) -> Any:
            events.append((f"scheduler: {msgs[0].get('op')} to {worker}", time.time()))
            return write(msgs, *args, **kwargs)

        return stamped

    def undo(self) -> None:
        for step in reversed(self._undo):
            step()


def wrap_engine(stamps: Stamps) -> None:
    from dask_magic.engine import commit, execute, journal, loop, outcome_store, resume, run

    stamps.wrap(resume.PassJournal, "split", "kernel: journal split")
    stamps.wrap(run.Run, "begin", "kernel: run begins (pairs made)")
    stamps.wrap(execute.DaskRun, "_pickle", "kernel: pickle the tasks")
    stamps.wrap(execute.DaskRun, "submit", "kernel: submit")
    stamps.wrap(execute.DaskRun, "_load_finished", "kernel: load a result")
    stamps.wrap(outcome_store.Outcomes, "add_batch", "kernel: store a batch")
    stamps.wrap(commit.OrderedCommit, "offer_batch", "kernel: commit a batch")
    stamps.wrap(loop, "_land", "kernel: land")
    stamps.wrap(resume.PassJournal, "finish", "kernel: journal finish")
    stamps.wrap(journal.Journal, "settle", "kernel: wait for the writes behind")


def task_transitions(dask_worker: Any, since: float) -> list[tuple[str, float]]:
    """When this worker's tasks began executing and were put in memory (after ``since``)."""
    found = []
    for entry in list(dask_worker.state.log):
        start, finish, stamp = entry[1], entry[2], entry[-1]
        if not isinstance(stamp, float) or stamp < since:
            continue
        if finish == "executing" or start == "put-in-memory":
            found.append((finish if finish == "executing" else start, stamp))
    return found


def one_cell(ip: Any, client: Any, stamps: Stamps) -> dict[str, list[float]]:
    """Every stamp of one cell, by label, in ms after its start."""
    ip.run_cell("out = []")
    stamps.events.clear()
    start = time.time()
    with contextlib.redirect_stdout(io.StringIO()):
        result = ip.run_cell(CELL)
    end = time.time()
    assert result.success, result.error_in_exec
    events = [*stamps.events, ("cell ends", end)]
    for address, found in client.run(task_transitions, since=start).items():
        events += [(f"worker {address[-5:]}: task {what}", stamp) for what, stamp in found]
    by_label: dict[str, list[float]] = {}
    for label, stamp in sorted(events, key=lambda e: e[1]):
        by_label.setdefault(label, []).append((stamp - start) * 1e3)
    return by_label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    from IPython.testing.globalipapp import start_ipython

    from dask_magic.engine import cluster

    ip = start_ipython()
    ip.run_line_magic("load_ext", "dask_magic")
    ip.push({"items": list(range(args.items)), "out": []})
    for _ in range(args.warmup):
        with contextlib.redirect_stdout(io.StringIO()):
            ip.run_cell(CELL)
    client = cluster.get_client()
    stamps = Stamps()
    wrap_engine(stamps)
    local = getattr(client, "cluster", None)  # the LocalCluster, its scheduler in this process
    if local is not None:
        stamps.watch_scheduler(local.scheduler)
    cells = [one_cell(ip, client, stamps) for _ in range(args.cells)]
    stamps.undo()
    print_medians(cells)


def print_medians(cells: list[dict[str, list[float]]]) -> None:
    """Each label's median first and last stamp, in the order of the first."""
    labels = {label for cell in cells for label in cell}
    rows = []
    for label in labels:
        seen = [cell[label] for cell in cells if label in cell]
        first = statistics.median(s[0] for s in seen)
        last = statistics.median(s[-1] for s in seen)
        rows.append((first, last, label, len(seen)))
    print(f"{len(cells)} cells; ms after the cell's start (median), first and last stamp")
    for first, last, label, count in sorted(rows):
        twice = f"{last:7.2f}" if last - first > 0.05 else " " * 7
        print(f"{first:7.2f} {twice}  {label}" + ("" if count == len(cells) else f" ({count})"))


if __name__ == "__main__":
    main()
