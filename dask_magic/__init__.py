"""dask-magic: run an ordinary notebook for-loop as parallel Dask tasks.

``%load_ext dask_magic`` registers ``%%parallel_for``, ``%parallel_retry`` and
``%dask_cluster``. Scripts use `parallel_for` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .engine.run import Run

__all__ = ["__version__", "load_ipython_extension", "parallel_for", "unload_ipython_extension"]


def load_ipython_extension(ip: Any) -> None:
    """Called by ``%load_ext dask_magic``."""
    from .magics import load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    """Called by ``%unload_ext dask_magic``: undoes every registration."""
    from .magics import unload

    unload(ip)


def parallel_for(fn: Any, items: Any, **options: Any) -> Run:
    """Run ``fn(item)`` for every item on a Dask cluster; see `dask_magic.engine.api`."""
    from .engine.api import parallel_for as _parallel_for

    return _parallel_for(fn, items, **options)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "dask-magic"}]
