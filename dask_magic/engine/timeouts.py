"""``--timeout``: end an item that runs too long, restart its worker process, go on.

Running Python code cannot be stopped from outside its thread, so an item that overruns
ends its worker process: the nanny starts a fresh one.

On the worker (stdlib only, imported by `dask_magic.engine.worker`): a task that runs under a
timeout *arms* a watch for its thread; the item loop stamps each item's start on it (one
attribute write, and nothing at all without a timeout). One watchdog thread per process looks
at the watches ten times a second; on an overrun it samples the task thread's stack (the line
of the cell it is at) and reports it to the kernel through ``report`` (``log_event`` of the
worker, wired by `dask_magic.engine.execute`).

In the kernel, `TimeoutGuard` receives the reports (on the client's event loop, into one
thread-safe queue), and the pass (`execute.DaskRun`) asks it what to do once per tick: the
task is cancelled, its worker restarted through its nanny, its batch-mates sent again and the
item reported as ``timeout`` (or tried again, within ``--retries``). A worker whose Python is
blocked (C code holding the GIL) cannot report; its heartbeats stop too, and the guard's
backstop restarts a worker that has been silent for long while running one of the pass's tasks.
"""

from __future__ import annotations

import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .identity import scheduler_identity
from .restarts import restart_for
from .results import ErrorInfo, Frame, ItemOutcome

if TYPE_CHECKING:  # the workers import this module: nothing kernel-side at run time
    from .restarts import WorkerRestarts

#: The event topic the workers report overruns on.
TOPIC = "dask_magic.timeout"
#: How often the watchdog looks at the running items.
WATCHDOG_INTERVAL = 0.1
#: A worker silent for this long (plus the timeout) while running one of the pass's tasks is
#: taken as blocked; the scheduler's heartbeats are about a second apart.
BACKSTOP_SECONDS = 15.0
#: How often the kernel asks the scheduler about silent workers.
BACKSTOP_INTERVAL = 2.0
_MAX_FRAMES = 60
_INTERNAL = ("dask_magic", "dask", "distributed", "tornado", "asyncio", "threading", "concurrent")

ACCEPTED_FORMS = "a number of seconds (90, 1.5) or a number with s, m or h (30s, 1.5s, 5m, 1h)"
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*", re.IGNORECASE)
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``5m``, ``1h``, ``1.5s`` or ``90``; ValueError names the forms."""
    found = _DURATION.fullmatch(str(text))
    seconds = 0.0
    if found:
        unit = found.group(2).lower() if found.group(2) else None
        seconds = float(found.group(1)) * _UNIT_SECONDS[unit]
    if not found or seconds <= 0:
        raise ValueError(f"give {ACCEPTED_FORMS}, more than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """``2s``, ``1.5s``, ``5m``: how a limit reads back in messages."""
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds:g}s"


# -- on the worker --------------------------------------------------------------------------


class Watch:
    """One task thread running under a timeout: which item it runs, since when."""

    __slots__ = ("address", "current", "key", "report", "reported", "seconds", "thread")

    def __init__(self, seconds: float, report: Callable[[dict], None], key: str, address: str):
        self.seconds = seconds
        self.report = report
        self.key = key
        self.address = address
        self.thread = threading.get_ident()
        self.current: tuple[int, float] | None = None  # (item index, monotonic start)
        self.reported: tuple[int, float] | None = None

    def begin(self, index: int) -> None:
        """Item ``index`` starts now (one tuple: the watchdog reads it whole)."""
        self.current = (index, time.monotonic())


_WATCHES: dict[int, Watch] = {}
_WATCHES_LOCK = threading.Lock()
_WATCHDOG: list[threading.Thread] = []


def arm(seconds: float, report: Callable[[dict], None], key: str, address: str) -> None:
    """Watch this thread's items from now on (until `disarm`)."""
    watch = Watch(seconds, report, key, address)
    with _WATCHES_LOCK:
        _WATCHES[watch.thread] = watch
        if not _WATCHDOG:
            thread = threading.Thread(target=_watchdog, name="dask-magic-timeouts", daemon=True)
            _WATCHDOG.append(thread)
            thread.start()


def disarm() -> None:
    with _WATCHES_LOCK:
        _WATCHES.pop(threading.get_ident(), None)


def this_thread() -> Watch | None:
    """The watch of the calling thread, if its task runs under a timeout."""
    return _WATCHES.get(threading.get_ident()) if _WATCHES else None


def _watchdog() -> None:
    while True:
        time.sleep(WATCHDOG_INTERVAL)
        with _WATCHES_LOCK:
            watches = list(_WATCHES.values())
        now = time.monotonic()
        for watch in watches:
            current = watch.current
            if current is None or current == watch.reported or now - current[1] < watch.seconds:
                continue
            watch.reported = current
            message = {
                "key": watch.key,
                "worker": watch.address,
                "index": current[0],
                "elapsed": now - current[1],
                "limit": watch.seconds,
                "frames": sample_stack(watch.thread),
            }
            try:
                watch.report(message)
            except Exception:  # the worker is closing: nothing to tell anyone
                pass


def sample_stack(thread_id: int) -> list[list[Any]]:
    """``[filename, line, function, internal]`` of each frame of a thread, outermost first."""
    frame = sys._current_frames().get(thread_id)
    frames: list[list[Any]] = []
    while frame is not None and len(frames) < _MAX_FRAMES:
        module = str(frame.f_globals.get("__name__") or "")
        internal = module.split(".")[0] in _INTERNAL
        frames.append([frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name, internal])
        frame = frame.f_back
    return frames[::-1]


# -- in the kernel ----------------------------------------------------------------------------


def missing_nannies(client: Any) -> list[str]:
    """Workers that have no nanny (``dask worker --no-nanny``): nothing can restart them."""
    workers = scheduler_identity(client).get("workers", {})
    return sorted(addr for addr, info in workers.items() if not info.get("nanny"))


def no_nanny_message(addresses: list[str]) -> str:
    more = f" and {len(addresses) - 3} more" if len(addresses) > 3 else ""
    shown = ", ".join(addresses[:3]) + more
    return (
        "--timeout needs workers that run under a nanny: an item that runs too long can only "
        "be stopped by restarting its worker process, and only a nanny can start it again. "
        f"Worker{'s' if len(addresses) > 1 else ''} {shown} "
        f"{'have' if len(addresses) > 1 else 'has'} none (started with `dask worker "
        "--no-nanny`, or a cluster of threads): start the workers without --no-nanny, or run "
        "without --timeout"
    )


@dataclass
class TimeoutGuard:
    """The kernel's side of ``--timeout`` for one pass (see the module's docstring)."""

    client: Any
    seconds: float
    restarts: WorkerRestarts  # the pass's, shared with its Cancel item clicks
    retries: int = 0
    reports: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    attempts: dict[int, int] = field(default_factory=dict)
    strikes: dict[int, int] = field(default_factory=dict)  # times found on a blocked worker
    backstop: bool = True
    #: monotonic times at which overruns were handled (for measurements)
    handled_at: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._next_backstop = time.monotonic() + BACKSTOP_INTERVAL
        self.client.subscribe_topic(TOPIC, self._receive)

    def _receive(self, event: Any) -> None:
        """On the client's event loop: hand the report to the pass's thread."""
        self.reports.put(event[1] if isinstance(event, tuple | list) else event)

    def close(self) -> None:
        """Stop listening (the pass waits for its restarts: `WorkerRestarts.settle`)."""
        try:
            self.client.unsubscribe_topic(TOPIC)
        except Exception:  # the client is closing
            pass

    def step(self, run: Any) -> None:
        """Act on the overruns reported since the last tick (``run`` is the `DaskRun`)."""
        found = []
        while True:
            try:
                found.append(self.reports.get_nowait())
            except queue.Empty:
                break
        if self.backstop and time.monotonic() >= self._next_backstop:
            self._next_backstop = time.monotonic() + BACKSTOP_INTERVAL
            found += self._silent_workers(run)
        for message in found:
            self._handle(run, message)

    def _handle(self, run: Any, message: dict) -> None:
        future = next((f for f in run.in_flight if str(f.key) == message["key"]), None)
        if future is None or future.status == "finished":  # finished meanwhile, or handled
            return
        batch = run.in_flight.pop(future)
        timed = future in run.timed
        run.timed.discard(future)
        self.client.cancel([future])
        index = message.get("index")  # None: found by the backstop, the worker does not answer
        restart_for(run, message["worker"], answers=index is not None)  # on its own thread
        self.handled_at.append(time.monotonic())
        if index is None:
            self._blocked(run, batch, message)
            return
        mates = [pair for pair in batch if pair[0] != index]
        if mates and (timed or run.held):
            run.held.extend(mates)  # sent again with the rest, in measured sizes
        elif mates:
            run.submit([mates])
        self.attempts[index] = self.attempts.get(index, 0) + 1
        pair = next(p for p in batch if p[0] == index)
        if self.attempts[index] <= self.retries:
            run.submit([[pair]])
        else:
            run._add([timeout_outcome(message)])

    def _blocked(self, run: Any, batch: list, message: dict) -> None:
        """A task on a worker that stopped answering: which of its items (or of the tasks
        queued there with it) blocked it is unknown, so each runs again later alone on the
        cluster (the pass's quarantine); an item found on a blocked worker twice is the one
        that blocks it."""
        again = []
        for pair in batch:
            self.strikes[pair[0]] = self.strikes.get(pair[0], 0) + 1
            if self.strikes[pair[0]] < 2:
                run.quarantine.append(pair)
                continue
            self.strikes[pair[0]] = 0
            self.attempts[pair[0]] = self.attempts.get(pair[0], 0) + 1
            if self.attempts[pair[0]] <= self.retries:
                again.append([pair])
            else:
                run._add([timeout_outcome({**message, "index": pair[0], "frames": ()})])
        if again:
            run.submit(again)

    def _silent_workers(self, run: Any) -> list[dict]:
        """Reports for the pass's tasks on workers that stopped answering (blocked Python)."""
        keys = [str(f.key) for f in run.in_flight]
        if not keys:
            return []
        limit = self.seconds + BACKSTOP_SECONDS
        try:
            found = self.client.run_on_scheduler(_silent_tasks, keys, limit)
        except Exception:  # e.g. a scheduler that cannot import dask_magic: no backstop
            self.backstop = False
            return []
        restarting = self.restarts.restarting  # their other tasks go elsewhere once gone
        return [
            {"key": key, "worker": address, "index": None, "elapsed": silent, "limit": self.seconds}
            for address, key, silent in found
            if address not in restarting
        ]


def _silent_tasks(keys: list[str], limit: float, dask_scheduler: Any = None) -> list[list]:
    """On the scheduler: ``[worker, key, seconds silent]`` of ``keys`` on silent workers."""
    now = time.time()
    found = []
    for key in keys:
        task = dask_scheduler.tasks.get(key)
        worker = getattr(task, "processing_on", None)
        if worker is not None and now - worker.last_seen > limit:
            found.append([worker.address, key, now - worker.last_seen])
    return found


def timeout_outcome(message: dict) -> ItemOutcome:
    """The ``timeout`` outcome of an overrun: elapsed time and, if sampled, where it was."""
    frames = tuple(
        Frame(str(name), int(line), str(function), bool(internal))
        for name, line, function, internal in message.get("frames") or ()
    )
    limit = format_duration(float(message["limit"]))
    elapsed = float(message["elapsed"])
    if frames:
        text = f"the item ran longer than --timeout {limit} (stopped after {elapsed:.1f} s)"
    else:
        text = (
            f"the item ran longer than --timeout {limit}: its worker stopped answering for "
            f"{elapsed:.0f} s (Python blocked, e.g. in C code that holds the GIL)"
        )
    error = ErrorInfo(
        type_name="Timeout",
        message=text,
        frames=frames,
        hint="Its worker process was restarted (the only way to stop running Python code). "
        "Raise --timeout, make the item faster, or add --retries N to try it again.",
    )
    worker = message.get("worker")
    return ItemOutcome(
        index=int(message["index"]), status="timeout", error=error, duration=elapsed, worker=worker
    )
