"""The panel's "Running" list with its Cancel item buttons, and the labels after a cancel.

Headless, as tests/ui/test_panel.py: widget state, not a browser (the browser side is in
tests/ui_browser/test_live.py).
"""

from __future__ import annotations

import re

from test_panel import EVIL, _panel, _snapshot

from dask_magic.engine.results import Counts, RunningItem, RunStatus
from dask_magic.engine.run import Run
from dask_magic.ui import html, text
from dask_magic.ui.actions import retry_label
from dask_magic.ui.running import cancel_item_classes

RUNNING = (RunningItem(7, "'slow.csv'", 12.5), RunningItem(2, "'b.csv'", 0.4))


def _running(**extra: object):
    return _snapshot(
        Counts(10, done=4, running=2), RunStatus.RUNNING, running_items=RUNNING, **extra
    )


def _buttons(value: str) -> list[set[str]]:
    """The class sets of the ``<button>`` elements in ``value``."""
    return [set(m.split()) for m in re.findall(r'<button type="button" class="([^"]*)"', value)]


def test_live_mode_lists_the_running_items_each_with_cancel_item():
    panel, _ = _panel(on_cancel=lambda: None, live_mode=lambda: True)
    panel.update(_running())
    value = panel.running.box.value
    assert value.index("slow.csv") < value.index("b.csv")  # longest first, as the engine gives
    assert "item 7 \u00b7 12s" in value and value.count(">Cancel item</button>") == 2
    assert _buttons(value) == [
        {"jupyter-button", "widget-button", *cancel_item_classes("r1", 7)},
        {"jupyter-button", "widget-button", *cancel_item_classes("r1", 2)},
    ]
    assert {"dm-action", "dm-action-cancel_item", "dm-run-r1", "dm-item-7"} <= _buttons(value)[0]
    counts = Counts(10, done=5, running=1)
    panel.update(_snapshot(counts, RunStatus.RUNNING, running_items=RUNNING[1:]))
    assert [b & {"dm-item-2", "dm-item-7"} for b in _buttons(panel.running.box.value)] == [
        {"dm-item-2"}
    ]


def test_without_live_mode_the_list_has_no_buttons_and_it_goes_at_the_end():
    panel, _ = _panel(on_cancel=lambda: None, live_mode=lambda: False)
    panel.update(_running())
    assert "slow.csv" in panel.running.box.value and "<button" not in panel.running.box.value
    counts = Counts(10, done=9, cancelled=1)
    panel.finish(_snapshot(counts, RunStatus.FAILED, running_items=RUNNING))
    assert panel.running.box.value == ""


def test_running_values_are_escaped():
    panel, _ = _panel(live_mode=lambda: True)
    items = tuple(RunningItem(i, evil, 1.0) for i, evil in enumerate(EVIL))
    panel.update(_snapshot(Counts(10, running=3), RunStatus.RUNNING, running_items=items))
    for evil in EVIL:
        assert evil not in panel.running.box.value and html.esc(evil) in panel.running.box.value


def test_after_a_cancel_item_the_labels_say_what_the_buttons_do():
    message = "1 item was cancelled during the run: the notebook holds ..."
    panel, published = _panel()
    counts = Counts(10, done=9, cancelled=1)
    panel.finish(_snapshot(counts, RunStatus.FAILED, message=message))
    assert panel.retry_button.description == "Run the rest (1)"
    assert "Run the rest" in panel.hint.value and "Fix the cause" not in panel.hint.value
    assert "finished, 1 cancelled" in panel.head.value and "failures" not in panel.head.value
    assert "dm-badge-interrupted" in panel.head.value and "dm-badge-failed" not in panel.head.value
    final = published[-1][0]
    assert final["text/plain"].startswith("parallel_for finished, 1 cancelled")
    assert "finished, 1 cancelled" in final["text/html"] and message in final["text/html"]


def test_retry_label_keeps_retry_failed_for_real_failures():
    assert retry_label(Counts(140, done=8, cancelled=132), live=False) == "Run the rest (132)"
    assert retry_label(Counts(10, done=7, failed=3), live=False) == "Retry failed (3)"
    assert retry_label(Counts(10, done=5, timeout=1, failed=1, cancelled=3), live=False) == (
        "Retry failed (2) and the rest (3)"
    )
    assert retry_label(Counts(10, done=2, failed=1, running=2), live=True) == "Retry failed (1)"
    assert retry_label(Counts(10, done=10), live=False) == "Retry failed"
    failed = _snapshot(Counts(10, done=7, failed=3), RunStatus.FAILED)
    assert text.status_word(failed) == "finished with failures"


def test_a_run_with_a_cancelled_item_says_so_in_its_summary():
    run = Run(list("abc"))
    run.begin([0, 1, 2])
    run.tick(2, [(1, 3.0), (0, 0.5)])
    assert [(r.index, r.item_repr) for r in run.snapshot().running_items] == [
        (1, "'b'"),
        (0, "'a'"),
    ]
    from dask_magic.engine.results import ItemOutcome

    run.add([ItemOutcome(index=1, status="cancelled")])
    assert [r.index for r in run.snapshot().running_items] == [0]  # an ended item is not running
    run.add([ItemOutcome(index=0, status="done"), ItemOutcome(index=2, status="done")])
    run.end("completed")
    snap = run.snapshot()
    assert snap.counts.cancelled == 1 and snap.counts.done == 2 and snap.running_items == ()
    assert "1 item was cancelled during the run" in snap.message
    assert "1 cancelled" in repr(run) and "finished, 1 cancelled" in text.summary_text(snap)
