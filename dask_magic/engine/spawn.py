"""What starting local worker processes needs from the kernel's process, and what to say
when they do not start.

The local cluster's workers are new Python processes started by multiprocessing's *spawn*
method. Before each start, spawn reads ``sys.modules["__main__"].__spec__`` with no default.
In a notebook, ``__main__`` is the user's namespace, and IPython's ``%reset`` deletes every
name in it, ``__spec__`` included. The next worker start then fails inside the nanny with
``AttributeError: module '__main__' has no attribute '__spec__'``, which the user only sees
as "Nanny failed to start".

`ensure_main_spawnable` puts back the module attributes a fresh ``__main__`` has, all None
(what ``types.ModuleType`` gives every module), and touches nothing else. A fresh kernel has
these same names with these same values, so the user's namespace ends as it was before the
reset. It is called before every start, scale or restart, because the nanny also spawns a
new process when it restarts a worker that died.

`start_failure_advice` looks at what really failed (the cause chained under the
"failed to start" error) and gives the fix for that cause.

This module does not start or stop any process itself.
"""

from __future__ import annotations

import sys

__all__ = ["ensure_main_spawnable", "root_cause", "start_failure_advice"]

#: Attributes every module object has from its creation on; spawn reads ``__spec__``.
_MODULE_ATTRIBUTES = ("__spec__", "__loader__", "__package__")


def ensure_main_spawnable() -> list[str]:
    """Give ``__main__`` back the module attributes a reset deleted; returns those restored."""
    main = sys.modules.get("__main__")
    if main is None:
        return []
    namespace = vars(main)
    restored = [name for name in _MODULE_ATTRIBUTES if name not in namespace]
    for name in restored:
        namespace[name] = None
    return restored


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception chained under ``exc`` (distributed wraps the real error)."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def start_failure_advice(exc: BaseException) -> str:
    """What caused a failed local cluster start, and how to fix that cause."""
    cause = root_cause(exc)
    said = "" if cause is exc else f" ({type(cause).__name__}: {cause})"
    text = str(cause).lower()
    if "bootstrapping phase" in text:  # multiprocessing's own words for a script's restart
        return (
            f"a worker process ran this script again while starting{said}. Put the script's "
            'code under `if __name__ == "__main__":`, or connect to a running cluster with '
            "--scheduler."
        )
    if isinstance(cause, AttributeError) and "'__main__'" in text:
        return (
            f"the worker processes could not be spawned from this kernel{said}. The "
            "kernel's `__main__` module was changed; restart the kernel, or connect to a "
            "running cluster with --scheduler."
        )
    if isinstance(cause, MemoryError) or "memory" in text:
        return (
            f"the machine is short of memory{said}. Start fewer workers with --workers N, "
            "set DASK_MAGIC_MEMORY_LIMIT (e.g. '2GB'), or connect to a running cluster with "
            "--scheduler."
        )
    if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
        return (
            f"the scheduler or a worker could not open a port on 127.0.0.1{said}. Check "
            "that local network ports can be opened here, or connect to a running cluster "
            "with --scheduler."
        )
    if isinstance(cause, TimeoutError):
        return (
            f"the workers did not start in time{said}; the machine may be busy. Run the "
            "cell again, start fewer workers with --workers N, or connect to a running "
            "cluster with --scheduler."
        )
    return (
        f"the worker processes did not start{said}; the worker's own error is logged "
        "above. A worker is a new Python process: it must be able to import dask_magic and "
        "the packages this kernel uses. Fix that error, connect to a running cluster with "
        "--scheduler, or run in this kernel with --serial."
    )
