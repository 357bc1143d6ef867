"""The stash: the last values each run's items left bound, kept in the worker that made them.

Only the last binding of each name is ever needed in the kernel, so the values of the others
never travel: a batch keeps them here (`keep`) and the kernel fetches the final ones at the end
of the run (`fetch_stash`), or drops the run's stash (`drop_stash`). Stdlib and cloudpickle
only: this runs inside Dask workers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import cloudpickle

_STASH: OrderedDict[str, dict[str, tuple[int, Any]]] = OrderedDict()
_STASH_LOCK = threading.Lock()
_STASH_RUNS_KEPT = 16  # bounded even if a kernel dies before it clears its runs


def keep(key: str, indices: dict[str, int], values: dict[str, Any]) -> None:
    """Keep ``values[name]`` (bound by item ``indices[name]``) unless a later item's is kept."""
    with _STASH_LOCK:
        run = _STASH.get(key)
        if run is None:
            run = _STASH[key] = {}
            while len(_STASH) > _STASH_RUNS_KEPT:
                _STASH.popitem(last=False)
        for name, index in indices.items():
            if name not in run or run[name][0] <= index:
                run[name] = (index, values[name])


def fetch_stash(key: str, wanted: dict[str, int]) -> dict[str, Any]:
    """Values of ``wanted`` names whose stashed index matches; drops this run's stash."""
    with _STASH_LOCK:
        run = _STASH.pop(key, {})
    found = {}
    for name, index in wanted.items():
        stashed_index, value = run.get(name, (None, None))
        if stashed_index != index:
            continue
        try:
            cloudpickle.dumps(value)
        except Exception:  # e.g. a closed file from `with open(f) as fh`: leave the name alone
            continue
        found[name] = value
    return found


def take_stash(key: str) -> dict[str, tuple[int, Any]]:
    """Every binding of this run's stash that can travel, as ``{name: (index, value)}``; the
    stash is dropped (its process is about to end)."""
    with _STASH_LOCK:
        run = _STASH.pop(key, {})
    found = {}
    for name, (index, value) in run.items():
        try:
            cloudpickle.dumps(value)
        except Exception:  # as in `fetch_stash`: the name keeps its previous value
            continue
        found[name] = (index, value)
    return found


def drop_stash(key: str) -> None:
    with _STASH_LOCK:
        _STASH.pop(key, None)


class HeldBindings:
    """The names a batch's items leave bound, on their way into the stash.

    While consecutive items bind the same names, each simply replaces the one held (no
    per-name work, and one item's values alive at a time, as in the serial loop); a change
    of names, or the end of the batch, moves the held values into what `flush` keeps.
    """

    __slots__ = (
        "held_index",
        "held_keys",
        "held_names",
        "held_values",
        "indices",
        "interned",
        "values",
    )

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.indices: dict[str, int] = {}
        self.interned: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.held_names: tuple[str, ...] | None = None
        #: `held_names` as a set: an item binding the same names replaces the held one
        #: without `hold` (a batch's loop compares its ``locals()`` keys with it)
        self.held_keys: frozenset[str] | None = None
        self.held_index = -1
        self.held_values: dict[str, Any] = {}

    def hold(self, index: int, local_names: dict[str, Any]) -> tuple[str, ...]:
        """Hold item ``index``'s values; returns its names (one shared tuple per shape)."""
        key = tuple(local_names)
        key = self.interned.setdefault(key, key)
        if key is not self.held_names:
            self._release()
            self.held_names, self.held_keys = key, frozenset(key)
        self.held_index, self.held_values = index, local_names
        return key

    def _release(self) -> None:
        if self.held_names is not None:
            self.values.update(self.held_values)
            self.indices.update(dict.fromkeys(self.held_names, self.held_index))

    def flush(self, key: str | None) -> None:
        """Put the batch's last binding of each name into run ``key``'s stash."""
        self._release()
        self.held_names = self.held_keys = None
        if self.indices and key is not None:
            keep(key, self.indices, self.values)
