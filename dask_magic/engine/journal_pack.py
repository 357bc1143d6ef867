"""How a batch's item keys and outcomes are packed into the journal's two BLOB columns.

Both are packed on the journal's writer thread (`Journal.put` runs there), never on the
kernel's: the kernel hands over the list of keys and the bytes the worker sent, as they are.

* **keys**: the item keys joined by newlines (no key holds one: plain values count by their
  ``repr``, the rest by hex digests), with the failed positions, pickled and compressed.
  Joining 100,000 short strings is one C call; pickling them as a list cost 0.3 µs per item,
  holding the GIL the kernel needs.
* **blob**: the outcomes' bytes compressed (zlib, level 1: about 5x smaller on tiny items,
  and zlib lets go of the GIL while it works). Fewer bytes to write is what counts: on this
  machine SQLite spent 1.6 µs per tiny item writing and checkpointing the raw bytes.

What older versions wrote (a pickled list of keys, raw outcome bytes) still reads back: a
zlib stream starts with ``0x78``, a pickle of protocol 2 or later with ``0x80``.
"""

from __future__ import annotations

import pickle
import zlib

__all__ = ["pack_blob", "pack_keys", "unpack_blob", "unpack_keys"]

_ZLIB = 0x78
#: below this size a blob is stored as it came (compressing it would save next to nothing)
_SMALL = 256


def pack_keys(item_keys: list[str], failed: list[int]) -> bytes:
    """The keys column of a batch (see the module docstring)."""
    return zlib.compress(pickle.dumps(("\n".join(item_keys), failed), protocol=5), 1)


def unpack_keys(packed: bytes) -> tuple[list[str], list[int]]:
    """``(item keys by position, failed positions)`` of a batch, as `pack_keys` got them."""
    if packed[:1] == bytes([_ZLIB]):
        packed = zlib.decompress(packed)
    joined, failed = pickle.loads(packed)
    if isinstance(joined, str):
        return (joined.split("\n") if joined else []), failed
    return joined, failed  # written as a list by an older version


def pack_blob(blob: bytes) -> bytes:
    """The outcomes' bytes as stored: compressed unless small."""
    return zlib.compress(blob, 1) if len(blob) >= _SMALL else blob


def unpack_blob(stored: bytes) -> bytes:
    """The outcomes' bytes as the worker sent them; a damaged stream comes back as it is
    (it then fails to load, and its items run again)."""
    if stored[:1] != bytes([_ZLIB]):
        return stored
    try:
        return zlib.decompress(stored)
    except zlib.error:
        return stored
