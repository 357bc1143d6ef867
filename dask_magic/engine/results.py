"""Pure data describing what happened to each item of a run.

No dask, no IPython: the panel, the sidebar bridge and the text views read only these types.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ItemStatus = Literal["done", "failed", "timeout", "cancelled", "pending"]
#: In `ItemOutcome.mutated`: the item's own value was changed by the body (a notebook name is
#: an identifier, so this cannot clash with one).
ITEM_MUTATED = "@item"
ErrorKind = Literal["user", "infrastructure"]


class RunStatus(str, enum.Enum):
    """Life cycle of a run, as shown in the panel and the sidebar."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"  # every item done, none failed
    FAILED = "failed"  # every item ended, some failed
    INTERRUPTED = "interrupted"  # the user stopped it; unfinished items cancelled
    ERROR = "error"  # the run itself broke (scheduler lost, ...)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Frame:
    """One traceback frame, as data (rendered in the kernel against its linecache)."""

    filename: str
    lineno: int
    name: str
    internal: bool = False  # a frame of dask, distributed, tornado or dask_magic


@dataclass(frozen=True)
class ErrorInfo:
    """Why an item failed: always text, plus the exception object when it survived the trip."""

    type_name: str
    message: str
    frames: tuple[Frame, ...] = ()
    kind: ErrorKind = "user"
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    chained: str = ""  # "The above exception was the direct cause..." chain, as text
    hint: str = ""  # what to do about it (infrastructure errors)

    @property
    def summary(self) -> str:
        """``ValueError: bad number`` (one line, as the panel's list shows it)."""
        first = self.message.splitlines()[0] if self.message else ""
        return f"{self.type_name}: {first}" if first else self.type_name


@dataclass(slots=True)
class ItemOutcome:
    """Everything known about one item after it ran (or was cancelled).

    ``ops`` are the accumulator contributions recorded on the worker, replayed in item order in
    the kernel. ``bound`` maps each name the item left bound to its value, or to `STASHED` when
    the value stayed on the worker (see `dask_magic.engine.worker`). ``deleted`` are names the
    item unbound (``del x``, ``except E as x``).

    ``bound`` may be shared by the items of a batch (`engine.columns`) and ``ops`` becomes
    ``()`` once committed when no retry replays them (`engine.commit`): assign a new one,
    never change either in place. Fewer objects per kept item is less work for the cyclic
    collector, which walks every kept outcome again at each full collection.
    """

    index: int
    status: ItemStatus
    ops: Sequence[tuple] = field(default_factory=list)
    bound: dict[str, Any] = field(default_factory=dict)
    deleted: frozenset[str] = frozenset()
    value: Any = None  # the body's return value (the plain-function API)
    stdout: str = ""
    stderr: str = ""
    warnings: tuple[str, ...] = ()
    error: ErrorInfo | None = None
    duration: float = 0.0
    worker: str | None = None
    # notebook names the batch changed in place, and `ITEM_MUTATED` if this item itself was
    # changed: on a worker such a change never comes back to the notebook
    mutated: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PartialResult:
    """One item of `Run.partial`: where it stands while the run goes on."""

    index: int
    item: Any
    status: str  # done, failed, timeout, cancelled, or pending (queued or running)
    value: Any = None  # the return value of a done item (the function API), else None
    error: str = ""  # ``ValueError: bad number`` for a failed or timed-out item


class _Stashed:
    """Marker: the bound value stayed on the worker; fetch it only if it is the final one."""

    _instance: _Stashed | None = None

    def __new__(cls) -> _Stashed:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "STASHED"

    def __reduce__(self) -> str:
        return "STASHED"


STASHED = _Stashed()


@dataclass(frozen=True)
class Counts:
    """Item counts at one moment; ``total`` is fixed for a run."""

    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    cancelled: int = 0
    restored: int = 0  # of the done items, taken from the journal instead of run
    timeout: int = 0  # stopped by --timeout

    @property
    def queued(self) -> int:
        ended = self.done + self.failed + self.timeout + self.cancelled
        return max(0, self.total - ended - self.running)

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.timeout + self.cancelled


@dataclass(frozen=True)
class Failure:
    """A failed item as every view shows it: rendered in the kernel, never re-read from Dask."""

    index: int
    item_repr: str  # short, safe repr of the loop value (``'data/2021-03.csv'``)
    error: ErrorInfo
    line: int | None  # cell line of the deepest frame in the user's cell, if any
    traceback: str  # user frames only, with cell line numbers and source lines
    full_traceback: str  # every frame, dask's and dask_magic's included
    stdout: str = ""
    stderr: str = ""
    warnings: tuple[str, ...] = ()
    duration: float = 0.0
    worker: str | None = None

    @property
    def group_key(self) -> tuple[str, int | None]:
        return (self.error.type_name, self.line)

    @property
    def group_label(self) -> str:
        where = f" at line {self.line}" if self.line else ""
        return f"{self.error.type_name}{where}"


@dataclass(frozen=True)
class RunningItem:
    """An item running now, as the panel's "Running" list shows it (with its Cancel item)."""

    index: int
    item_repr: str  # short, safe repr of the loop value
    elapsed: float  # seconds since its task started (to the loop's tick)


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster a run used, for the panel's header and the sidebar."""

    scheduler: str
    workers: int
    threads: int
    memory: int  # bytes, summed over workers
    dashboard: str | None
    local: bool  # a LocalCluster dask-magic started and owns


@dataclass(frozen=True)
class RunSnapshot:
    """The state of a run at one moment: the only thing the panel and the sidebar see.

    Snapshots are produced at most about 10 times a second while a run is live, and once more
    when it ends (``status`` no longer ``RUNNING``).
    """

    run_id: str
    name: str | None
    status: RunStatus
    counts: Counts
    started: float  # time.time() at submit
    elapsed: float  # seconds
    rate: float | None  # finished items per second
    eta: float | None  # seconds left at the current rate
    cell_id: str | None = None  # the notebook cell that started the run (from the execute request)
    cluster: ClusterInfo | None = None
    failures: tuple[Failure, ...] = ()
    message: str = ""  # why the run stopped, for INTERRUPTED and ERROR
    retry_of: str | None = None  # run_id this run retried
    running_items: tuple[RunningItem, ...] = ()  # the longest-running few, longest first


def group_failures(
    failures: tuple[Failure, ...] | list[Failure],
) -> list[tuple[str, list[Failure]]]:
    """Failures grouped by exception type and cell line, largest group first."""
    groups: dict[tuple[str, int | None], list[Failure]] = {}
    for failure in failures:
        groups.setdefault(failure.group_key, []).append(failure)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0].index))
    return [(g[0].group_label, g) for g in ordered]


class RunObserver(Protocol):
    """What a view of a run implements: the panel, the text progress, the sidebar bridge.

    The run calls these from the thread that drives it and throttles `update` itself, so a
    view never needs to throttle again and never talks to Dask. An exception raised by a
    view is reported once and the run goes on without that view's updates.
    """

    def update(self, snapshot: RunSnapshot) -> None:
        """A new state while the run is live (at most about 10 a second)."""

    def finish(self, snapshot: RunSnapshot) -> None:
        """The final state: called exactly once per run (and once more per retry)."""
