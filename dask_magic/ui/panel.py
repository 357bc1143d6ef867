"""The live ipywidgets panel of a ``%%parallel_for`` run.

`ProgressPanel` is a run observer (``update``/``finish``, see ``docs/architecture.md``): a
view over `RunSnapshot` data only. It never talks to Dask and never throttles again; the
engine calls ``update`` at most ~10 times a second and ``finish`` once per pass.

Built from stock widgets (as distributed's ``ProgressWidget`` is): HTML
widgets for the header, the bar with counts, and the failure rows, whose expansion is a
browser-side ``<details>`` (so it works while the kernel is busy), plus buttons. Where the
kernel reads clicks while a cell runs (*live mode*: the JupyterLab extension sends them on
a kernel subshell, see `dask_magic.bridge`), Cancel and Retry failed act during the run;
elsewhere a busy kernel reads clicks only once the cell has ended, and the panel says so.
Each action button carries DOM classes naming its action and run (``dm-action``,
``dm-action-cancel``, ``dm-run-<id>``), which the extension's click handler reads. The display
carries ``text/plain`` and ``text/html`` summaries beside the widget view, replaced when a
pass ends, for front ends without widgets.

Bounded by construction for runs with thousands of failures: widgets exist only for the
rows on screen (a few per group, "show more" adds more), they are reused across updates,
and traitlets only send a value that changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import ipywidgets as w

from dask_magic.engine.results import Failure, RunSnapshot, RunStatus, group_failures
from dask_magic.ui import html, text
from dask_magic.ui.actions import ActionButtons, hint_html
from dask_magic.ui.running import RunningList

__all__ = ["ProgressPanel"]

#: Failure rows shown per group at first, and how many each "show more" click adds.
ROWS_PER_GROUP = 5
MORE_ROWS = 25
#: Failure groups shown at first, and how many "show more groups" adds.
GROUPS_SHOWN = 8

_LIVE = (RunStatus.PENDING, RunStatus.RUNNING)

Publish = Callable[[dict[str, Any], bool], None]


_PACKAGE = str(Path(__file__).resolve().parents[1])


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` from its first frame outside dask_magic on (all of it if every frame is ours)."""
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        first = first.tb_next
    return first if first is not None else tb


def _show_error(exc: Exception) -> None:
    """Show ``exc`` as IPython shows a cell's error, minus the button's and the magic's frames.

    IPython's ``showtraceback`` also stores it as ``sys.last_traceback``, so ``%debug`` in
    the next cell opens at the user's line.
    """
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise exc
    shell.showtraceback((type(exc), exc, _user_frames(exc.__traceback__)), tb_offset=0)


class _IPythonDisplay:
    """Shows a bundle once with a display id, then replaces it in place."""

    def __init__(self) -> None:
        self._handle: Any = None

    def __call__(self, bundle: dict[str, Any], update: bool) -> None:
        from IPython.display import display  # ipywidgets needs IPython anyway

        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


class _Row:
    """One failed item on screen: its ``<details>`` and its "Re-run here" button."""

    def __init__(self, layouts: Mapping[str, w.Layout], on_rerun: Callable[[int], None]) -> None:
        self.index = -1
        self.html = w.HTML(layout=layouts["row_html"])
        self.button = w.Button(
            description="Re-run here",
            icon="play",
            layout=layouts["rerun"],
            tooltip="Run this item in the kernel, errors raised, so %debug opens at your line",
        )
        self.button.on_click(lambda _b: on_rerun(self.index))
        self.box = w.HBox([self.html, self.button], layout=layouts["row"])

    def show(self, failure: Failure) -> None:
        self.index = failure.index
        self.html.value = html.failure_html(failure)


class _Group:
    """One failure group: header, the rows on screen, and "show more"."""

    def __init__(
        self,
        layouts: Mapping[str, w.Layout],
        on_rerun: Callable[[int], None],
        on_more: Callable[[str], None],
    ) -> None:
        self.label = ""
        self._layouts, self._on_rerun = layouts, on_rerun
        self.header = w.HTML()
        self.rows = w.VBox()
        self.more = w.Button(
            layout=w.Layout(display="none", width="auto", align_self="flex-start"),
            _dom_classes=["dm-more"],
        )
        self.more.on_click(lambda _b: on_more(self.label))
        self.box = w.VBox([self.header, self.rows, self.more])
        self._pool: list[_Row] = []

    def show(self, label: str, group: list[Failure], cap: int) -> None:
        self.label = label
        self.header.value = html.group_html(label, group)
        shown = group[:cap]
        while len(self._pool) < len(shown):
            self._pool.append(_Row(self._layouts, self._on_rerun))
        for row, failure in zip(self._pool, shown, strict=False):  # the pool may be longer
            row.show(failure)
        self.rows.children = tuple(row.box for row in self._pool[: len(shown)])
        hidden = len(group) - len(shown)
        self.more.description = (
            f"Show {min(MORE_ROWS, hidden)} more ({hidden:,} not shown)" if hidden else ""
        )
        self.more.layout.display = "" if hidden else "none"


class ProgressPanel:
    """Live panel for one run: bar, counts, timing, cluster, grouped failures and buttons.

    Parameters
    ----------
    on_retry:
        Called with no arguments by "Retry failed" (after the run ended); e.g. a call of
        ``DaskMagics.retry_run(run)``. Its output goes to the panel's output area.
    on_rerun:
        Called with an item index by a row's "Re-run here"; exceptions it raises are shown
        as a traceback in the output area (and ``%debug`` can open them).
    publish:
        ``publish(bundle, update)`` shows the display bundle; IPython's display with a
        display id when not given.
    environ:
        Environment used for the dashboard link (``JUPYTERHUB_SERVICE_PREFIX``);
        ``os.environ`` when not given.

    Attributes
    ----------
    persistent:
        True: a retry of the run keeps this view (``DaskMagics.retry_run``), so the cell
        that started the run shows the run's latest state.
    """

    persistent = True

    def __init__(
        self,
        *,
        on_retry: Callable[[], Any] | None = None,
        on_rerun: Callable[[int], Any] | None = None,
        publish: Publish | None = None,
        environ: Mapping[str, str] | None = None,
        on_cancel: Callable[[], Any] | None = None,
        live_mode: Callable[[], bool] | None = None,
    ) -> None:
        self._on_retry, self._on_rerun = on_retry, on_rerun
        self._on_cancel = on_cancel
        self._live_mode = live_mode or (lambda: False)
        self._publish = publish or _IPythonDisplay()
        self._environ = environ
        self.snapshot: RunSnapshot | None = None
        self._shown = False
        self._failures_key: tuple[int, ...] | None = None
        self._failures_ref: tuple[Failure, ...] = ()
        self._caps: dict[str, int] = {}
        self._groups_cap = GROUPS_SHOWN
        self._layouts = {
            "row": w.Layout(align_items="flex-start", width="100%"),
            "row_html": w.Layout(flex="1 1 auto", min_width="0"),
            # One layout for every "Re-run here": a single message hides or shows them all.
            "rerun": w.Layout(display="none", width="auto", flex="0 0 auto"),
        }
        self._build()

    def _build(self) -> None:
        self.css = w.HTML(html.CSS)  # sent once; the other HTML widgets rely on its classes
        self.head = w.HTML(_dom_classes=["dm-head-w"])
        self.status = w.HTML(_dom_classes=["dm-status-w"])
        self.hint = w.HTML(_dom_classes=["dm-hint-w"])
        self.actions = ActionButtons(on_cancel=self._cancel, on_retry=self._retry)
        self.retry_button, self.cancel_button = self.actions.retry, self.actions.cancel
        self.running = RunningList()
        self.groups = w.VBox(_dom_classes=["dm-failures"])
        self.more_groups = w.Button(
            layout=w.Layout(display="none", width="auto", align_self="flex-start"),
            _dom_classes=["dm-more-groups"],
        )
        self.more_groups.on_click(lambda _b: self._more_groups())
        self.output = w.Output(_dom_classes=["dm-output"])
        self._group_views: list[_Group] = []
        self.widget = w.VBox(
            [
                self.css,
                self.head,
                self.status,
                self.hint,
                self.actions.box,
                self.running.box,
                self.groups,
                self.more_groups,
                self.output,
            ],
            _dom_classes=["dm-panel", "dask-magic-panel"],
        )

    # -- the observer protocol ---------------------------------------------------------------------
    def update(self, snapshot: RunSnapshot) -> None:
        """Show a live snapshot (the engine calls this at most ~10 times a second)."""
        self._render(snapshot)
        if not self._shown:
            self._shown = True
            self._publish(self._bundle(snapshot), False)

    def finish(self, snapshot: RunSnapshot) -> None:
        """Show the final state of a pass and replace the text fallbacks with the summary."""
        self._render(snapshot)
        self._publish(self._bundle(snapshot), self._shown)
        self._shown = True

    # -- rendering ------------------------------------------------------------------------------
    def _render(self, snapshot: RunSnapshot) -> None:
        self.snapshot = snapshot
        live = snapshot.status in _LIVE
        self.head.value = html.head_html(snapshot, self._environ)
        self.status.value = html.status_html(snapshot)
        acting = live and self._live_mode()  # clicks reach the kernel during the run
        self.hint.value = hint_html(snapshot, live, acting)
        self.actions.mark_run(snapshot.run_id)
        self.actions.show(
            snapshot.counts, live, acting, self._on_cancel is not None, self._on_retry is not None
        )
        self.running.show(snapshot.run_id, snapshot.running_items if live else (), acting)
        self._layouts["rerun"].display = "none" if live or self._on_rerun is None else ""
        self._render_failures(snapshot.failures)

    def _render_failures(self, failures: tuple[Failure, ...], force: bool = False) -> None:
        # Run caches one Failure object per outcome, so identities tell whether anything changed.
        key = tuple(id(f) for f in failures)
        if key == self._failures_key and not force:
            return
        self._failures_key = key
        self._failures_ref = failures  # keeps the ids in the key from being reused
        groups = group_failures(failures)
        shown = groups[: self._groups_cap]
        while len(self._group_views) < len(shown):
            self._group_views.append(_Group(self._layouts, self._rerun, self._more_rows))
        for view, (label, group) in zip(self._group_views, shown, strict=False):
            view.show(label, group, self._caps.get(label, ROWS_PER_GROUP))
        self.groups.children = tuple(v.box for v in self._group_views[: len(shown)])
        rest = groups[self._groups_cap :]
        count = sum(len(g) for _, g in rest)
        self.more_groups.description = (
            f"Show more groups ({len(rest)} more, {count:,} items)" if rest else ""
        )
        self.more_groups.layout.display = "" if rest else "none"

    def _more_rows(self, label: str) -> None:
        self._caps[label] = self._caps.get(label, ROWS_PER_GROUP) + MORE_ROWS
        if self.snapshot is not None:
            self._render_failures(self.snapshot.failures, force=True)

    def _more_groups(self) -> None:
        self._groups_cap += GROUPS_SHOWN
        if self.snapshot is not None:
            self._render_failures(self.snapshot.failures, force=True)

    # -- buttons ---------------------------------------------------------------------------------
    def _cancel(self) -> None:
        """The cancel button, when its click reached the kernel as a widget message."""
        if self._on_cancel is not None:
            with self._button_output():
                self._on_cancel()

    def _retry(self) -> None:
        """The retry button: retry the failed items, saying so in the output area."""
        callback = self._on_retry
        if callback is None:
            return
        with self._button_output():
            print("dask-magic: retrying the failed items ...")
            callback()
            c = self.snapshot.counts if self.snapshot else None
            if c is not None:
                stopped = f", {c.timeout} timed out" if c.timeout else ""
                print(
                    f"dask-magic: retry ended: {c.done} done, {c.failed} failed{stopped} "
                    f"of {c.total}"
                )

    def _rerun(self, index: int) -> None:
        """A row's "Re-run here" button: run that item in the kernel, where %debug can reach it."""
        callback = self._on_rerun
        if callback is None:
            return
        with self._button_output():
            print(
                f"dask-magic: running item {index} ({self._item_repr(index)}) here in the kernel; "
                "if it fails, run %debug in a new cell to open the debugger at your line"
            )
            callback(index)
            print(f"dask-magic: item {index} succeeded and its result landed in the notebook")

    @contextlib.contextmanager
    def _button_output(self) -> Iterator[None]:
        """A button's prints, and the traceback if its callback raises, in the output area."""
        self.output.clear_output()
        with self.output:
            try:
                yield
            except Exception as exc:  # shown to the user; the widget's event loop must go on
                _show_error(exc)

    def _item_repr(self, index: int | None) -> str:
        failures = self.snapshot.failures if self.snapshot else ()
        return next((f.item_repr for f in failures if f.index == index), "?")

    # -- display ---------------------------------------------------------------------------------
    def _bundle(self, snapshot: RunSnapshot) -> dict[str, Any]:
        live = snapshot.status in _LIVE
        return {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2,
                "version_minor": 0,
                "model_id": self.widget.model_id,
            },
            "text/plain": text.progress_line(snapshot) if live else text.summary_text(snapshot),
            "text/html": html.summary_html(snapshot, self._environ),
        }

    def _repr_mimebundle_(self, **_kwargs: Any) -> dict[str, Any]:
        if self.snapshot is None:
            return self.widget._repr_mimebundle_()
        return self._bundle(self.snapshot)

    def close(self) -> None:
        """Close every widget of the panel, pooled rows included (their views go away)."""
        for group in self._group_views:
            for row in group._pool:
                for widget in (row.html, row.button, row.box):
                    widget.close()
            for widget in (group.header, group.rows, group.more, group.box):
                widget.close()
        self.actions.close()
        self.running.close()
        for child in self.widget.children:
            child.close()
        self.widget.close()
