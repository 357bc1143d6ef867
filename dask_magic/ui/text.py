"""Plain-text views of a run: a one-line progress bar and a final summary.

These are what a terminal IPython, a log, nbconvert and the ``text/plain`` side of the
panel show. They read `RunSnapshot` only (`dask_magic.engine.results`); they never talk to
Dask and never throttle (the engine calls `TextProgress.update` at most ~10 times a second).
The bar is ASCII (``#`` done, ``x`` failed, ``.`` left) so it survives any terminal encoding.
"""

from __future__ import annotations

import sys
from typing import TextIO

from dask_magic.engine.results import (
    ClusterInfo,
    Counts,
    Failure,
    RunSnapshot,
    RunStatus,
    group_failures,
)

__all__ = [
    "TextProgress",
    "cluster_text",
    "format_bytes",
    "format_duration",
    "progress_line",
    "status_word",
    "summary_text",
]

BAR_WIDTH = 24
#: Failure groups, and loop values per group, listed in the summary before "... and N more".
GROUPS_SHOWN = 5
ITEMS_SHOWN = 3
_MESSAGE_LIMIT = 100

_STATUS_WORDS = {
    RunStatus.PENDING: "pending",
    RunStatus.RUNNING: "running",
    RunStatus.FINISHED: "finished",
    RunStatus.FAILED: "finished with failures",
    RunStatus.INTERRUPTED: "interrupted",
    RunStatus.ERROR: "stopped by an error",
}


def status_word(snapshot: RunSnapshot, words: dict[RunStatus, str] | None = None) -> str:
    """``finished with failures``; ``finished, 1 cancelled`` when only cancelled items kept the
    run from finishing (a Cancel item click), which is no failure."""
    c = snapshot.counts
    if snapshot.status is RunStatus.FAILED and c.cancelled and not (c.failed or c.timeout):
        return f"finished, {c.cancelled:,} cancelled"
    return (words or _STATUS_WORDS).get(snapshot.status, str(snapshot.status))


def format_duration(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_bytes(n: int) -> str:
    """``512 B``, ``1.5 GiB``: binary units, as the Dask dashboard shows memory."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # the loop always returns at TiB


def _format_rate(rate: float) -> str:
    # Slow items read better per minute than as "0.0/s".
    return f"{rate:.1f}/s" if rate >= 1 else f"{rate * 60:.1f}/min"


def _bar(counts: Counts, width: int = BAR_WIDTH) -> str:
    if counts.total <= 0:
        return "[" + "." * width + "]"
    done = counts.done * width // counts.total
    stopped = counts.failed + counts.timeout  # a timed-out item shows as a failure
    failed = stopped * width // counts.total
    if stopped and not failed:  # one failure in 10,000 must still be visible
        failed = 1
        done = min(done, width - 1)
    return "[" + "#" * done + "x" * failed + "." * (width - done - failed) + "]"


def _counts_text(counts: Counts) -> str:
    parts = [f"{counts.done}/{counts.total} done", f"{counts.failed} failed"]
    if counts.timeout:
        parts.append(f"{counts.timeout} timed out")
    parts += [f"{counts.running} running", f"{counts.queued} queued"]
    if counts.cancelled:
        parts.append(f"{counts.cancelled} cancelled")
    return ", ".join(parts)


def progress_line(snapshot: RunSnapshot) -> str:
    """One line: bar, done/failed/running/queued, elapsed, rate and ETA when known."""
    timing = [f"{format_duration(snapshot.elapsed)} elapsed"]
    if snapshot.rate:
        timing.append(_format_rate(snapshot.rate))
    if snapshot.eta is not None and snapshot.status is RunStatus.RUNNING:
        timing.append(f"ETA {format_duration(snapshot.eta)}")
    return f"{_bar(snapshot.counts)} {_counts_text(snapshot.counts)} | {', '.join(timing)}"


def _headline(snapshot: RunSnapshot) -> str:
    c = snapshot.counts
    who = f"parallel_for {snapshot.name!r}" if snapshot.name else "parallel_for"
    status = status_word(snapshot)
    counts = f"{c.done} done, {c.failed} failed"
    if c.timeout:
        counts += f", {c.timeout} timed out"
    if c.cancelled:
        counts += f", {c.cancelled} cancelled"
    if c.restored:
        counts += f", {c.restored} restored from the journal"
    if c.finished < c.total and snapshot.status is not RunStatus.RUNNING:
        counts += f", {c.total - c.finished} not run"
    items = "item" if c.total == 1 else "items"
    when = format_duration(snapshot.elapsed)
    return f"{who} {status}: {c.total} {items} in {when} ({counts})"


def _one_line(text: str) -> str:
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= _MESSAGE_LIMIT else first[: _MESSAGE_LIMIT - 3] + "..."


def _group_lines(label: str, group: list[Failure]) -> list[str]:
    first = group[0]
    message = _one_line(first.error.message)
    head = f"  {len(group)} \u00d7 {label}" + (f": {message}" if message else "")
    shown = ", ".join(f.item_repr for f in group[:ITEMS_SHOWN])
    more = f", ... and {len(group) - ITEMS_SHOWN} more" if len(group) > ITEMS_SHOWN else ""
    noun = "item" if len(group) == 1 else "items"
    return [head, f"      {noun}: {shown}{more}"]


def _failure_lines(failures: tuple[Failure, ...]) -> list[str]:
    groups = group_failures(failures)
    lines = ["Failures:"]
    for label, group in groups[:GROUPS_SHOWN]:
        lines += _group_lines(label, group)
    if len(groups) > GROUPS_SHOWN:
        rest = sum(len(g) for _, g in groups[GROUPS_SHOWN:])
        lines.append(f"  ... and {rest} more in {len(groups) - GROUPS_SHOWN} other groups")
    return lines


def summary_text(snapshot: RunSnapshot) -> str:
    """The final state: status, counts, duration, grouped failures and how to retry."""
    lines = [_headline(snapshot)]
    if snapshot.message:
        lines.append(snapshot.message)
    if snapshot.failures:
        lines += _failure_lines(snapshot.failures)
        lines.append(
            "Fix the cause, then run %parallel_retry to re-run only the failed items "
            "(each item's traceback is in the run's .failures)."
        )
    return "\n".join(lines)


def cluster_text(info: ClusterInfo) -> str:
    """The cluster in two lines: where, whose, how big, and the dashboard link."""
    whose = "local, started by dask-magic" if info.local else "not started by dask-magic"
    workers = "worker" if info.workers == 1 else "workers"
    threads = "thread" if info.threads == 1 else "threads"
    lines = [
        f"Dask cluster at {info.scheduler} ({whose}): {info.workers} {workers}, "
        f"{info.threads} {threads}, {format_bytes(info.memory)} memory"
    ]
    lines.append(f"Dashboard: {info.dashboard}" if info.dashboard else "Dashboard: none")
    return "\n".join(lines)


class TextProgress:
    """A `RunObserver` that redraws one line with ``\\r`` and prints the summary at the end.

    Parameters
    ----------
    stream:
        Where to write; ``sys.stdout`` at the time of each write when not given, so the
        output goes to the cell that is running.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._width = 0  # length of the last line, to blank out a longer previous one
        self._finished = False

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def _draw(self, line: str) -> None:
        padding = " " * max(0, self._width - len(line))
        self.stream.write(f"\r{line}{padding}")
        self.stream.flush()
        self._width = len(line)

    def update(self, snapshot: RunSnapshot) -> None:
        if not self._finished:
            self._draw(progress_line(snapshot))

    def clear(self) -> None:
        """Blank the progress line: the loop's own output is about to be printed (the next
        update draws the line again, below it)."""
        if self._width and not self._finished:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0

    def finish(self, snapshot: RunSnapshot) -> None:
        if self._finished:
            return
        self._finished = True
        self._draw(progress_line(snapshot))
        self.stream.write("\n" + summary_text(snapshot) + "\n")
        self.stream.flush()
