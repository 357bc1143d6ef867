"""Run a `LoopPlan` against a namespace: the engine's entry point for ``%%parallel_for``.

`start_loop` takes the listed items and the namespace the body reads from, runs every item
(on Dask, or in the kernel with ``serial=True``), replays the recorded additions into the
namespace in item order, and binds each name the body assigns to its last value, exactly
as the serial loop would leave them. `Run.retry` (wired here) runs the unfinished items
again and rebuilds the accumulators from their state before the loop, so a retry after a fix
leaves the same namespace as a clean serial run.

The namespace is any mutable mapping; nothing here knows about IPython.
"""

from __future__ import annotations

import copy
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PicklingError
from . import cluster, execute, preflight, replay, scatter, tracebacks
from .results import ItemOutcome
from .run import Run

if TYPE_CHECKING:  # importing rewrite.plan would load the whole rewriter into the engine
    from dask_magic.rewrite.plan import LoopPlan


@dataclass
class RunOptions:
    """How to run; the magic's options map one to one onto these fields."""

    client: Any = None
    scheduler: str | None = None
    workers: int | None = None
    threads: int | None = None
    retries: int = 0
    on_error: str = "continue"
    batch: int | str = "auto"
    serial: bool = False
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # cell filename -> "Cell In[5]"


@dataclass
class _LoopState:
    """What a retry needs: the plan, the namespace and the accumulators before the loop."""

    plan: LoopPlan
    ns: MutableMapping[str, Any]
    options: RunOptions
    before: dict[str, Any]  # deep copies of the accumulators as the loop found them
    restorable: bool
    missing: list[str] = field(default_factory=list)  # names whose last value was lost


def missing_accumulators(plan: LoopPlan, ns: MutableMapping[str, Any]) -> list[str]:
    """Accumulators the loop adds to but the namespace does not define (serial: NameError)."""
    return [name for name in plan.accumulators if name not in ns]


def start_loop(
    plan: LoopPlan,
    ns: MutableMapping[str, Any],
    items: Sequence[Any],
    options: RunOptions,
    *,
    observers: Sequence[Any] = (),
    cell_id: str | None = None,
) -> Run:
    """Run every item of ``items`` through ``plan``'s body and update ``ns`` like the serial loop."""
    run = Run(
        items,
        name=options.name,
        describe=_describer(plan, options),
        cell_id=cell_id,
        on_error=options.on_error,
    )
    run.observers.extend(observers)
    before, restorable = _snapshot_accumulators(plan, ns)
    state = _LoopState(plan, ns, options, before, restorable)
    run._retry_hook = lambda r, **kw: _retry(r, state, **kw)
    run._loop_state = state
    _execute_pass(run, state, list(range(len(run.items))))
    return run


def _describer(plan: LoopPlan, options: RunOptions):  # noqa: ANN202
    labels = dict(options.labels)

    def describe(outcome, item):  # noqa: ANN001, ANN202
        return tracebacks.make_failure(outcome, item, cell_filename=plan.filename, labels=labels)

    return describe


def _snapshot_accumulators(
    plan: LoopPlan, ns: MutableMapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    try:
        return {name: copy.deepcopy(ns[name]) for name in plan.accumulators if name in ns}, True
    except Exception:  # an accumulator that cannot be copied: a retry appends instead of rebuilding
        return {}, False


def _retry(run: Run, state: _LoopState, **overrides: Any) -> Run:
    for key, value in overrides.items():
        if value is not None:
            setattr(state.options, key, value)
    indices = run.pending_indices
    if not indices:
        return run
    _execute_pass(run, state, indices, rebuild=state.restorable)
    return run


def _execute_pass(run: Run, state: _LoopState, indices: list[int], rebuild: bool = False) -> None:
    options = state.options
    env = {name: state.ns[name] for name in state.plan.free_names() if name in state.ns}
    client = pick_client(options)
    run.cluster = None if client is None else cluster.cluster_info(client)  # one round trip a pass
    job = _job(state.plan, env, client, options, run.cluster)
    drive(run, job, indices, client, lambda key: _land(run, state, client, key, rebuild))


def pick_client(options: RunOptions) -> Any:
    """The Client for a pass, or None for ``--serial``."""
    if options.serial:
        return None
    return cluster.get_client(
        client=options.client,
        scheduler=options.scheduler,
        workers=options.workers,
        threads=options.threads,
    )


def drive(run: Run, job: execute.Job, indices: list[int], client: Any, land: Any) -> None:
    """Run one pass of ``run`` over ``indices``; ``land(stash_key)`` settles its results.

    Whatever happens (Ctrl-C, a lost scheduler, a bug), what finished is landed and the run
    is closed with a status that says why.
    """
    pairs = [(i, run.items[i]) for i in indices]
    if client is not None and run.cluster is None:
        run.cluster = cluster.cluster_info(client)
    stash_key = f"{run.run_id}-{run.passes + 1}"
    run.begin(indices)
    how, message = "completed", ""
    try:
        if client is None:
            how = execute.run_in_kernel(job, pairs, run)
        else:
            how = execute.DaskRun(client, job, pairs, run, stash_key).run()
    except Exception as exc:  # the run itself broke: keep what finished, say why
        how, message = "lost", f"{type(exc).__name__}: {exc}"
    finally:
        land(stash_key)
        run.end(how, message)


def _job(
    plan: LoopPlan, env: dict[str, Any], client: Any, options: RunOptions, info: Any
) -> execute.Job:
    job_options = {"retries": options.retries, "batch": options.batch}
    if client is None:
        bundle = {"kind": "loop", "code": plan.body_code(), "env": env}
        return execute.make_job(bundle, pickle=False, **job_options)
    small, big = {}, {}
    for name, value in env.items():
        (big if scatter.should_scatter(value) else small)[name] = value
    problems = preflight.unpicklable_names(small)
    if problems:
        raise PicklingError(_pickling_message(problems))
    if not info.local:
        # workers elsewhere cannot import the notebook folder's own modules: send them
        preflight.ship_local_modules(client, preflight.local_modules(env, Path.cwd()))
    big_futures = {
        name: scatter.default_cache.get(client, name, value) for name, value in big.items()
    }
    bundle = {"kind": "loop", "code": plan.body_code(), "env": small}
    return execute.make_job(bundle, big_env=big_futures, **job_options)


def _pickling_message(problems: list[tuple[str, str]]) -> str:
    lines = [f"  {name}: {reason}" for name, reason in problems]
    names = ", ".join(f"`{n}`" for n, _ in problems)
    return (
        f"the loop body reads {names}, which cannot be sent to the workers:\n"
        + "\n".join(lines)
        + "\nfix: create these inside the loop body (e.g. open the file per item), or run with "
        "--serial to stay in the kernel"
    )


def _land(run: Run, state: _LoopState, client: Any, stash_key: str, rebuild: bool) -> None:
    """Bring the namespace to where the serial loop over the done items would leave it."""
    outcomes = list(run.outcomes.values())
    if rebuild:
        for name, value in state.before.items():
            state.ns[name] = copy.deepcopy(value)
        replay.replay(state.ns, outcomes)
    else:
        replay.replay(state.ns, [o for o in outcomes if o.index in run.pass_indices])
    final = replay.last_bindings(outcomes)
    wanted = replay.stashed_wanted(final, {o.index: o.worker for o in outcomes})
    if client is not None:
        try:
            values = execute.fetch_final_values(client, stash_key, wanted)
        except Exception:  # noqa: BLE001 - a lost worker only costs the last value of a name
            values = {}
        for names in wanted.values():
            for name, index in names.items():
                if name in values:
                    run.outcomes[index].bound[name] = values[name]
                    final[name] = (index, values[name])
    state.missing = replay.bind_final(state.ns, final)


def run_item_here(run: Run, index: int) -> None:
    """Run item ``index`` in this process with nothing caught, so a debugger opens at the
    user's line; if it succeeds it counts as done and lands like any other item."""
    from .worker import Recorder, make_body

    state: _LoopState = run._loop_state
    if not 0 <= index < len(run.items):
        raise IndexError(
            f"item {index} does not exist: the run has items 0 to {len(run.items) - 1}"
        )
    env = {name: state.ns[name] for name in state.plan.free_names() if name in state.ns}
    recorder = Recorder()
    make_body(state.plan.body_code(), env)(run.items[index], recorder)
    run.begin([index])
    run.add(
        [
            ItemOutcome(
                index=index,
                status="done",
                ops=recorder.ops,
                bound=dict(recorder.locals),
                deleted=frozenset(n for n in recorder.marked if n not in recorder.locals),
                worker="kernel",
            )
        ]
    )
    _land(run, state, None, "", rebuild=state.restorable)
    run.end("completed")


def lost_names(run: Run) -> list[str]:
    """Names whose last value could not be brought back (its worker is gone)."""
    state = getattr(run, "_loop_state", None)
    return list(state.missing) if state else []
