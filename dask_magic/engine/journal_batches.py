"""Helpers of `resume` over the batches the journal holds: where each item key's latest
outcome is, the keys of a task's items, loading a batch's outcomes."""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import cloudpickle

from .journal import Batch, Journal
from .results import ItemOutcome

__all__ = ["cap_size", "collector_off", "keys_of", "load_outcomes", "positions", "put_kept"]


def positions(stored: Sequence[Batch]) -> tuple[dict[str, tuple[str, int]], set[str]]:
    """Where each item key's latest done outcome is, and the keys whose items failed (and
    never did since)."""
    where: dict[str, tuple[str, int]] = {}
    failed: set[str] = set()
    for batch in stored:
        if not batch.failed:  # the usual case, at C speed
            where.update(zip(batch.keys, _places(batch.id, len(batch.keys)), strict=True))
            failed.difference_update(batch.keys)
            continue
        bad = set(batch.failed)
        for pos, key in enumerate(batch.keys):
            if pos in bad:
                failed.add(key)
            else:
                where[key] = (batch.id, pos)
                failed.discard(key)
    return where, failed - set(where)


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """Loading many outcomes would run the garbage collector many times for nothing."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def keys_of(item_keys: list[str], indices: list[int]) -> list[str]:
    """The keys of these indices: a slice where they follow each other (a task's items
    usually do), which costs next to nothing per item."""
    if indices and indices == list(range(indices[0], indices[0] + len(indices))):
        return item_keys[indices[0] : indices[0] + len(indices)]
    return list(map(item_keys.__getitem__, indices))


def _places(batch: str, n: int) -> zip:
    """``(batch, 0), (batch, 1), ...``: where the items of a batch are kept."""
    return zip(itertools.repeat(batch, n), range(n), strict=True)


def load_outcomes(blob: bytes | None) -> list[ItemOutcome | None] | None:
    try:
        return None if blob is None else list(cloudpickle.loads(blob))
    except Exception:  # written by another version, or damaged: those items run again
        return None


def put_kept(
    store: Journal,
    kept: tuple[list[str], str, str, list[tuple[str, list[int], list[int], bytes]]],
    *rest: Mapping[Any, Any],
) -> bool:
    """`Journal.put` of the batches a pass kept, on the writer thread: ``kept`` is the item
    keys by index, the run and env keys, and each batch's id, indices, failed positions and
    blob; their keys are looked up here, off the kernel's thread."""
    item_keys, run_key, env_key, batches = kept
    rows = [
        Batch(batch, run_key, env_key, keys_of(item_keys, indices), failed, blob)
        for batch, indices, failed, blob in batches
    ]
    return store.put(rows, *rest)


def cap_size(store: Journal, limit: int, keep: str) -> list[str]:
    """The size cap (on the writer thread): the oldest runs but ``keep`` evicted until the
    journal fits in ``limit`` bytes; the run keys evicted."""
    return store.evict(limit, keep=keep) if store.size() > limit else []
