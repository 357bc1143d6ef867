"""``--why`` and ``run.explain(i)``: why an item of a journaled run runs, in a few words.

Compares the item's key with the rows the journal holds for the same item token: none
("new"), none with this code ("code changed"), none with these notebook values ("input
changed (a value it reads from the notebook)"), none with this file ("input changed (the
file it names)"), else it "failed before".
"""

from __future__ import annotations

from collections.abc import Sequence
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
    for i in rest:
        history = seen.get(keys.item_token(run_journal.keys[i]), [])
        reasons[i] = run_journal.reasons[i] = _reason(
            history, run_journal.run_key, run_journal.env_key, run_journal.keys[i]
        )
    return reasons


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
        return "input changed (a value it reads from the notebook)"
    if key not in {h[2] for h in same_env}:
        return "input changed (the file it names)"
    return "failed before"
