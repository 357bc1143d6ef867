"""The panel's "Running" list: the items running now, longest first, each with Cancel item.

A few rows at most (`RunSnapshot.running_items`, chosen by the engine), drawn as one HTML
widget, so a run costs the same few widgets however many items it runs. In live mode each row
has a plain ``<button>`` with the classes the JupyterLab extension's click handler reads
(``dm-action``, ``dm-action-cancel_item``, ``dm-run-<id>``, ``dm-item-<index>``): it sends the
click on its control comm, which the kernel reads on a subshell while the cell runs. Elsewhere
a click could only reach the kernel after the cell, when the item has long ended, so the list
is shown without buttons.
"""

from __future__ import annotations

import ipywidgets as w

from dask_magic.engine.results import RunningItem
from dask_magic.ui import html
from dask_magic.ui.text import format_duration

__all__ = ["RunningList", "cancel_item_classes", "running_html"]

_TOOLTIP = "End this item now as cancelled; the rest of the run goes on"


def cancel_item_classes(run_id: str, index: int) -> list[str]:
    """The DOM classes of one item's Cancel item button (read by the extension)."""
    return [
        "dm-cancel-item",
        "dm-action",
        "dm-action-cancel_item",
        f"dm-run-{run_id}",
        f"dm-item-{index}",
    ]


def _row_html(run_id: str, item: RunningItem, buttons: bool) -> str:
    button = ""
    if buttons:
        classes = " ".join(
            ["jupyter-button", "widget-button", *cancel_item_classes(run_id, item.index)]
        )
        button = (
            f'<button type="button" class="{html.esc(classes)}" title="{_TOOLTIP}">'
            "Cancel item</button> "
        )
    seconds = format_duration(int(item.elapsed))  # whole seconds: one change a second
    return (
        f'<div class="dm-running-item" data-index="{item.index}">{button}'
        f'<span class="dm-value">{html.esc(item.item_repr)}</span> '
        f'<span class="dm-muted">item {item.index} \u00b7 '
        f"{html.esc(seconds)}</span></div>"
    )


def running_html(run_id: str, items: tuple[RunningItem, ...], buttons: bool) -> str:
    """The list as HTML (every loop value escaped); "" when nothing runs."""
    if not items:
        return ""
    rows = "".join(_row_html(run_id, item, buttons) for item in items)
    head = '<div class="dm-label">Running now, longest first</div>'
    return f'<div class="dm-running">{head}{rows}</div>'


class RunningList:
    """One HTML widget; traitlets send it only when the text changed."""

    def __init__(self) -> None:
        self.box = w.HTML(_dom_classes=["dm-running-w"])

    def show(self, run_id: str, items: tuple[RunningItem, ...], buttons: bool) -> None:
        """``buttons``: clicks reach the kernel while the run runs (live mode)."""
        self.box.value = running_html(run_id, items, buttons)

    def close(self) -> None:
        self.box.close()
