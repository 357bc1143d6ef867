"""``--why`` and ``run.explain(i)``: why an item of a journaled run runs, in a few words.

Compares the item's key with the rows the journal holds for the same item token: none
("new"), none with this code ("code changed"), none with these notebook values, none with
this file ("input changed (the file it names)"), else it "failed before". For the notebook
values, the parts the env key counted then and now (`journal_keys.env_parts`) name what
differs: "code changed (module helpers.py)", "code changed (notebook function g)", "input
changed (a value it reads from the notebook: scale)".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from . import journal_keys as keys


def explain(run_journal: Any, index: int) -> str:
    """Why item ``index`` ran (or that it was restored), in a few words."""
    if run_journal.store is None:
        why = getattr(run_journal, "off_reason", "")
        return f"journal off ({why})" if why else "journal off"
    if index in run_journal.restored:
        return "restored from the journal"
    if not run_journal.read:
        return "journal off (--fresh)"
    if index in run_journal.at_risk:
        return "its last values stayed on a worker of an earlier run"
    if index in run_journal.reasons or not run_journal.keys:
        return run_journal.reasons.get(index, "not looked up")
    return explain_all(run_journal, [index])[index]


def explain_all(run_journal: Any, indices: Sequence[int]) -> dict[int, str]:
    """`explain` for many items with one read of the journal.

    The batches this run wrote itself are left out: the answer is the journal as the
    pass found it ("failed before" is noted when the pass starts).
    """
    reasons = {i: explain(run_journal, i) for i in indices if _known(run_journal, i)}
    rest = [i for i in indices if i not in reasons]
    if not rest:
        return reasons
    assert run_journal.store is not None
    mine = {batch for batch, _ in run_journal.kept}
    wanted = {keys.item_token(run_journal.keys[i]) for i in rest}
    seen: dict[str, list[tuple[str, str, str]]] = {}
    for batch in run_journal.store.listing():
        if batch.id in mine:
            continue
        for key in batch.keys:
            token = keys.item_token(key)
            if token in wanted:
                seen.setdefault(token, []).append((batch.run_key, batch.env_key, key))
    before = _parts_before(run_journal, seen.values())
    for i in rest:
        history = seen.get(keys.item_token(run_journal.keys[i]), [])
        reason = _reason(history, run_journal.run_key, run_journal.env_key, run_journal.keys[i])
        if reason == _INPUT_CHANGED:
            old = before.get(_latest_env(history, run_journal.run_key))
            reason = _what_changed(old, run_journal.env_parts) if old is not None else reason
        reasons[i] = run_journal.reasons[i] = reason
    return reasons


_INPUT_CHANGED = "input changed (a value it reads from the notebook)"
_CODE_KINDS = {"module": "module", "function": "notebook function", "class": "notebook class"}


def _latest_env(history: Sequence[tuple[str, str, str]], run_key: str) -> str:
    """The env key of the latest row with this code (rows come oldest first)."""
    return next((env for run, env, _ in reversed(history) if run == run_key), "")


def _parts_before(run_journal: Any, histories: Iterable[list[tuple[str, str, str]]]) -> dict:
    """What the env keys of the latest rows with this code counted (one read)."""
    wanted = {_latest_env(h, run_journal.run_key) for h in histories} - {"", run_journal.env_key}
    return run_journal.store.env_parts(wanted) if wanted else {}


def _what_changed(old: Sequence[keys.Part], new: Sequence[keys.Part]) -> str:
    """The parts that differ, code first: modules, notebook functions and classes, values."""
    then = {(kind, name): token for kind, name, token in old}
    now = {(kind, name): token for kind, name, token in new}
    changed = sorted(part for part in then.keys() | now.keys() if then.get(part) != now.get(part))
    code = [f"{_CODE_KINDS[kind]} {name}" for kind, name in changed if kind in _CODE_KINDS]
    if code:
        return f"code changed ({_few(code)})"
    values = [name for kind, name in changed if kind == "value"]
    return f"{_INPUT_CHANGED[:-1]}: {_few(values)})" if values else _INPUT_CHANGED


def _few(names: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


def _known(run_journal: Any, index: int) -> bool:
    """Whether `explain` answers without reading the journal."""
    return (
        run_journal.store is None
        or not run_journal.read
        or not run_journal.keys
        or index in run_journal.restored
        or index in run_journal.at_risk
        or index in run_journal.reasons
    )


def _reason(history: Sequence[tuple[str, str, str]], run_key: str, env_key: str, key: str) -> str:
    """Why an item runs, from the rows stored for its item token: ``(run, env, item key)``."""
    if not history:
        return "new"
    same_code = [h for h in history if h[0] == run_key]
    if not same_code:
        return "code changed"
    same_env = [h for h in same_code if h[1] == env_key]
    if not same_env:
        return _INPUT_CHANGED
    if key not in {h[2] for h in same_env}:
        return "input changed (the file it names)"
    return "failed before"
