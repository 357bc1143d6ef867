"""The panel's run-wide buttons, Cancel run and Retry failed, and what marks them for the
JupyterLab extension.

Each button carries DOM classes naming its action and its run (``dm-action``,
``dm-action-cancel`` / ``dm-action-retry``, ``dm-run-<id>``). In live mode the extension's
click handler reads them and sends the action on its own comm, which the kernel reads on a
subshell while the cell runs; the widget's own click message would wait for the cell.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as w

from dask_magic.engine.results import Counts


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
            self.retry.description = f"Retry failed ({left:,})" if left else "Retry failed"
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
