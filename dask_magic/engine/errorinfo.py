"""Errors as data: what an item's exception becomes so that it always reaches the kernel.

Frames are kept as (file, line, function) without reading source: the kernel renders them
against its own linecache. The exception object travels too when it survives pickling.
"""

from __future__ import annotations

import traceback
import types

import cloudpickle

from .results import ErrorInfo, Frame

MESSAGE_LIMIT = 10_000
_INTERNAL_MODULES = ("dask_magic.", "dask.", "distributed.", "tornado.", "asyncio.")


def _is_internal(frame: types.FrameType) -> bool:
    module = frame.f_globals.get("__name__") or ""
    return module == "dask_magic" or module.startswith(_INTERNAL_MODULES)


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not lose the failure
        text = f"<unprintable {type(exc).__name__}>"
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT] + f" [... {len(text) - MESSAGE_LIMIT:,} more characters]"
    return text


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    # a class defined in the loop body is local to the generated function: hide that
    name = cls.__qualname__.replace("dask_magic_loop.<locals>.", "")
    return name if module in ("builtins", "__main__", None) else f"{module}.{name}"


def frames_of(tb: types.TracebackType | None) -> tuple[Frame, ...]:
    """Structured frames of a traceback, without reading any source (that happens in the kernel)."""
    return tuple(
        Frame(f.f_code.co_filename, lineno or f.f_lineno, f.f_code.co_name, _is_internal(f))
        for f, lineno in traceback.walk_tb(tb)
    )


def _portable(exc: BaseException) -> BaseException | None:
    """The exception if it survives a pickle round trip (many do not), else None."""
    try:
        return cloudpickle.loads(cloudpickle.dumps(exc.with_traceback(None)))
    except Exception:
        return None


def _chain_text(exc: BaseException) -> str:
    parts: list[str] = []
    seen = {id(exc)}
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while cause is not None and id(cause) not in seen and len(parts) < 5:
        seen.add(id(cause))
        parts.append(f"{_type_name(cause)}: {_safe_str(cause)}")
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return "\n".join(parts)


def error_info(exc: BaseException, kind: str = "user", hint: str = "") -> ErrorInfo:
    """Describe ``exc`` as data that always reaches the kernel."""
    return ErrorInfo(
        type_name=_type_name(exc),
        message=_safe_str(exc),
        frames=frames_of(exc.__traceback__),
        kind=kind,  # type: ignore[arg-type]
        exception=_portable(exc),
        chained=_chain_text(exc),
        hint=hint,
    )
