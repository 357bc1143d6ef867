"""``--seed N``: before each item, seed the process-wide random states from ``(N, index)``.

A body that calls ``np.random.rand()`` or ``random.random()`` draws from state each worker
process holds on its own, so its numbers depend on which worker ran which items, in which
batch, after what. Seeding every item's draws from the run's seed and the item's index alone
makes them the same from run to run, whatever the batching, the worker or a retry. They are
still not the serial loop's numbers (one stream over all items); nothing can give those.

Seeded before each item: `random`, the legacy global state of `numpy.random` (imported here
if it is installed, so that a body that imports numpy itself is seeded from its first item
on), and torch's default generator when torch is already imported in the process (importing
torch costs seconds). The seed material is ``blake2b(f"{N}:{index}")``, split between the
three, so the streams do not depend on numpy's being installed.

With several threads per worker, items running at the same time share these states and the
streams mix; one thread per worker (the default) keeps them apart.

Runs in worker processes (and in the kernel for ``--serial``): stdlib only at import.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import random
import sys
from typing import Any

__all__ = ["item_seed", "seed_item"]

_NUMPY: list[Any] = []  # [module or None] once looked for in this process


def item_seed(seed: int, index: int) -> bytes:
    """32 bytes of seed material for item ``index`` of a run with ``--seed seed``."""
    return hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=32).digest()


def seed_item(seed: int, index: int) -> None:
    """Seed `random`, `numpy.random` and torch for item ``index`` (see the module docstring)."""
    material = item_seed(seed, index)
    random.seed(int.from_bytes(material[:16], "little"))
    numpy = _numpy()
    if numpy is not None:
        numpy.random.seed(numpy.frombuffer(material[16:], dtype=numpy.uint32))
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "manual_seed"):
        torch.manual_seed(int.from_bytes(material[8:16], "little"))


def _numpy() -> Any:
    if not _NUMPY:
        installed = "numpy" in sys.modules or importlib.util.find_spec("numpy") is not None
        _NUMPY.append(importlib.import_module("numpy") if installed else None)
    return _NUMPY[0]
