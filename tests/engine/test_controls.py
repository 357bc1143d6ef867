"""Live actions posted from another thread while a ``%%parallel_for`` cell runs.

A real IPython shell and the real LocalCluster; the actions are posted from a second thread,
as a kernel subshell does, into the one queue the run's loop takes them from.
"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import run_ok

from dask_magic.engine import controls


def _post_when(ip, kind: str, ready, index: int | None = None) -> threading.Thread:
    """A thread that posts ``kind`` for the live run once ``ready(run)`` holds."""

    def post() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            run = _live_run(ip)
            if run is not None and ready(run):
                if controls.default.post(controls.Control(kind, run.run_id, index)):
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def _live_run(ip):
    return getattr(ip.magics_manager.registry["DaskMagics"], "_live", None)


@pytest.fixture
def live_runs(monkeypatch, ip):
    """Record each run as it begins, so the posting thread can find its id."""
    from dask_magic.engine import run as run_module

    magics = ip.magics_manager.registry["DaskMagics"]
    begin = run_module.Run.begin

    def recording_begin(self, indices):
        magics._live = self
        begin(self, indices)

    monkeypatch.setattr(run_module.Run, "begin", recording_begin)
    yield magics
    magics._live = None


def test_cancel_during_a_run_ends_it_interrupted_and_keeps_finished_items(fresh, live_runs):
    thread = _post_when(fresh, controls.CANCEL, lambda run: run.counts.done >= 20)
    run_ok(fresh, "out = []")
    result = fresh.run_cell(
        "%%parallel_for --name r --fresh\n"
        "for i in range(200):\n"
        "    import time; time.sleep(0.05)\n"
        "    out.append(i)\n",
    )
    thread.join(5)
    assert "interrupted" in str(result.error_in_exec)  # the cell stops as after Ctrl-C
    run = fresh.user_ns["r"]
    assert str(run.status) == "interrupted"
    assert 20 <= run.counts.done < 200
    assert run.counts.cancelled == 200 - run.counts.done - run.counts.failed
    done = sorted(i for i, o in run.outcomes.items() if o.status == "done")
    assert fresh.user_ns["out"] == done  # what finished landed, in order
    # the next cell runs on the same cluster
    run_ok(fresh, "%%parallel_for --name r2 --fresh\nfor i in range(4):\n    out.append(-i)\n")
    assert fresh.user_ns["r2"].counts.done == 4


def test_retry_during_a_run_reruns_failed_items_and_lands_them_in_order(fresh, live_runs):
    run_ok(fresh, "import os, tempfile\nflag = tempfile.mkdtemp()\nout = []")
    flag = fresh.user_ns["flag"]
    # items 3 and 7 fail until the flag file exists; the retry is posted after it is made
    thread = _post_when(fresh, controls.RETRY, lambda run: run.counts.failed >= 2 and _touch(flag))
    run_ok(
        fresh,
        "%%parallel_for --name r --fresh\n"
        "for i in range(60):\n"
        "    import os, time; time.sleep(0.1)\n"
        "    if i in (3, 7) and not os.path.exists(os.path.join(flag, 'ok')):\n"
        "        raise ValueError(i)\n"
        "    out.append(i)\n",
    )
    thread.join(5)
    run = fresh.user_ns["r"]
    assert run.counts.failed == 0, run
    assert run.counts.done == 60
    assert fresh.user_ns["out"] == list(range(60))


def test_cancel_item_ends_one_queued_item_and_the_rest_runs(fresh, live_runs):
    thread = _post_when(fresh, controls.CANCEL_ITEM, lambda run: run.counts.done >= 5, index=70)
    run_ok(fresh, "out = []")
    run_ok(
        fresh,
        "%%parallel_for --name r --fresh\n"
        "for i in range(80):\n"
        "    import time; time.sleep(0.05)\n"
        "    out.append(i)\n",
    )
    thread.join(5)
    run = fresh.user_ns["r"]
    assert run.outcomes[70].status == "cancelled"
    assert run.counts.done == 79 and run.counts.cancelled == 1
    assert fresh.user_ns["out"] == [i for i in range(80) if i != 70]


def _touch(folder: str) -> bool:
    import os

    open(os.path.join(folder, "ok"), "w").close()
    return True


def test_an_action_for_a_run_that_is_not_live_is_refused():
    queue = controls.ControlQueue()
    assert not queue.post(controls.Control(controls.CANCEL, "nope"))
    queue.open("a")
    assert queue.post(controls.Control(controls.CANCEL, "a"))
    queue.post(controls.Control(controls.RETRY, "a"))
    assert [c.kind for c in queue.take("a")] == [controls.CANCEL, controls.RETRY]
    queue.close("a")
    assert not queue.is_live("a")
    with pytest.raises(ValueError):
        queue.post(controls.Control("explode", "a"))
