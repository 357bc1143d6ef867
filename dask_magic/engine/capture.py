"""Per-item capture of stdout, stderr and warnings on a worker (or the kernel, ``--serial``).

``sys.stdout``/``sys.stderr`` are replaced once per process by streams that send each thread's
writes to the item that thread is running, so threaded workers never mix items; outside an
item, and for every other attribute, the original stream answers.
"""

from __future__ import annotations

import io
import sys
import threading
import warnings
from typing import Any

#: Captured output per stream and item: the head and the tail are kept, the middle dropped,
#: so a body that prints 10 MB costs the kernel 64 KB.
OUTPUT_HEAD = 16_384
OUTPUT_TAIL = 49_152


class _CappedText:
    """Keeps the head and the tail of what is written to it."""

    def __init__(self) -> None:
        self._head = io.StringIO()
        self._head_len = 0
        self._tail: list[str] = []
        self._tail_len = 0
        self._dropped = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            text = str(text)
        room = OUTPUT_HEAD - self._head_len
        if room > 0:
            self._head.write(text[:room])
            self._head_len += min(room, len(text))
            text = text[room:]
        if text:
            self._tail.append(text)
            self._tail_len += len(text)
            while self._tail_len - len(self._tail[0]) >= OUTPUT_TAIL:
                self._dropped += len(self._tail[0])
                self._tail_len -= len(self._tail.pop(0))
        return len(text)

    def getvalue(self) -> str:
        tail = "".join(self._tail)
        if len(tail) > OUTPUT_TAIL:
            self._dropped += len(tail) - OUTPUT_TAIL
            tail = tail[-OUTPUT_TAIL:]
        middle = (
            f"\n[... {self._dropped:,} characters of output dropped ...]\n" if self._dropped else ""
        )
        return self._head.getvalue() + middle + tail


class _ItemCapture:
    """What one thread's current item printed and warned; buffers are made on first use.

    One instance per batch is reset between items: an item that prints nothing (the common
    case) costs three attribute stores, not two buffers and a list.
    """

    __slots__ = ("stderr", "stdout", "warnings")

    def __init__(self) -> None:
        self.stdout: _CappedText | None = None
        self.stderr: _CappedText | None = None
        self.warnings: list[str] | None = None


class _ThreadRoutedStream(io.TextIOBase):
    """A ``sys.stdout`` stand-in that sends each thread's writes to that thread's item."""

    def __init__(self, original: Any, local: threading.local, attr: str) -> None:
        self._original = original
        self._local = local
        self._attr = attr

    def __getattr__(self, name: str) -> Any:
        # Everything else is the original stream's: in a Jupyter kernel (``--serial``)
        # ipykernel calls ``sys.stdout.set_parent(...)`` before each cell, and output must keep
        # going to the cell that is running.
        return getattr(self._original, name)

    def write(self, text: str) -> int:
        item = getattr(self._local, "item", None)
        if item is None:
            return self._original.write(text)
        buffer = getattr(item, self._attr)
        if buffer is None:
            buffer = _CappedText()
            setattr(item, self._attr, buffer)
        return buffer.write(text)

    def flush(self) -> None:
        if getattr(self._local, "item", None) is None:
            self._original.flush()

    def isatty(self) -> bool:
        return False

    # typeshed declares TextIOBase.encoding a plain attribute; at run time it is read-only
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", "utf-8")


_CAPTURE = threading.local()
_INSTALL_LOCK = threading.Lock()


def _install_capture() -> None:
    """Route stdout, stderr and warnings through per-thread buffers (once per process)."""
    with _INSTALL_LOCK:
        if not isinstance(sys.stdout, _ThreadRoutedStream):
            sys.stdout = _ThreadRoutedStream(sys.stdout, _CAPTURE, "stdout")
        if not isinstance(sys.stderr, _ThreadRoutedStream):
            sys.stderr = _ThreadRoutedStream(sys.stderr, _CAPTURE, "stderr")
        if getattr(warnings.showwarning, "_dask_magic", False):
            return
        original = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            item = getattr(_CAPTURE, "item", None)
            if item is None:
                return original(message, category, filename, lineno, file, line)
            if item.warnings is None:
                item.warnings = []
            item.warnings.append(f"{filename}:{lineno}: {category.__name__}: {message}")
            return None

        showwarning._dask_magic = True  # type: ignore[attr-defined]
        warnings.showwarning = showwarning
