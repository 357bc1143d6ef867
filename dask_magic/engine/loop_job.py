"""The `Job` of a loop's pass: the bundle the workers get, and what they need to know of it.

Small names ride along in the bundle; big ones are scattered once (`scatter`); a name that
cannot be pickled stops the run before anything is sent (`preflight`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dask_magic.errors import PicklingError

from . import preflight, scatter
from .jobs import Job, make_job

if TYPE_CHECKING:  # importing rewrite.plan would load the whole rewriter into the engine
    from dask_magic.rewrite.plan import LoopPlan

    from .loop import RunOptions


def loop_job(
    plan: LoopPlan, env: dict[str, Any], client: Any, options: RunOptions, info: Any
) -> Job:
    """The job of a pass: the body, its small names inline, its big ones scattered once."""
    job_options: dict[str, Any] = {
        "retries": options.retries,
        "batch": options.batch,
        "timeout": options.timeout,
    }
    if client is None:
        return make_job(_bundle(plan, env, options.seed), pickle=False, **job_options)
    small: dict[str, Any] = {}
    big: dict[str, Any] = {}
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
    return make_job(
        _bundle(plan, small, options.seed), big_env=big_futures, big_values=big, **job_options
    )


def _bundle(plan: LoopPlan, env: dict[str, Any], seed: Any) -> dict[str, Any]:
    """What the worker (or the kernel, for --serial) needs to run the body over items."""
    code = plan.body_code()
    return {"kind": "loop", "code": code, "env": env, "seed": seed, **_ordered_facts(plan)}


def _ordered_facts(plan: LoopPlan) -> dict[str, Any]:
    """What the worker needs to know of the ordered part (see `worker.Recorder.run`)."""
    return {
        "needs": tuple(step.needs for step in plan.steps),
        "may_depend": frozenset(plan.may_depend),
        "mirrored": tuple(plan.mirrored_roots),
        "kernel": frozenset(plan.kernel_names),
    }


def _pickling_message(problems: list[tuple[str, str]]) -> str:
    lines = [f"  {name}: {reason}" for name, reason in problems]
    names = ", ".join(f"`{n}`" for n, _ in problems)
    return (
        f"the loop body reads {names}, which cannot be sent to the workers:\n"
        + "\n".join(lines)
        + "\nfix: create these inside the loop body (e.g. open the file per item), or run with "
        "--serial to stay in the kernel"
    )
