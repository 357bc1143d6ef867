"""How soon the notebook's thread gets the GIL back from the scheduler's thread.

The local cluster's scheduler and the client's event loop run on a thread of the kernel's
own process. Every time the notebook's thread waits (for a completion, the journal's SQLite,
a lock, a socket), it goes on only once that thread lets the GIL go, and CPython asks a
thread to let it go only after `sys.getswitchinterval` (5 ms by default). A warm 1-item
cell waits like that a dozen times, and the scheduler's own work after each cell (releasing
what the cell used) holds the GIL while the next cell starts.

So the interval is lowered to dask config ``dask-magic.switch-interval`` (seconds, default
`SWITCH_INTERVAL`; ``0`` or ``false`` leaves Python's own): for as long as the local cluster
dask-magic started lives in this process (`lower_while_local`, `restore_after_local`), and
for each pass on any other cluster (`quick_handoffs`: the client's event loop is still a
thread here). An interval already as low (the user's own) is left as it is. Code that runs
one thread does not notice it: CPython only switches where another thread waits for the GIL.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "SWITCH_INTERVAL",
    "lower_while_local",
    "quick_handoffs",
    "restore_after_local",
    "switch_interval",
]

#: seconds; the best of 0.2, 0.5 and 1 ms for a warm 1-item cell (``benchmarks/README.md``)
SWITCH_INTERVAL = 0.0005


class _Holds:
    """Who needs the lowered interval now (the local cluster, passes); the last one to let
    go sets back the interval it replaced."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.replaced: float | None = None  # None: the interval was left as it was
        self.local = False

    def take(self) -> None:
        with self.lock:
            if self.count == 0:
                wanted, before = switch_interval(), sys.getswitchinterval()
                self.replaced = before if wanted and wanted < before else None
                if self.replaced is not None:
                    sys.setswitchinterval(wanted)
            self.count += 1

    def give(self) -> None:
        with self.lock:
            self.count = max(self.count - 1, 0)
            if self.count == 0 and self.replaced is not None:
                sys.setswitchinterval(self.replaced)
                self.replaced = None


_HOLDS = _Holds()


def switch_interval() -> float:
    """The interval dask-magic runs with (``0.0``: Python's own is kept)."""
    import dask

    value = dask.config.get("dask-magic.switch-interval", default=SWITCH_INTERVAL)
    try:
        return max(float(value or 0.0), 0.0)
    except (TypeError, ValueError):  # a config typo must not stop the run
        return SWITCH_INTERVAL


def lower_while_local() -> None:
    """The local cluster started: its scheduler shares the kernel's GIL from now on."""
    if not _HOLDS.local:
        _HOLDS.local = True
        _HOLDS.take()


def restore_after_local() -> None:
    """The local cluster closed: the interval as it was before it (once no pass runs)."""
    if _HOLDS.local:
        _HOLDS.local = False
        _HOLDS.give()


@contextmanager
def quick_handoffs() -> Iterator[None]:
    """Run the block (a pass) with the lowered interval, and set the old one back after it."""
    _HOLDS.take()
    try:
        yield
    finally:
        _HOLDS.give()
