"""The loop magics ``%%parallel_for`` and ``%parallel_retry``, and the extension's ``load``.

This module wires the pure rewrite, the engine and the views together for one cell. It
follows IPython's own ``%%time`` pipeline: ``transform_cell`` → parse (`rewrite_loop`) →
``transform_ast`` → compile under a cached cell filename → run → display. Every error a user
can fix arrives as a one-line `UsageError` (the exact class, so IPython prints no traceback).
The options and their reading are in `dask_magic.magic_options`; ``%dask_cluster``,
``%parallel_journal`` and the sidebar's buttons in `dask_magic.management_magics`.
"""

from __future__ import annotations

import ast
import sys
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class, no_var_expand

from . import progress_bars, views
from .engine import changes, journal_setup, preflight, tracebacks
from .engine.errorinfo import error_info
from .engine.loop import RunOptions, lost_names, missing_accumulators, repeated_own_key, start_loop
from .engine.results import RunStatus
from .engine.run import Run
from .errors import ClusterError, PicklingError, render_warnings
from .kinds import PlanInputs, cell_names, kinds_of, target_kinds
from .magic_decorators import cell_magic, line_magic
from .magic_options import parallel_for_options, parallel_retry_options, parse, run_options
from .management_magics import ManagementMagics
from .plans import PlanCache
from .rewrite.sites import change_line
from .views import RUNS_KEPT  # runs kept for ``%parallel_retry`` and the sidebar

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


@magics_class
class DaskMagics(Magics):
    """``%%parallel_for`` and its companions; one instance per shell."""

    # IPython types it Optional; these magics are only ever made with (and for) a shell
    shell: InteractiveShell

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.runs: OrderedDict[str, Run] = OrderedDict()
        self.last_run: Run | None = None
        self.bridge: Any = None
        self._journal_retry = False  # the run starting is %parallel_retry's in a new kernel
        self.plans = PlanCache()  # a cell run again unchanged is not rewritten again

    # -- %%parallel_for ------------------------------------------------------------------------
    @parallel_for_options
    @no_var_expand
    @cell_magic("parallel_for")
    def parallel_for(self, line: str, cell: str) -> Any:
        """Run the cell's top-level ``for`` loop as one Dask task per item (or batch of items).

        Results land where the serial loop would have put them: ``results.append(x)``,
        ``acc[k] = v`` and ``total += x`` are replayed in item order; names assigned in the
        body keep the last item's value. Failed items are reported, not fatal; retry them
        with ``%parallel_retry`` after a fix.
        """
        args = parse(self.parallel_for, line)
        raw = f"%%parallel_for {line}".rstrip() + "\n" + cell
        transformed = self.shell.transform_cell(cell)
        filename = self.shell.compile.cache(
            f"%%parallel_for {line}".rstrip() + "\n" + transformed,
            self._cell_number(),
            raw_code=raw,
        )
        names = cell_names(transformed)
        kinds = kinds_of(names, self.shell.user_ns)
        plan = self._rewrite(transformed, filename, raw, kinds)
        seen = PlanInputs(kinds, self.shell.user_ns, names)
        if args.show:
            print(plan.show())
            print(_sent_names(plan, self.shell.user_ns))
            return None
        self._run_code(plan.prelude, filename)
        items = self._list_items(plan, filename)
        plan = self._replan(plan, transformed, filename, raw, items, seen)
        options = run_options(
            args, self.shell.user_ns, self._labels(filename), journal_retry=self._journal_retry
        )
        if args.seed is None and plan.warnings:
            print(render_warnings(plan.warnings, plan.source), file=sys.stderr)
        run = self._start(plan, items, options, args.progress)
        return self._after(run, plan, filename)

    def _replan(
        self,
        plan: Any,
        transformed: str,
        filename: str,
        raw: str,
        items: list[Any],
        seen: PlanInputs,
    ) -> Any:
        """The plan again, now that the statements before the loop ran and the items are known:
        names they bound and the items themselves (``for ax in axes.flat``) have kinds now.

        The rewrite reads only the source, the kinds and the namespace's values of the names
        the cell mentions: where none of them changed, the first plan is the same plan."""
        kinds = kinds_of(seen.names, self.shell.user_ns)
        if items:
            kinds.update(target_kinds(plan.target, items[0]))
        if plan.prelude.body or not seen.same(kinds, self.shell.user_ns):
            plan = self._rewrite(transformed, filename, raw, kinds)
        if plan.own_keys and repeated_own_key(plan, items) is not None:
            plan = self._rewrite(transformed, filename, raw, kinds, own_keys=False)
        return plan

    def _rewrite(
        self,
        transformed: str,
        filename: str,
        raw: str,
        kinds: dict[str, str],
        own_keys: bool = True,
    ) -> Any:
        return self.plans.plan(transformed, filename, raw, kinds, self.shell.user_ns, own_keys)

    def _run_code(self, module: ast.Module, filename: str) -> None:
        if module.body:
            module = self.shell.transform_ast(module)
            exec(compile(module, filename, "exec"), self.shell.user_ns)  # the user's own cell

    def _list_items(self, plan: Any, filename: str) -> list[Any]:
        try:  # a tqdm bar around the iterable is taken off: the panel shows the progress
            items = progress_bars.list_items(plan.iterable, filename, self.shell.user_ns)
        except Exception as exc:
            info = error_info(exc)  # the magic's own frames are marked internal and hidden
            text = tracebacks.render_traceback(info, labels=self._labels(filename))
            source = ast.unparse(plan.iterable.body)
            raise UsageError(
                f"listing the loop's items (`{source}`, line {plan.loop_lineno}) failed:\n{text}"
            ) from None
        advice = preflight.big_items_advice(items)
        if advice:
            print(f"dask-magic: {advice}", file=sys.stderr)
        missing = missing_accumulators(plan, self.shell.user_ns)
        if missing:
            names = ", ".join(f"`{n}`" for n in missing)
            raise UsageError(
                f"the loop adds to {names}, which is not defined before the loop; "
                f"give it a starting value first, e.g. `{missing[0]} = []`"
            )
        return items

    def _cell_number(self) -> int:
        """The prompt number of the running cell (``In [5]``).

        IPython caches the running cell under its number before executing it; depending on
        the version, ``execution_count`` is that number or already the next one.
        """
        numbers = (getattr(self.shell.compile, "_filename_map", None) or {}).values()
        return max(numbers, default=self.shell.execution_count)

    def _labels(self, filename: str) -> dict[str, str]:
        labels = {filename: f"Cell In[{self._cell_number()}]"}
        mapping = getattr(self.shell.compile, "_filename_map", {}) or {}
        for name, number in mapping.items():
            labels.setdefault(name, f"Cell In[{number}]")
        return labels

    def _start(self, plan: Any, items: list[Any], options: RunOptions, progress: str) -> Run:
        observers = views.observers(self, progress)
        try:
            run = start_loop(
                plan,
                self.shell.user_ns,
                items,
                options,
                observers=observers,
                cell_id=_cell_id(self.shell),
                on_start=self._remember,
            )
        except (ClusterError, PicklingError) as exc:
            raise UsageError(str(exc)) from None
        self._remember(run)
        return run

    def _remember(self, run: Run) -> None:
        self.runs[run.run_id] = run
        while len(self.runs) > RUNS_KEPT:
            self.runs.popitem(last=False)
        self.last_run = run
        if run.name:
            self.shell.user_ns[run.name] = run

    def _after(self, run: Run, plan: Any, filename: str) -> Any:
        """Warn, stop or finish the cell the way the serial loop would have."""
        lost = lost_names(run)
        if lost:
            names = ", ".join(f"`{n}`" for n in lost)
            print(
                f"dask-magic: the last value of {names} could not be brought back to the notebook "
                "(it cannot be pickled, like an open file, or its worker is gone); "
                "those names keep their previous value",
                file=sys.stderr,
            )
        for message in changes.in_place_messages(
            run.outcomes.made().values(),  # a plain done item changed nothing in place
            run.items,
            plan.source,
            lambda name: change_line(plan.body, name),
            plan.target_names,
        ):
            print(message, file=sys.stderr)
        if run.status in (RunStatus.INTERRUPTED, RunStatus.ERROR):
            raise UsageError(f"{run.message}. `%parallel_retry` runs the unfinished items.")
        if run.on_error == "raise" and (run.counts.failed or run.counts.timeout):
            first = run.failures[0]
            raise UsageError(f"item {first.index} ({first.item_repr}) failed:\n{first.traceback}")
        self._run_code(plan.postlude, filename)
        if plan.last_expr is not None:
            expr = ast.Expression(
                self.shell.transform_ast(ast.Module([ast.Expr(plan.last_expr.body)], []))
                .body[0]
                .value
            )
            return eval(
                compile(expr, filename, "eval"), self.shell.user_ns
            )  # the user's expression
        # the cell's value is the Run, unless the live panel already is its display (an
        # `Out[n]: <Run ...>` under it would only go stale after a retry)
        return None if any(getattr(o, "persistent", False) for o in run.observers) else run

    # -- %parallel_retry -----------------------------------------------------------------------
    @parallel_retry_options
    @line_magic("parallel_retry")
    def parallel_retry(self, line: str) -> Any:
        """Run the failed (and cancelled) items of the last run again, after a fix.

        Their results are replayed into the same accumulators in item order, so the notebook
        ends as a clean serial run would; the statements after the loop run again.
        """
        args = parse(self.parallel_retry, line)
        if args.run is None and self.last_run is None and args.here is None:
            return self._retry_journaled()
        run = self._find_run(args.run)
        return self.retry_run(
            run,
            retries=args.retries,
            serial=args.serial or None,
            here=args.here,
            progress=args.progress,
        )

    def retry_run(
        self,
        run: Run,
        *,
        retries: int | None = None,
        serial: bool | None = None,
        here: int | None = None,
        progress: str = "auto",
    ) -> Any:
        """Retry ``run`` (also what the panel's and the sidebar's buttons call)."""
        state = run._loop_state
        if here is not None:
            from .engine.loop import run_item_here

            run_item_here(run, here)
        else:
            if not run.pending_indices:
                print(f"dask-magic: nothing to retry: all {run.counts.total} items are done")
                return run
            observers = views.observers(self, progress)
            run.observers[:] = [
                o for o in run.observers if getattr(o, "persistent", False)
            ] + observers
            try:
                run.retry(retries=retries, serial=serial)
            except (ClusterError, PicklingError) as exc:
                raise UsageError(str(exc)) from None
        return self._after(run, state.plan, state.plan.filename)

    def _retry_journaled(self) -> Any:
        """No run in this kernel (it was restarted): run the journal's last loop again, its
        done items taken from the journal even where a fix changed the notebook since."""
        source = journal_setup.last_journaled_cell()
        if not source.startswith("%%parallel_for"):
            raise UsageError("no %%parallel_for run to retry yet in this kernel")
        first, _, cell = source.partition("\n")
        print(
            f"dask-magic: retrying the journal's last loop: {journal_setup.first_loop_line(source)}"
        )
        self._journal_retry = True
        try:
            return self.parallel_for(first[len("%%parallel_for") :].strip(), cell)
        finally:
            self._journal_retry = False

    def _find_run(self, ref: str | None) -> Run:
        if ref is None:
            if self.last_run is None:
                raise UsageError("no %%parallel_for run to retry yet in this kernel")
            return self.last_run
        value = self.shell.user_ns.get(ref)
        if isinstance(value, Run):
            return value
        if ref in self.runs:
            return self.runs[ref]
        known = [r.name for r in self.runs.values() if r.name]
        hint = f"; known runs: {', '.join(known)}" if known else ""
        raise UsageError(f"no run named `{ref}`{hint}")


def _sent_names(plan: Any, ns: dict[str, Any]) -> str:
    """What ``--show`` says about the notebook names the body reads: how each one travels."""
    from dask.sizeof import sizeof
    from dask.utils import format_bytes

    from .engine import scatter

    lines = ["# names the body reads from the notebook, and how they reach the workers"]
    for name in plan.free_names():
        if name not in ns:
            continue
        value = ns[name]
        how = (
            "scattered once, re-used by later runs while unchanged"
            if scatter.should_scatter(value)
            else "sent with the run's code"
        )
        lines.append(f"#   {name}: {type(value).__name__}, {format_bytes(sizeof(value))}: {how}")
    return "\n".join(lines) if len(lines) > 1 else lines[0] + ": none"


def _cell_id(shell: Any) -> str | None:
    """The notebook cell id JupyterLab sends with the execute request (None elsewhere)."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else {}
    except Exception:  # an older kernel without get_parent
        parent = getattr(kernel, "_parent_header", {}) or {}
    metadata = (parent or {}).get("metadata") or {}
    return metadata.get("cellId") or None


_MAGICS: dict[int, DaskMagics] = {}


def load(ip: Any) -> None:
    """Register the magics (``%load_ext dask_magic``); loading twice is harmless."""
    if id(ip) in _MAGICS:
        return
    magics = DaskMagics(ip)
    management = ManagementMagics(ip, magics)
    ip.register_magics(magics, management)
    _MAGICS[id(ip)] = magics
    if getattr(ip, "kernel", None) is not None:  # a front end with comms: the JupyterLab sidebar
        from . import bridge

        magics.bridge = bridge.register(ip, management.sidebar_action)


def unload(ip: Any) -> None:
    magics = _MAGICS.pop(id(ip), None)
    if magics is None:
        return
    if magics.bridge is not None:
        from . import bridge

        bridge.unregister(ip)
        magics.bridge = None
    lines = ["parallel_retry", "dask_cluster", "parallel_journal"]
    for kind, names in (("cell", ["parallel_for"]), ("line", lines)):
        for name in names:
            ip.magics_manager.magics[kind].pop(name, None)
