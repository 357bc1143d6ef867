"""`parallel_for(fn, items)`: the engine for scripts and tests, without a notebook cell.

The same cluster choice, batching, per-item capture, failure reports and retry as
``%%parallel_for``; the values ``fn`` returns are ``run.results``, in item order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import execute, tracebacks
from .loop import RunOptions, drive, pick_client
from .run import Run


def parallel_for(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    observers: Sequence[Any] = (),
    **options: Any,
) -> Run:
    """Call ``fn(item)`` for every item on a Dask cluster and return the `Run`.

    Parameters
    ----------
    fn:
        Any picklable callable of one argument (functions defined in ``__main__`` or a
        notebook travel by value with cloudpickle).
    items:
        Iterated once, in the caller's process.
    observers:
        Views with ``update(snapshot)`` / ``finish(snapshot)`` (see `dask_magic.ui.text`).
    **options:
        The fields of `RunOptions`: ``client``, ``scheduler``, ``workers``, ``threads``,
        ``retries``, ``on_error``, ``batch``, ``serial``, ``name``, ``timeout`` (seconds an
        item may run: it then ends as ``timeout`` and its worker is restarted), ``seed`` (seed the
        global random states of `random`, `numpy.random` and torch before each item from
        ``(seed, index)``: the same numbers from run to run, whatever the batching).

    Returns
    -------
    Run
        ``run.results`` holds the return values of the items that succeeded, in item order;
        ``run.failures`` the others; ``run.retry()`` runs the failed ones again.

    Examples
    --------
    >>> run = parallel_for(len, ["a", "bb", "ccc"], serial=True)
    >>> run.results
    [1, 2, 3]
    """
    settings = RunOptions(**options)
    run = Run(list(items), name=settings.name, describe=_describe, on_error=settings.on_error)
    run.observers.extend(observers)
    state = {"fn": fn, "options": settings}
    run._retry_hook = lambda r, fn=None, **kw: _retry(r, state, fn, **kw)
    _pass(run, state, list(range(len(run.items))))
    return run


def _describe(outcome: Any, item: Any) -> Any:
    return tracebacks.make_failure(outcome, item, cell_filename=None, labels={})


def _pass(run: Run, state: dict[str, Any], indices: list[int]) -> None:
    settings: RunOptions = state["options"]
    client = pick_client(settings)
    bundle = {"kind": "function", "fn": state["fn"], "seed": settings.seed}
    job = execute.make_job(
        bundle,
        pickle=client is not None,
        retries=settings.retries,
        batch=settings.batch,
        timeout=settings.timeout,
    )
    drive(run, job, indices, client, lambda _key: None)


def _retry(
    run: Run, state: dict[str, Any], fn: Callable[[Any], Any] | None, **overrides: Any
) -> Run:
    if fn is not None:
        state["fn"] = fn
    for key, value in overrides.items():
        if value is not None:
            setattr(state["options"], key, value)
    if run.pending_indices:
        _pass(run, state, run.pending_indices)
    return run
