"""The panel's run-wide buttons, Cancel run and Retry failed, what marks them for the
JupyterLab extension, their labels and the hint that says what they do now.

Each button carries DOM classes naming its action and its run (``dm-action``,
``dm-action-cancel`` / ``dm-action-retry``, ``dm-run-<id>``). In live mode the extension's
click handler reads them and sends the action on its own comm, which the kernel reads on a
subshell while the cell runs; the widget's own click message would wait for the cell.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as w

from dask_magic.engine.results import Counts, RunSnapshot
from dask_magic.ui import html

_RUNNING_HINT = (
    "Running: interrupt the kernel (\u25a0 in the toolbar, or I, I) to cancel; "
    "finished items are kept. Buttons work once the run has ended."
)
_LIVE_HINT = (
    "Running: the buttons act now. Cancel run ends the run (finished items are kept); "
    "Cancel item ends one running item; Retry failed runs the failed items again while "
    "the rest runs."
)


def retry_label(counts: Counts, live: bool) -> str:
    """What the retry button does, with counts: failed items apart from cancelled/unfinished.

    During a live run it retries the failed items only; after the run it runs every item
    that did not end done (`Run.retry`), which after a cancel may be no failure at all.
    """
    failures = counts.failed if live else counts.failed + counts.timeout
    rest = 0 if live else counts.total - counts.done - failures
    if failures and rest:
        return f"Retry failed ({failures:,}) and the rest ({rest:,})"
    if rest:
        return f"Run the rest ({rest:,})"
    return f"Retry failed ({failures:,})" if failures else "Retry failed"


def hint_html(snapshot: RunSnapshot, live: bool, acting: bool) -> str:
    """The line under the buttons: how to act during a run, what to do after it."""
    if live:
        if acting:
            return f'<div class="dm-hint dm-mode-live">{html.esc(_LIVE_HINT)}</div>'
        return f'<div class="dm-hint">{html.esc(_RUNNING_HINT)}</div>'
    parts = []
    if snapshot.message:
        parts.append(f'<div class="dm-message">{html.esc(snapshot.message)}</div>')
    c = snapshot.counts
    if c.total - c.done and not (c.failed or c.timeout):
        parts.append(
            '<div class="dm-hint">Click <b>Run the rest</b> (or run '
            "<code>%parallel_retry</code>) to run the cancelled and unfinished items.</div>"
        )
    elif c.total - c.done:
        parts.append(
            '<div class="dm-hint">Fix the cause, then click <b>Retry failed</b> (or run '
            "<code>%parallel_retry</code>). <b>Re-run here</b> runs one item in this kernel "
            "so that <code>%debug</code> opens at your line.</div>"
        )
    return "".join(parts)


def _button(description: str, icon: str, style: str, action: str, tooltip: str) -> w.Button:
    return w.Button(
        description=description,
        icon=icon,
        button_style=style,
        layout=w.Layout(display="none", width="auto", align_self="flex-start"),
        _dom_classes=[f"dm-{action}", "dm-action", f"dm-action-{action}"],
        tooltip=tooltip,
    )


class ActionButtons:
    """Cancel run (only while a live-mode run runs) and Retry failed."""

    def __init__(self, on_cancel: Callable[[], None], on_retry: Callable[[], None]) -> None:
        self.cancel = _button(
            "Cancel run", "stop", "danger", "cancel", "Stop the run now; finished items are kept"
        )
        self.retry = _button(
            "Retry failed",
            "redo",
            "warning",
            "retry",
            "Run the failed and unfinished items again (same as %parallel_retry)",
        )
        self.cancel.on_click(lambda _b: on_cancel())
        self.retry.on_click(lambda _b: on_retry())
        self.box = w.HBox([self.cancel, self.retry])
        self._run_class = ""

    def show(
        self, counts: Counts, live: bool, acting: bool, can_cancel: bool, can_retry: bool
    ) -> None:
        """``live``: the run runs; ``acting``: clicks reach the kernel while it does."""
        left = counts.failed if live else counts.total - counts.done
        with self.retry.hold_sync():
            self.retry.description = retry_label(counts, live)
            hidden = (live and not acting) or not left or not can_retry
            self.retry.layout.display = "none" if hidden else ""
        self.cancel.layout.display = "" if live and acting and can_cancel else "none"

    def mark_run(self, run_id: str) -> None:
        name = f"dm-run-{run_id}"
        if name == self._run_class:
            return
        for button in (self.cancel, self.retry):
            if self._run_class:
                button.remove_class(self._run_class)
            button.add_class(name)
        self._run_class = name

    def close(self) -> None:
        for widget in (self.cancel, self.retry, self.box):
            widget.close()
