"""Render an item's error, captured on a worker as data, as a traceback in the kernel.

The worker sends frames as ``(filename, line, function)`` only (see
`dask_magic.engine.worker.error_info`); the source lines are read here, from the kernel's
`linecache`, where IPython's ``CachingCompiler`` registered each cell's source under its
filename. So a failing line of the user's cell shows as::

    Cell In[5], line 4, in <loop body>
        df = pd.read_csv(path)
        ^^^^^^^^^^^^^^^^^^^^^^

Frames of dask, distributed, tornado and dask_magic are folded into one note unless asked
for. This module formats; it never re-raises, never talks to dask and never reads a file
other than through `linecache`.
"""

from __future__ import annotations

import linecache
import reprlib
from collections.abc import Iterator, Sequence
from typing import Any

from .results import ErrorInfo, Failure, Frame, ItemOutcome

__all__ = ["failure_line", "make_failure", "render_traceback", "short_repr"]

#: Path fragments naming the library a hidden frame belongs to, in the order they are
#: tested (``dask_magic`` before ``dask``, which is a prefix of it).
_LIBRARIES = ("dask_magic", "distributed", "dask", "tornado", "asyncio")


class _ShortRepr(reprlib.Repr):
    """`reprlib` with a readable marker for objects whose ``__repr__`` raises."""

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            text = repr(x)
        except Exception:  # a broken __repr__ is the user's bug, not a reason to lose the item
            return f"<unreprable {type(x).__name__}>"
        if "\n" in text:  # a label is one line: a DataFrame shows as its shape
            shape = getattr(x, "shape", None)
            if isinstance(shape, tuple):
                return f"<{type(x).__name__} shape={shape}>"
            text = " ".join(text.split())
        if len(text) > self.maxother:
            half = max(0, (self.maxother - 3) // 2)
            text = text[:half] + "..." + text[len(text) - half :]
        return text


def short_repr(obj: Any, limit: int = 120) -> str:
    """A repr of ``obj`` of at most ``limit`` characters that never raises.

    Strings and containers are cut *before* they are formatted (a 10 MB string costs
    ``limit`` characters of work); other objects are formatted by their own ``__repr__``
    and then cut.
    """
    shortener = _ShortRepr()
    shortener.maxstring = shortener.maxother = max(limit, 8)
    shortener.maxlevel = 3
    try:
        text = shortener.repr(obj)
    except Exception:  # e.g. a container whose elements' reprs raise in odd ways
        text = f"<unreprable {type(obj).__name__}>"
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def _library_of(filename: str) -> str:
    normalized = filename.replace("\\", "/")
    for library in _LIBRARIES:
        if f"/{library}/" in normalized:
            return library
    return "internal"


def _location(frame: Frame, labels: dict[str, str]) -> str:
    label = labels.get(frame.filename)
    if label is not None:
        return f"  {label}, line {frame.lineno}, in {frame.name}"
    return f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}'


def _source(frame: Frame, marked: bool) -> list[str]:
    """The frame's source line, and carets under it for the failing frame."""
    line = linecache.getline(frame.filename, frame.lineno)
    text = line.strip()
    if not text:
        return []
    out = [f"    {text}"]
    if marked:
        out.append("    " + "^" * len(text))
    return out


def _marked_frame(frames: Sequence[Frame], labels: dict[str, str]) -> int | None:
    """Index of the frame to mark: the deepest in a cell, else the deepest of all."""
    for i in range(len(frames) - 1, -1, -1):
        if frames[i].filename in labels:
            return i
    return len(frames) - 1 if frames else None


def _hidden_note(run: list[Frame]) -> str:
    found = {_library_of(f.filename) for f in run}
    libraries = [name for name in (*_LIBRARIES, "internal") if name in found]
    noun = "frame" if len(run) == 1 else "frames"
    return f"  ({len(run)} {noun} of {'/'.join(libraries)} hidden)"


def _frame_lines(
    frames: Sequence[Frame], labels: dict[str, str], show_internal: bool
) -> Iterator[str]:
    marked = _marked_frame(frames, labels)
    hidden: list[Frame] = []
    for i, frame in enumerate(frames):
        if frame.internal and not show_internal:
            hidden.append(frame)
            continue
        if hidden:
            yield _hidden_note(hidden)
            hidden = []
        yield _location(frame, labels)
        yield from _source(frame, marked=i == marked)
    if hidden:
        yield _hidden_note(hidden)


def render_traceback(
    info: ErrorInfo, *, labels: dict[str, str], show_internal: bool = False
) -> str:
    """A Python-style traceback of ``info`` with cell frames labelled as IPython does.

    Parameters
    ----------
    info:
        The error as captured on the worker.
    labels:
        Cell filename -> label shown instead of ``File "..."`` (``"Cell In[5]"``).
    show_internal:
        Show frames of dask, distributed, tornado and dask_magic instead of one note.
    """
    lines = []
    if info.frames:
        lines.append("Traceback (most recent call last):")
        lines.extend(_frame_lines(info.frames, labels, show_internal))
    lines.append(f"{info.type_name}: {info.message}" if info.message else info.type_name)
    if info.chained:
        lines.append("")
        lines.append("It was raised from, or while handling:")
        lines.extend(f"  {line}" for line in info.chained.splitlines())
    if info.hint:
        lines.append(f"hint: {info.hint}")
    return "\n".join(lines)


def failure_line(info: ErrorInfo, cell_filename: str | None) -> int | None:
    """Cell line of the deepest frame in the cell ``cell_filename``, if any."""
    if cell_filename is None:
        return None
    for frame in reversed(info.frames):
        if frame.filename == cell_filename:
            return frame.lineno
    return None


class _Later:
    """Marker of a traceback not rendered yet (pickles as the module's one instance)."""

    def __reduce__(self) -> str:
        return "_LATER"


_LATER = _Later()


def _deferred(name: str, show_internal: bool) -> property:
    """A traceback field rendered on first read, then kept.

    The dataclass ``__init__`` of the frozen `Failure` stores its fields with
    ``object.__setattr__``, which goes through this property's setter.
    """

    def read(self: Failure) -> str:
        text = self.__dict__[name]
        if text is _LATER:
            text = render_traceback(
                self.error, labels=self.__dict__["_labels"], show_internal=show_internal
            )
            self.__dict__[name] = text
        return text

    def store(self: Failure, value: str) -> None:
        self.__dict__[name] = value

    return property(read, store)


class _RenderedOnRead(Failure):
    """A `Failure` whose tracebacks are rendered when a view first reads them.

    Rendering reads source lines and formats every frame; most failures of a big run are
    counted and grouped but never opened, so the kernel should not pay for that while the
    workers wait for their next tasks.
    """

    traceback = _deferred("_traceback", show_internal=False)
    full_traceback = _deferred("_full_traceback", show_internal=True)


def make_failure(
    outcome: ItemOutcome,
    item: Any,
    *,
    cell_filename: str | None,
    labels: dict[str, str],
) -> Failure:
    """The `Failure` every view shows for a failed ``outcome`` of loop value ``item``.

    Its ``traceback`` and ``full_traceback`` are rendered on first read (see `_RenderedOnRead`).
    """
    if outcome.error is None:
        raise ValueError(f"item {outcome.index} has no error to report (status {outcome.status!r})")
    info = outcome.error
    failure = _RenderedOnRead(
        index=outcome.index,
        item_repr=short_repr(item),
        error=info,
        line=failure_line(info, cell_filename),
        traceback=_LATER,  # type: ignore[arg-type]
        full_traceback=_LATER,  # type: ignore[arg-type]
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        warnings=outcome.warnings,
        duration=outcome.duration,
        worker=outcome.worker,
    )
    failure.__dict__["_labels"] = dict(labels)
    return failure
