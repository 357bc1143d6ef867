"""The live panel, headless: widget state, escaping, throttling and the buttons.

Like distributed's ``test_progress_widgets.py``, these assert on widget state, not on a
browser; like ipywidgets' own tests, they count the comm messages that were actually sent
(a recording comm replaces ``comm.create_comm``, undone by ``monkeypatch``).
"""

from __future__ import annotations

import re
import sys
from typing import ClassVar

import comm
import pytest
from comm.base_comm import BaseComm
from conftest import run_ok
from helpers import SAMPLE_CLUSTER, FakeClock

from dask_magic import views
from dask_magic.engine.results import (
    ClusterInfo,
    Counts,
    ErrorInfo,
    Failure,
    ItemOutcome,
    RunSnapshot,
    RunStatus,
)
from dask_magic.engine.run import UPDATE_INTERVAL, Run
from dask_magic.ui import html
from dask_magic.ui.panel import GROUPS_SHOWN, MORE_ROWS, ROWS_PER_GROUP, ProgressPanel
from dask_magic.ui.text import TextProgress

EVIL = ["<img src=x onerror=alert(1)>", "</details><script>alert(2)</script>", '"><b onclick="x">']


class RecordingComm(BaseComm):
    """A comm that keeps every message it would send (open, update, close)."""

    sent: ClassVar[list[tuple[str, dict]]] = []

    def publish_msg(
        self, msg_type: str, data: dict | None = None, metadata=None, buffers=None, **keys
    ) -> None:
        RecordingComm.sent.append((msg_type, data or {}))


@pytest.fixture
def sent(monkeypatch):
    """The messages every widget created during the test sends, in order."""
    RecordingComm.sent = []
    monkeypatch.setattr(comm, "create_comm", lambda **kw: RecordingComm(**kw))
    return RecordingComm.sent


def _failure(
    index: int,
    type_name: str = "FileNotFoundError",
    line: int | None = 3,
    message: str | None = None,
    **extra: object,
) -> Failure:
    message = (
        message
        if message is not None
        else f"[Errno 2] No such file or directory: 'data/{index}.csv'"
    )
    tb = (
        f"Traceback (most recent call last):\n  Cell In[4], line {line}, in <loop body>\n"
        f"    df = read(path)\n    ^^^^^^^^^^^^^^^\n{type_name}: {message}"
    )
    fields = dict(
        index=index,
        item_repr=f"'data/{index}.csv'",
        error=ErrorInfo(type_name, message),
        line=line,
        traceback=tb,
        full_traceback=tb.replace(
            "most recent call last):",
            'most recent call last):\n  File "/x/distributed/worker.py", line 9, in run',
        ),
    )
    fields.update(extra)
    return Failure(**fields)


def _snapshot(
    counts: Counts,
    status: RunStatus = RunStatus.FINISHED,
    failures: tuple[Failure, ...] = (),
    **extra: object,
) -> RunSnapshot:
    fields = dict(
        run_id="r1",
        name=None,
        status=status,
        counts=counts,
        started=0.0,
        elapsed=12.0,
        rate=8.0,
        eta=3.0 if status is RunStatus.RUNNING else None,
        cluster=SAMPLE_CLUSTER,
        failures=failures,
    )
    fields.update(extra)
    return RunSnapshot(**fields)


def _panel(**kwargs: object) -> tuple[ProgressPanel, list]:
    published: list = []
    kwargs.setdefault("on_retry", lambda: None)
    kwargs.setdefault("on_rerun", lambda index: None)
    panel = ProgressPanel(
        publish=lambda bundle, update: published.append((bundle, update)), environ={}, **kwargs
    )
    return panel, published


def _counts_of(status_value: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-(\w+)="(\d+)"', status_value)}


def _all_html(panel: ProgressPanel) -> str:
    values = [panel.head.value, panel.status.value, panel.hint.value]
    for group in panel._group_views:
        values.append(group.header.value)
        values.extend(row.html.value for row in group._pool)
    return "\n".join(values)


# -- widget state after 0, some and all items failing ------------------------------------------
def test_no_failures_is_a_full_bar_and_no_buttons():
    panel, published = _panel()
    panel.update(_snapshot(Counts(10, done=4, running=2), RunStatus.RUNNING))
    assert "interrupt the kernel" in panel.hint.value
    panel.finish(_snapshot(Counts(10, done=10)))
    assert _counts_of(panel.status.value) == {
        "total": 10,
        "done": 10,
        "failed": 0,
        "running": 0,
        "queued": 0,
        "cancelled": 0,
        "timeout": 0,
    }
    assert 'class="dm-bar-done" style="width:100.00%"' in panel.status.value
    assert "dm-bar-failed" not in panel.status.value
    assert panel.groups.children == () and panel.retry_button.layout.display == "none"
    assert "finished" in panel.head.value and "interrupt" not in panel.hint.value
    assert [update for _, update in published] == [False, True]  # shown once, replaced at the end
    final = published[-1][0]
    assert final["text/plain"].startswith("parallel_for finished: 10 items")
    assert "dm-static" in final["text/html"]
    assert final["application/vnd.jupyter.widget-view+json"]["model_id"] == panel.widget.model_id


def test_some_failures_are_grouped_capped_and_retryable():
    failures = (*(_failure(i) for i in range(37)), _failure(50, "KeyError", 5, "'x'"))
    panel, published = _panel()
    running = _snapshot(Counts(100, done=40, failed=38, running=2), RunStatus.RUNNING, failures)
    panel.update(running)
    assert panel._layouts["rerun"].display == "none" and panel.retry_button.layout.display == "none"
    panel.finish(_snapshot(Counts(100, done=62, failed=38), RunStatus.FAILED, failures))
    first, second = panel._group_views[:2]
    assert "37 \u00d7 FileNotFoundError at line 3" in first.header.value
    assert "1 \u00d7 KeyError at line 5" in second.header.value
    assert (
        len(first.rows.children) == ROWS_PER_GROUP
        and html.esc("'data/0.csv'") in first._pool[0].html.value
    )
    assert first.more.layout.display == "" and "32 not shown" in first.more.description
    assert (
        panel.retry_button.layout.display == ""
        and panel.retry_button.description == "Retry failed (38)"
    )
    assert panel._layouts["rerun"].display == ""  # one shared layout shows every "Re-run here"
    first.more.click()
    assert len(first.rows.children) == ROWS_PER_GROUP + MORE_ROWS
    assert 'data-failed="38"' in published[-1][0]["text/html"]
    assert "38 failed" in published[-1][0]["text/plain"]


def test_all_items_failing():
    failures = tuple(_failure(i, line=None) for i in range(3))
    panel, published = _panel()
    panel.finish(_snapshot(Counts(3, failed=3), RunStatus.FAILED, failures))
    assert _counts_of(panel.status.value)["failed"] == 3
    assert 'class="dm-bar-failed" style="width:100.00%"' in panel.status.value
    assert "3 \u00d7 FileNotFoundError <span" in panel._group_views[0].header.value
    assert published == [(published[0][0], False)]  # finish without an update still shows it once


def test_interrupted_run_says_why_and_offers_the_unfinished_items():
    message = "interrupted: 4 finished items kept, 6 cancelled"
    panel, _ = _panel()
    counts = Counts(10, done=3, failed=1, cancelled=6)
    panel.finish(_snapshot(counts, RunStatus.INTERRUPTED, (_failure(2),), message=message))
    assert message in panel.hint.value and "dm-badge-interrupted" in panel.head.value
    assert "dm-bar-cancelled" in panel.status.value and "<b>6</b> cancelled" in panel.status.value
    assert panel.retry_button.description == "Retry failed (1) and the rest (6)"
    assert panel.retry_button.layout.display == ""


def test_many_groups_are_capped_with_show_more_groups():
    failures = tuple(_failure(i, f"Error{i}") for i in range(GROUPS_SHOWN + 3))
    panel, _ = _panel()
    panel.finish(_snapshot(Counts(20, failed=len(failures)), RunStatus.FAILED, failures))
    assert len(panel.groups.children) == GROUPS_SHOWN
    assert "3 more, 3 items" in panel.more_groups.description
    panel.more_groups.click()
    assert (
        len(panel.groups.children) == GROUPS_SHOWN + 3
        and panel.more_groups.layout.display == "none"
    )


def test_failure_details_show_traceback_all_frames_and_output():
    failure = _failure(
        7,
        stdout="reading 7\n",
        stderr="careful\n",
        warnings=("UserWarning: w",),
        worker="tcp://w:1",
    )
    row = html.failure_html(failure)
    assert row.startswith('<details class="dm-item" data-index="7">')
    assert '<mark class="dm-mark">    df = read(path)</mark>' in row  # the failing line is marked
    assert "show all frames" in row and "distributed/worker.py" in row
    assert row.index("distributed/worker.py") > row.index("show all frames")  # hidden until asked
    for text in ("reading 7", "careful", "UserWarning: w", "worker tcp://w:1"):
        assert text in row


def test_dashboard_link_is_proxied_behind_jupyterhub_and_never_unsafe():
    prefix = {"JUPYTERHUB_SERVICE_PREFIX": "/user/ada/"}
    assert (
        html.dashboard_url("http://127.0.0.1:8787/status", prefix) == "/user/ada/proxy/8787/status"
    )
    assert html.dashboard_url("http://127.0.0.1:8787/status", {}) == "http://127.0.0.1:8787/status"
    assert (
        html.dashboard_url("https://dask.example.org/status", prefix)
        == "https://dask.example.org/status"
    )
    assert html.dashboard_url("javascript:alert(1)", {}) is None
    assert html.dashboard_url(None, {}) is None
    assert 'href="/user/ada/proxy/8787/status"' in html.cluster_html(SAMPLE_CLUSTER, prefix)


# -- escaping ----------------------------------------------------------------------------------
@pytest.mark.parametrize("evil", EVIL, ids=["img onerror", "details script", "attribute breakout"])
def test_every_piece_of_user_text_is_escaped(evil):
    failure = _failure(
        1,
        evil,
        2,
        evil,
        item_repr=evil,
        stdout=evil,
        stderr=evil,
        warnings=(evil,),
        worker=evil,
        traceback=f"Traceback:\n  {evil}\n  ^^^\n{evil}",
        full_traceback=evil,
    )
    cluster = ClusterInfo(evil, 1, 1, 0, f"http://127.0.0.1:1/{evil}", local=False)
    snapshot = _snapshot(
        Counts(2, done=1, failed=1),
        RunStatus.FAILED,
        (failure,),
        name=evil,
        cluster=cluster,
        message=evil,
    )
    panel, published = _panel()
    panel.finish(snapshot)
    for page in (_all_html(panel), published[-1][0]["text/html"]):
        assert evil not in page
        assert "<img" not in page and "<script" not in page and "<b onclick" not in page
        assert html.esc(evil) in page
        assert page.count("<details") == page.count("</details>")


# -- throttling and bounded memory -------------------------------------------------------------
def _describe(outcome: ItemOutcome, item: object) -> Failure:
    return _failure(outcome.index, "ValueError", 4 + outcome.index % 3, f"bad {item}")


def _feed(run: Run, total: int, chunk: int, clock: FakeClock, step: float) -> None:
    """Feed ``total`` items in chunks, the clock moving ``step`` seconds per chunk."""
    run.begin(range(total))
    for start in range(0, total, chunk):
        outcomes = [
            ItemOutcome(i, "failed", error=ErrorInfo("ValueError", f"bad {i}"))
            if i % 5 == 0
            else ItemOutcome(i, "done")
            for i in range(start, min(total, start + chunk))
        ]
        run.add(outcomes)
        clock.advance(step)
        run.tick(running=min(chunk, total - start))
    run.end("completed")


def test_a_10000_item_run_sends_a_bounded_number_of_messages(sent):
    clock = FakeClock()
    run = Run(list(range(10_000)), describe=_describe, clock=clock)
    panel, published = _panel()
    run.observers.append(panel)
    calls = {"update": 0}
    original = panel.update

    def counted(snapshot: RunSnapshot) -> None:
        calls["update"] += 1
        original(snapshot)

    panel.update = counted
    _feed(run, 10_000, 20, clock, step=0.3 * UPDATE_INTERVAL)  # 500 chunks
    # The engine calls update at most every UPDATE_INTERVAL: the forced first one, then
    # every fourth chunk (4 x 0.3 is the first multiple past 1).
    assert calls["update"] == 1 + 500 // 4
    opens = [m for m in sent if m[0] == "comm_open"]
    updates = [m for m in sent if m[0] == "comm_msg"]
    # No per-item widgets: 2,000 failures, yet only the rows on screen exist.
    assert len(opens) < 400
    assert sum(len(g._pool) for g in panel._group_views) == 3 * ROWS_PER_GROUP
    # Each update changes a handful of widgets, whatever the number of items.
    assert len(updates) <= (calls["update"] + 1) * 30
    final = _counts_of(panel.status.value)
    assert (final["done"], final["failed"]) == (8000, 2000)  # the final state is always sent
    last_status = [m for m in updates if 'data-done="8000"' in str(m[1])]
    assert last_status, "the final counts never reached the front end"
    assert "2000 failed" in published[-1][0]["text/plain"]


# -- _observers and the buttons, through the magic ---------------------------------------------
SETUP = """
def parse(x):
    if x % 5 == 2:
        raise ValueError(f"bad <img src=x onerror=alert(1)> {x}")
    return x
"""
LOOP = (
    "%%parallel_for --progress {progress}\n"
    "results = []\nfor x in range({n}):\n    results.append(parse(x))\n"
)


def test_observers_follow_the_progress_option(fresh, monkeypatch):
    magics = fresh.magics_manager.registry["DaskMagics"]
    assert views.observers(magics, "none") == []
    assert isinstance(views.observers(magics, "text")[0], TextProgress)
    assert isinstance(views.observers(magics, "auto")[0], TextProgress)  # a terminal shell
    monkeypatch.setattr(fresh, "kernel", object(), raising=False)  # what ipykernel's shell has
    assert isinstance(views.observers(magics, "auto")[0], ProgressPanel)
    assert isinstance(views.observers(magics, "widget")[0], ProgressPanel)


def test_panel_buttons_retry_and_rerun_through_the_magic(fresh):
    run_ok(fresh, SETUP)
    assert run_ok(fresh, LOOP.format(progress="widget", n=20)) is None  # the panel is the display
    run = fresh.magics_manager.registry["DaskMagics"].last_run
    panel = next(o for o in run.observers if isinstance(o, ProgressPanel))
    assert (_counts_of(panel.status.value)["failed"], run.counts.failed) == (4, 4)
    row = panel._group_views[0]._pool[0]
    row.button.click()  # "Re-run here": raises in the kernel, shown by the Output widget
    assert isinstance(sys.last_value, ValueError) and "bad" in str(
        sys.last_value
    )  # what %debug opens
    first_frame = sys.last_traceback.tb_frame.f_code.co_filename
    assert "dask_magic" not in first_frame  # starts at the user's loop body, not at the button
    run_ok(fresh, "def parse(x):\n    return x\n")
    panel.retry_button.click()
    assert run.counts.failed == 0 and fresh.user_ns["results"] == list(range(20))
    assert _counts_of(panel.status.value)["failed"] == 0 and panel.groups.children == ()
    assert panel.retry_button.layout.display == "none"


def test_a_real_10000_item_run_with_2000_failures(fresh, sent, monkeypatch):
    run_ok(fresh, SETUP)
    calls = {"update": 0}
    original = ProgressPanel.update

    def counted(self: ProgressPanel, snapshot: RunSnapshot) -> None:
        calls["update"] += 1
        original(self, snapshot)

    monkeypatch.setattr(ProgressPanel, "update", counted)
    run_ok(fresh, LOOP.format(progress="widget", n=10_000))
    run = fresh.magics_manager.registry["DaskMagics"].last_run
    assert run.counts.failed == 2000 and run.counts.done == 8000
    panel = next(o for o in run.observers if isinstance(o, ProgressPanel))
    assert _counts_of(panel.status.value)["failed"] == 2000
    assert "2,000 \u00d7 ValueError at line 4" in panel._group_views[0].header.value
    updates = [m for m in sent if m[0] == "comm_msg"]
    opens = [m for m in sent if m[0] == "comm_open"]
    assert len(opens) < 100  # one group, five rows: no per-item widgets
    # a bounded number of widget changes per update (the throttle is tested above)
    assert len(updates) <= (calls["update"] + 3) * 12


# -- live mode: buttons that act while the run runs ---------------------------------------------
def test_live_mode_shows_cancel_and_retry_during_the_run_with_run_classes():
    panel, _ = _panel(on_cancel=lambda: None, live_mode=lambda: True)
    panel.update(_snapshot(Counts(10, done=4, failed=1, running=2), RunStatus.RUNNING))
    assert "the buttons act now" in panel.hint.value and "interrupt" not in panel.hint.value
    assert panel.cancel_button.layout.display == ""
    assert panel.retry_button.layout.display == "" and "(1)" in panel.retry_button.description
    for button, action in ((panel.cancel_button, "cancel"), (panel.retry_button, "retry")):
        assert {"dm-action", f"dm-action-{action}", "dm-run-r1"} <= set(button._dom_classes)
    panel.finish(_snapshot(Counts(10, done=9, failed=1)))
    assert panel.cancel_button.layout.display == "none"
    assert "the buttons act now" not in panel.hint.value


def test_without_live_mode_the_running_text_and_buttons_are_as_before():
    panel, _ = _panel(on_cancel=lambda: None, live_mode=lambda: False)
    panel.update(_snapshot(Counts(10, done=4, failed=1, running=2), RunStatus.RUNNING))
    assert panel.hint.value == (
        '<div class="dm-hint">Running: interrupt the kernel (\u25a0 in the toolbar, or I, I) '
        "to cancel; finished items are kept. Buttons work once the run has ended.</div>"
    )
    assert panel.cancel_button.layout.display == "none"
    assert panel.retry_button.layout.display == "none"
