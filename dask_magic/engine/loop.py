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
from typing import TYPE_CHECKING, Any

from dask_magic.errors import ClusterError

from . import cluster, execute, handoffs, loop_job, replay, resume, scatter, timeouts, tracebacks
from .commit import OrderedCommit
from .journal_batches import collector_off
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
    seed: int | None = None  # --seed: per-item seeds of the global random states
    labels: dict[str, str] = field(default_factory=dict)  # cell filename -> "Cell In[5]"
    journal: bool = True  # keep finished items in the journal and restore them
    fresh: bool = False  # --fresh: restore nothing this run (items are still written)
    why: bool = False  # --why: say why each item that runs runs
    timeout: float | None = None  # --timeout: seconds an item may run before it is stopped
    journal_retry: bool = False  # %parallel_retry in a new kernel: keep done items of any inputs


@dataclass
class _LoopState:
    """What a retry needs: the plan, the namespace and the accumulators before the loop."""

    plan: LoopPlan
    ns: MutableMapping[str, Any]
    options: RunOptions
    before: dict[str, Any]  # deep copies of the kernel state as the loop found it
    restorable: bool  # a retry can rebuild the kernel state and replay every item in order
    absent: list[str] = field(default_factory=list)  # kernel names the loop will create
    missing: list[str] = field(default_factory=list)  # names whose last value was lost


def missing_accumulators(plan: LoopPlan, ns: MutableMapping[str, Any]) -> list[str]:
    """Accumulators the loop adds to but the namespace does not define (serial: NameError)."""
    return [name for name in plan.accumulators if name not in ns]


def repeated_own_key(plan: LoopPlan, items: Sequence[Any]) -> tuple[str, Any] | None:
    """``(name, key)`` where two items would update the same ``name[key]`` in parallel.

    ``df[c] = f(df[c])`` runs in parallel only if every item has its own ``c``; otherwise a
    later item must see the earlier one's update, and the statement belongs to the ordered part.
    """
    for name, key_name in plan.own_keys:
        get_key = _target_reader(plan, key_name)
        seen: set[Any] = set()
        for item in items:
            try:
                key = get_key(item)
                if key in seen:
                    return name, key
                seen.add(key)
            except Exception:
                return name, None
    return None


def _target_reader(plan: LoopPlan, name: str) -> Any:
    """A function of the item returning the value the target gives ``name``."""
    import ast

    fn = ast.parse(f"def read(item):\n    pass\n    return {name}").body[0]
    fn.body[0] = ast.Assign([copy.deepcopy(plan.target)], ast.Name("item", ast.Load()))  # type: ignore[attr-defined]
    module = ast.fix_missing_locations(ast.Module([fn], type_ignores=[]))
    scope: dict[str, Any] = {}
    exec(compile(module, "<loop target>", "exec"), scope)
    return scope["read"]


def start_loop(
    plan: LoopPlan,
    ns: MutableMapping[str, Any],
    items: Sequence[Any],
    options: RunOptions,
    *,
    observers: Sequence[Any] = (),
    cell_id: str | None = None,
    on_start: Any = None,
) -> Run:
    """Run every item of ``items`` through ``plan``'s body.

    ``ns`` is updated as the serial loop would update it.
    """
    run = Run(
        items,
        name=options.name,
        describe=_describer(plan, options),
        cell_id=cell_id,
        on_error=options.on_error,
    )
    run.observers.extend(observers)
    if on_start is not None:  # e.g. bind --name now: another console can watch the run
        on_start(run)
    before, restorable = _snapshot_state(plan, ns)
    absent = [name for name in plan.state_names if name not in ns]
    state = _LoopState(plan, ns, options, before, restorable, absent)
    run._retry_hook = lambda r, **kw: _retry(r, state, **kw)
    run._loop_state = state
    with handoffs.quick_handoffs():  # the notebook's thread waits on the event loop's often
        if options.journal:
            run.journal = resume.for_run(
                plan, ns, run.items, options.seed, options.fresh, options.journal_retry
            )
        _execute_pass(run, state, list(range(len(run.items))))
    return run


def _describer(plan: LoopPlan, options: RunOptions):
    labels = dict(options.labels)

    def describe(outcome, item):
        return tracebacks.make_failure(outcome, item, cell_filename=plan.filename, labels=labels)

    return describe


def _snapshot_state(plan: LoopPlan, ns: MutableMapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Deep copies of what the ordered part changes, so that a retry can replay every item.

    Plots, files and objects changed in place cannot be copied back: a retry of such a loop
    runs the retried items' ordered part after the others instead.
    """
    if plan.external:
        return {}, False
    names = dict.fromkeys([*plan.accumulators, *plan.state_names])
    try:
        return {name: copy.deepcopy(ns[name]) for name in names if name in ns}, True
    except Exception:  # something that cannot be copied: a retry appends instead of rebuilding
        return {}, False


def _retry(run: Run, state: _LoopState, **overrides: Any) -> Run:
    for key, value in overrides.items():
        if value is not None:
            setattr(state.options, key, value)
    indices = run.pending_indices
    if not indices:
        return run
    with handoffs.quick_handoffs():
        _execute_pass(run, state, indices, rebuild=state.restorable)
    return run


def _execute_pass(run: Run, state: _LoopState, indices: list[int], rebuild: bool = False) -> None:
    options = state.options
    env = {name: state.ns[name] for name in state.plan.free_names() if name in state.ns}
    with scatter.one_fingerprint_per_value():  # the journal keys and the scatter share them
        restored, to_run = run.journal.split(indices) if run.journal else ([], indices)
        if options.why and to_run:
            resume.print_why(run, to_run)
        # every item restored: no cluster is needed (nor started) for this pass
        client = pick_client(options) if to_run else None
        run.cluster = None if client is None else cluster.cluster_info(client)  # a round trip
        job = loop_job.loop_job(state.plan, env, client, options, run.cluster)
    run.committer = _committer(run, state, indices, rebuild)
    drive(run, job, to_run, client, lambda key: _land(run, state, client, key), restored)


def _committer(run: Run, state: _LoopState, indices: list[int], rebuild: bool) -> OrderedCommit:
    """The pass's in-order commit. A rebuilding retry restores the kernel state as the loop
    found it and replays the items done before, quietly, in order around the retried ones."""
    done_before = (  # made only for a rebuild: reading every item makes an ItemOutcome each
        [o for o in run.outcomes.values() if o.status == "done" and o.index not in indices]
        if rebuild
        else []
    )
    order = sorted({*indices, *(o.index for o in done_before)}) if rebuild else sorted(indices)
    committer = OrderedCommit(
        state.plan,
        state.ns,
        order,
        run.commit_failed,
        keep_ops=state.restorable,
        items=run.items,
        before_output=run.clear_views,
    )
    if rebuild:
        for name, value in state.before.items():
            state.ns[name] = copy.deepcopy(value)
        for name in state.absent:
            state.ns.pop(name, None)
        committer.offer(done_before, quiet=True)
    return committer


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


def drive(
    run: Run,
    job: execute.Job,
    indices: list[int],
    client: Any,
    land: Any,
    restored: Sequence[ItemOutcome] = (),
) -> None:
    """Run one pass of ``run`` over ``indices``; ``land(stash_key)`` settles its results.

    ``restored`` are items taken from the journal: they are done without running.

    Whatever happens (Ctrl-C, a lost scheduler, a bug), what finished is landed and the run
    is closed with a status that says why.
    """
    with collector_off():  # 10,000 new pairs would set off a dozen collections for nothing
        pairs = [(i, run.items[i]) for i in indices]
    if client is not None and run.cluster is None:
        run.cluster = cluster.cluster_info(client)
    if client is not None and job.timeout is not None and pairs:
        no_nanny = timeouts.missing_nannies(client)
        if no_nanny:
            raise ClusterError(timeouts.no_nanny_message(no_nanny))
    stash_key = f"{run.run_id}-{run.passes + 1}"
    run.begin(indices)
    how, message = "completed", ""
    try:
        if restored:
            run.add_restored(restored)
        if client is None:
            how = execute.run_in_kernel(job, pairs, run)
        else:
            how = execute.DaskRun(client, job, pairs, run, stash_key).run()
    except Exception as exc:  # the run itself broke: keep what finished, say why
        how, message = "lost", _lost_message(run, exc)
    finally:
        land(stash_key)
        run.end(how, message)


def _lost_message(run: Run, exc: Exception) -> str:
    """What broke the pass, and where to look: most often the scheduler or a link to it went."""
    where = f" at {run.cluster.scheduler}" if run.cluster is not None else ""
    return (
        f"the run lost its Dask cluster ({type(exc).__name__}: {exc}); check that the "
        f"scheduler{where} and its workers are still running. Finished items were kept"
    )


def _land(run: Run, state: _LoopState, client: Any, stash_key: str) -> None:
    """Bring the namespace to where the serial loop over the done items would leave it."""
    committer: OrderedCommit | None = run.committer
    run.committer = None
    if committer is not None:
        committer.flush()
        run.note = _bounding_note(committer, run)
        _commit_late(run, state, committer.late())
    final = replay.last_bindings(run.outcomes.binding_rows())
    for name in state.plan.kernel_names:  # the ordered part left them in the namespace itself
        final.pop(name, None)
    workers = {index: run.outcomes.worker_of(index) for index, _ in final.values()}
    wanted = replay.stashed_wanted(final, workers)
    if client is not None:
        try:
            values = execute.fetch_final_values(client, stash_key, wanted, _stash_made(run))
        except Exception:
            values = {}
        for names in wanted.values():
            for name, index in names.items():
                if name in values:
                    outcome = run.outcomes[index]  # its `bound` may be shared: replaced
                    outcome.bound = {**outcome.bound, name: values[name]}
                    final[name] = (index, values[name])
    if committer is not None:
        committer.restore_injected(final)
    if run.journal is not None:
        run.journal.finish(run.outcomes, final)
    state.missing = replay.bind_final(state.ns, final)


def _stash_made(run: Run) -> bool:
    """Whether a worker may hold values of the run in its stash: unless every item has an
    outcome (no batch is still running) and none left a value there."""
    return len(run.outcomes) != len(run.items) or run.outcomes.any_stashed()


def _commit_late(run: Run, state: _LoopState, late: list[ItemOutcome]) -> None:
    """Items retried during the pass (a live "Retry failed") land as a retry would land them:
    the kernel state is rebuilt and every done item replayed in order around them."""
    if not late:
        return
    late = [o for o in late if run.outcomes.get(o.index) is o]  # their latest outcome only
    committer = _committer(run, state, [o.index for o in late], rebuild=state.restorable)
    committer.offer(late)
    committer.flush()


def _bounding_note(committer: OrderedCommit, run: Run) -> str:
    lines = committer.bounding_lines(run.duration)
    if not lines:
        return ""
    share = committer.busy / max(run.duration, 1e-9)
    where = ", ".join(str(n) for n in lines)
    return (
        f"the ordered part (line{'s' if len(lines) > 1 else ''} {where}) took {share:.0%} of "
        "the run: "
        "it runs in the notebook, in item order, and bounded the run"
    )


def run_item_here(run: Run, index: int) -> None:
    """Run item ``index`` in this process with nothing caught, so a debugger opens at the
    user's line; if it succeeds it counts as done and lands like any other item."""
    from .seeding import seed_item
    from .worker import Recorder, make_body

    state: _LoopState = run._loop_state
    if not 0 <= index < len(run.items):
        raise IndexError(
            f"item {index} does not exist: the run has items 0 to {len(run.items) - 1}"
        )
    env = {name: state.ns[name] for name in state.plan.free_names() if name in state.ns}
    recorder = Recorder(tuple(step.needs for step in state.plan.steps))
    if state.options.seed is not None:  # the same draws as the item gets on a worker
        seed_item(state.options.seed, index)
    make_body(state.plan.body_code(), env)(run.items[index], recorder)
    bound = recorder.locals or {}
    run.committer = _committer(run, state, [index], rebuild=state.restorable)
    run.begin([index])
    run.add(
        [
            ItemOutcome(
                index=index,
                status="done",
                ops=recorder.ops,
                bound=dict(bound),
                deleted=frozenset(n for n in recorder.marked if n not in bound),
                worker="kernel",
            )
        ]
    )
    _land(run, state, None, "")
    run.end("completed")


def lost_names(run: Run) -> list[str]:
    """Names whose last value could not be brought back (its worker is gone)."""
    state = getattr(run, "_loop_state", None)
    return list(state.missing) if state else []
