"""One pass of a run and the journal: restore what is known, write what ends, say why.

Before a pass, `PassJournal.split` looks up every item's key: items found come back as done
`ItemOutcome`s (they go through the same in-order commit as items that ran, so their
additions, ordered part and printed output land exactly as if they had run), the rest are
submitted. While the pass runs, `record` keeps each item that ends and writes them in
batches (every `FLUSH_SECONDS` or `FLUSH_ITEMS`); `finish` writes the rest, with the last
bound values brought back from the workers, and applies the size cap.

A done item's bound values usually stay on its worker (`STASHED`): only the last binding of
each name ever travels. The journal keeps them as they are, and after the pass re-writes the
items whose values were fetched (or could not be: an open file stays behind, and is noted as
lost, as the run that made it said). A restored item whose stashed values would be the final
ones (no later item binds them) cannot give them back: it runs again.

Nothing here knows about IPython; storage problems never stop the run (see `journal`).
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cloudpickle

from . import journal_keys as keys
from .journal import Entry, Journal, pick_folder
from .results import STASHED, ItemOutcome

FLUSH_SECONDS = 0.5
FLUSH_ITEMS = 200

DEFAULT_MAX_SIZE = "2GB"

_JOURNALS: dict[str, Journal] = {}
_JOURNALS_OPEN = 4


def _config(name: str, default: Any) -> Any:
    try:
        import dask

        return dask.config.get(f"dask-magic.journal.{name}", default=default)
    except Exception:
        return default


def enabled() -> bool:
    """False where ``DASK_MAGIC_JOURNAL=off`` or ``dask-magic.journal.enabled: false``."""
    if os.environ.get("DASK_MAGIC_JOURNAL", "").lower() in ("off", "0", "false", "no"):
        return False
    return bool(_config("enabled", True))


def configured_folder() -> Path | None:
    """The folder named by ``DASK_MAGIC_JOURNAL`` or ``dask-magic.journal.path``, if any."""
    named = os.environ.get("DASK_MAGIC_JOURNAL") or _config("path", None)
    return Path(named).expanduser() if named else None


def max_size() -> int:
    """The size cap in bytes (``dask-magic.journal.max-size``, default 2GB)."""
    from dask.utils import parse_bytes

    value = _config("max-size", DEFAULT_MAX_SIZE)
    return int(value) if isinstance(value, int | float) else parse_bytes(value)


def shared_journal() -> Journal | None:
    """The process's journal for the folder configured now (one connection per folder)."""
    if not enabled():
        return None
    folder = pick_folder(configured_folder())
    if folder is None:
        return Journal(None)  # warns once: no writable folder
    found = _JOURNALS.pop(str(folder), None)
    if found is None or not found.on:
        found = Journal(folder)
    _JOURNALS[str(folder)] = found  # the most recent last
    while len(_JOURNALS) > _JOURNALS_OPEN:  # the folder moved (config, tests): close the old
        _JOURNALS.pop(next(iter(_JOURNALS))).close()
    return found


def for_run(
    plan: Any, ns: Mapping[str, Any], items: Sequence[Any], seed: int | None, fresh: bool
) -> PassJournal | None:
    """The journal of a new run, or None where it is off.

    An ordered part that draws or writes into notebook objects (plots, open files) cannot be
    replayed from stored copies of them: such loops (``plan.external``) are not journaled.
    """
    if plan.external:
        return None
    return PassJournal(
        shared_journal(), plan, ns, items, seed=seed, read=not fresh, label=_label(plan)
    )


def _label(plan: Any) -> str:
    """The loop's first line, as ``%parallel_journal`` lists it."""
    lines = plan.source.splitlines()
    loop = lines[plan.loop_lineno - 1] if 0 < plan.loop_lineno <= len(lines) else ""
    return loop.strip()[:80]


def print_why(run: Any, indices: Sequence[int]) -> None:
    """``--why``: one line on stderr per item that runs, saying why it runs."""
    import sys

    from .tracebacks import short_repr

    reasons = run.journal.explain_all(indices) if run.journal else {}
    for index in indices:
        why = reasons.get(index, "journal off")
        print(f"item {index} ({short_repr(run.items[index])}) runs: {why}", file=sys.stderr)


class PassJournal:
    """The journal's side of one run (all its passes); see the module docstring.

    Parameters
    ----------
    store:
        The `Journal`, or None when the journal is off for this run.
    read:
        Restore items found (False for ``--fresh``: items run, and are written again).
    clock:
        ``time.monotonic`` unless a test passes its own: when to write a batch.
    """

    def __init__(
        self,
        store: Journal | None,
        plan: Any,
        ns: Mapping[str, Any],
        items: Sequence[Any],
        *,
        seed: int | None = None,
        read: bool = True,
        label: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store if store is not None and store.on else None
        self.read = read
        self.clock = clock
        self.label = label
        self.plan, self.ns, self.items = plan, ns, items
        self.seed = seed
        self.run_key = keys.run_key(plan, seed) if self.store else ""
        self.keys: list[str] = []
        self.parts: list[tuple[str, str, str]] = []  # (env, item, file) per index
        self.restored: set[int] = set()
        self.at_risk: set[int] = set()
        self.reasons: dict[int, str] = {}
        self.buffer: dict[int, Entry] = {}
        self.written: set[int] = set()
        self._last_flush = clock()
        self._unpicklable_said = False

    # -- before a pass ------------------------------------------------------------------------
    def _compute_keys(self) -> None:
        env = keys.env_key(self.plan, self.ns)
        tokens = keys.item_keys(self.items)
        self.parts = [(env, tokens[i], keys.file_key(item)) for i, item in enumerate(self.items)]
        self.keys = [keys.item_key(self.run_key, *part) for part in self.parts]

    def split(self, indices: Sequence[int]) -> tuple[list[ItemOutcome], list[int]]:
        """``(restored outcomes, indices to run)`` for a pass over ``indices``."""
        if self.store is None:
            return [], list(indices)
        try:
            self._compute_keys()
        except Exception as exc:
            self.store.warn(f"the journal keys could not be computed ({exc!r}); run without it")
            self.store = None
            return [], list(indices)
        if not self.read:
            return [], list(indices)
        failed: set[str] = set()
        blobs = self.store.get([self.keys[i] for i in indices], failed)
        found: dict[int, ItemOutcome] = {}
        lost: dict[int, frozenset[str]] = {}
        for index in indices:
            outcome, lost[index] = _load(blobs.get(self.keys[index]), index)
            if outcome is not None:
                found[index] = outcome
        self._drop_at_risk(found, lost, indices)
        if found:
            self.store.touch(self.run_key)
        self.restored |= set(found)
        to_run = [i for i in indices if i not in found]
        self.restored -= set(to_run)
        self.reasons.update({i: "failed before" for i in to_run if self.keys[i] in failed})
        return [found[i] for i in sorted(found)], to_run

    def _drop_at_risk(
        self, found: dict[int, ItemOutcome], lost: dict[int, frozenset[str]], indices: Sequence[int]
    ) -> None:
        """Restored items whose stashed values would be final run again (module docstring)."""
        covered: set[str] = set()
        later_runs = False
        for index in sorted(indices, reverse=True):
            outcome = found.get(index)
            if outcome is None:
                later_runs = True
                continue
            stashed = {n for n, v in outcome.bound.items() if v is STASHED} - lost[index]
            if not later_runs and stashed - covered:
                del found[index]
                self.at_risk.add(index)
                later_runs = True
                continue
            covered |= set(outcome.bound) | set(outcome.deleted)

    # -- while it runs ----------------------------------------------------------------------------
    def record(self, outcomes: Sequence[ItemOutcome]) -> None:
        """Keep the items that ended (done, or failed for ``--why``); write a batch when due."""
        if self.store is None or not self.keys:
            return
        for outcome in outcomes:
            if outcome.status in ("done", "failed"):
                entry = self._entry(outcome)
                if entry is not None:
                    self.buffer[outcome.index] = entry
        if len(self.buffer) >= FLUSH_ITEMS or self.clock() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def _entry(self, outcome: ItemOutcome, lost: frozenset[str] = frozenset()) -> Entry | None:
        status = outcome.status
        blob = None
        if status == "done":
            try:
                blob = _dumps(outcome, lost)
            except Exception as exc:
                self._say_unpicklable(outcome.index, exc)
                return None
        env, item, files = self.parts[outcome.index]
        return Entry(self.keys[outcome.index], self.run_key, item, env, files, status, blob)

    def _say_unpicklable(self, index: int, exc: Exception) -> None:
        if not self._unpicklable_said and self.store is not None:
            self._unpicklable_said = True
            self.store.warn(
                f"item {index} cannot be pickled for the journal ({type(exc).__name__}: {exc}); "
                "such items are not journaled and run again next time"
            )

    def forget(self, index: int) -> None:
        """Item ``index`` failed in the ordered part after it ended: not done after all."""
        if self.store is None or not self.keys:
            return
        self.buffer.pop(index, None)
        if index in self.written:
            self.store.forget([self.keys[index]])
            self.written.discard(index)

    def flush(self) -> None:
        """Write the kept items in one transaction."""
        self._last_flush = self.clock()
        if self.store is None or not self.buffer:
            return
        entries, self.buffer = self.buffer, {}
        if self.store.put(entries.values(), {self.run_key: self.label}):
            self.written |= {i for i, e in entries.items() if e.status == "done"}

    # -- after it -------------------------------------------------------------------------------
    def finish(
        self, outcomes: Mapping[int, ItemOutcome], final: Mapping[str, tuple[int, Any]]
    ) -> None:
        """Write what is left, re-write the items whose last values came back, apply the cap."""
        if self.store is None or not self.keys:
            return
        self.flush()
        final_items = {i for i, _ in final.values()} & self.written
        blobs = self.store.get([self.keys[i] for i in final_items])
        for index in sorted(final_items):
            outcome = outcomes.get(index)
            blob = blobs.get(self.keys[index])
            if blob is None or outcome is None or outcome.status != "done":
                continue
            lost = frozenset(n for n, (i, v) in final.items() if i == index and v is STASHED)
            try:  # the stored outcome is not unpickled: only its bound values are replaced
                blob = _with_bound(blob, outcome.bound, lost)
            except Exception as exc:
                self._say_unpicklable(index, exc)
                self.store.forget([self.keys[index]])
                continue
            env, item, files = self.parts[index]
            self.buffer[index] = Entry(
                self.keys[index], self.run_key, item, env, files, "done", blob
            )
        self.flush()
        if self.store.size() > max_size():
            self.store.evict(max_size(), keep=self.run_key)

    # -- why an item runs -----------------------------------------------------------------------
    def explain(self, index: int) -> str:
        """Why item ``index`` ran (or that it was restored), in a few words."""
        if self.store is None:
            return "journal off"
        if index in self.restored:
            return "restored from the journal"
        if not self.read:
            return "journal off (--fresh)"
        if index in self.at_risk:
            return "its last values stayed on a worker of an earlier run"
        if index in self.reasons or not self.keys:
            return self.reasons.get(index, "not looked up")
        return self.explain_all([index])[index]

    def explain_all(self, indices: Sequence[int]) -> dict[int, str]:
        """`explain` for many items with one read of the journal.

        The rows this run wrote itself (the item's own key) are left out: the answer is the
        journal as the pass found it ("failed before" is noted when the pass starts).
        """
        reasons = {i: self.explain(i) for i in indices if self._known(i)}
        rest = [i for i in indices if i not in reasons]
        if not rest:
            return reasons
        assert self.store is not None
        by_item: dict[str, list[Entry]] = {}
        for entry in self.store.history([self.parts[i][1] for i in rest]):
            by_item.setdefault(entry.item_key, []).append(entry)
        for i in rest:
            own = self.keys[i]
            history = [e for e in by_item.get(self.parts[i][1], []) if e.key != own]
            reasons[i] = self.reasons[i] = _reason(history, self.run_key, self.parts[i])
        return reasons

    def _known(self, index: int) -> bool:
        """Whether `explain` answers without reading the journal."""
        return (
            self.store is None
            or not self.read
            or not self.keys
            or index in self.restored
            or index in self.at_risk
            or index in self.reasons
        )


def _reason(history: Sequence[Entry], run_key: str, parts: tuple[str, str, str]) -> str:
    env, item, files = parts
    mine = [e for e in history if e.item_key == item]
    if not mine:
        return "new"
    same_code = [e for e in mine if e.run_key == run_key]
    if not same_code:
        return "code changed"
    same_env = [e for e in same_code if e.env_key == env]
    if not same_env:
        return "input changed (a value it reads from the notebook)"
    if not [e for e in same_env if e.file_key == files]:
        return "input changed (the file it names)"
    return "failed before"


#: the fields of a done `ItemOutcome` a row keeps (index, bound and worker are set apart)
_FIELDS = ("ops", "deleted", "value", "stdout", "stderr", "warnings", "duration", "mutated")


def _pickle(value: Any) -> bytes:
    """Plain pickle (fast, small); cloudpickle for what it cannot do (lambdas, local classes)."""
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        return cloudpickle.dumps(value, protocol=5)


def _dumps(outcome: ItemOutcome, lost: frozenset[str]) -> bytes:
    """A row's blob: the outcome and its bound values apart, so the latter can be replaced."""
    rest = _pickle(tuple(getattr(outcome, name) for name in _FIELDS))
    return pickle.dumps((rest, _pickle(outcome.bound), lost), protocol=5)


def _with_bound(blob: bytes, bound: Mapping[str, Any], lost: frozenset[str]) -> bytes:
    rest, _, _ = pickle.loads(blob)
    return pickle.dumps((rest, _pickle(dict(bound)), lost), protocol=5)


def _load(blob: bytes | None, index: int) -> tuple[ItemOutcome | None, frozenset[str]]:
    """The stored outcome (as item ``index``) and the names its run could not bring back."""
    if blob is None:
        return None, frozenset()
    try:
        rest, bound, lost = pickle.loads(blob)
        fields = dict(zip(_FIELDS, pickle.loads(rest), strict=True))
        outcome = ItemOutcome(index, "done", bound=pickle.loads(bound), worker="journal", **fields)
    except Exception:
        return None, frozenset()
    return outcome, lost


def journal_text(clear: bool = False) -> str:
    """What ``%parallel_journal`` prints: where the journal is, its loops and their sizes."""
    from dask.utils import format_bytes

    store = shared_journal()
    if store is None or not store.on:
        return f"dask-magic: the journal is off ({store.problem if store else 'no folder'})"
    if clear:
        store.clear()
        return f"dask-magic: journal {store.path} cleared"
    runs = store.runs()
    lines = [
        f"dask-magic journal: {store.path} ({format_bytes(store.size())} of "
        f"{format_bytes(max_size())}, {len(runs)} loop{'s' if len(runs) != 1 else ''})"
    ]
    for info in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.used))
        size = format_bytes(info.size)
        lines.append(f"  {when}  {info.items:>7,} items  {size:>10}  {info.label or info.run_key}")
    return "\n".join(lines)
