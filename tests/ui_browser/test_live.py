"""Buttons that act while the cell runs: the panel's Cancel run and Retry failed, in a real
JupyterLab 4.6 (and Notebook 7) with ipykernel 7, whose comms travel on kernel subshells."""

from __future__ import annotations

import json
import re
import time

from helpers import import_tool

from .pages import TIMEOUT, open_notebook, run_cell, shot, wait_idle, write_notebook

expect = import_tool("playwright.sync_api").expect

SETUP = """\
import json, os, time
flag = {flag!r}
out, out2 = [], []
print("loaded")
"""

LONG = """\
%%parallel_for --name long --fresh
for i in range(200):
    time.sleep(0.25)
    out.append(i)
"""

AFTER = """\
%%parallel_for --name after --fresh
for i in range(4):
    time.sleep(0.01)
"""

REPORT_CANCEL = """\
done = sorted(i for i, o in long.outcomes.items() if o.status == "done")
print(json.dumps({"status": str(long.status), "done": len(done), "in_order": out == done,
                  "same_cluster": long.cluster.scheduler == after.cluster.scheduler,
                  "after": after.counts.done}))
"""

FAILING = """\
%%parallel_for --name flaky --fresh
for i in range(60):
    time.sleep(0.25)
    if i in (2, 5) and not os.path.exists(os.path.join(flag, "ok")):
        raise ValueError(f"item {i} before the fix")
    out2.append(i)
"""

REPORT_RETRY = """\
print(json.dumps({"status": str(flaky.status), "failed": flaky.counts.failed,
                  "done": flaky.counts.done, "in_order": out2 == list(range(60))}))
"""

CELLS = (SETUP, LONG, AFTER, REPORT_CANCEL, FAILING, REPORT_RETRY)


def _printed(cell) -> dict:
    text = cell.locator(".jp-OutputArea-output").last.inner_text()
    return json.loads(text.strip().splitlines()[-1])


def _panel(nb, index: int):
    return nb.locator(".jp-Cell").nth(index).locator(".dm-panel").first


def _done(panel) -> int:
    return int(panel.locator(".dm-status").get_attribute("data-done") or 0)


def _wait_for(page, predicate, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT / 1000
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(50)


def live_cancel(page, nb, artifacts, prefix: str) -> float:
    """Run the 200-item loop, click Cancel at about a third; seconds from click to the end."""
    run_cell(page, nb, 2)
    panel = _panel(nb, 2)
    expect(panel.locator(".dm-hint")).to_contain_text("the buttons act now", timeout=TIMEOUT)
    expect(panel.locator(".dm-cancel")).to_be_visible()
    _wait_for(page, lambda: _done(panel) >= 66, "a third of the items")
    shot(page, artifacts, f"{prefix}-live-running")
    clicked = time.monotonic()
    panel.locator(".dm-cancel").click()
    expect(panel.locator(".dm-head")).to_contain_text("interrupted", timeout=TIMEOUT)
    seconds = time.monotonic() - clicked
    wait_idle(page)
    shot(page, artifacts, f"{prefix}-live-cancelled")
    for index in (3, 4):
        run_cell(page, nb, index)
        wait_idle(page)
    report = _printed(nb.locator(".jp-Cell").nth(4))
    assert report["status"] == "interrupted", report
    assert 66 <= report["done"] < 200 and report["in_order"], report
    assert report["same_cluster"] and report["after"] == 4, report
    return seconds


def live_retry(page, nb, artifacts, flag, prefix: str) -> None:
    """Two items fail; fixed from outside meanwhile, Retry failed re-runs them during the run."""
    run_cell(page, nb, 5)
    panel = _panel(nb, 5)
    retry = panel.locator(".dm-retry")
    expect(retry).to_be_visible(timeout=TIMEOUT)  # 2 failed, while the run goes on
    expect(panel.locator(".dm-status")).to_have_attribute("data-failed", "2", timeout=TIMEOUT)
    assert _done(panel) < 50, "the run ended before the retry could be clicked"
    (flag / "ok").touch()  # the fix: the user's file appears
    shot(page, artifacts, f"{prefix}-live-failures")
    retry.click()
    expect(panel.locator(".dm-head")).to_contain_text("finished", timeout=TIMEOUT)
    wait_idle(page)
    shot(page, artifacts, f"{prefix}-live-retried")
    run_cell(page, nb, 6)
    wait_idle(page)
    report = _printed(nb.locator(".jp-Cell").nth(6))
    assert report == {"status": "finished", "failed": 0, "done": 60, "in_order": True}, report


def test_cancel_and_retry_during_a_run_in_jupyterlab(lab, lab_kernels, page, artifacts, tmp_path):
    cells = (SETUP.format(flag=str(tmp_path)), *CELLS[1:])
    nb = open_notebook(page, lab, write_notebook(lab.root, "live.ipynb", *cells))
    for index in (0, 1):  # %load_ext dask_magic, then the set-up
        run_cell(page, nb, index)
        wait_idle(page)
    seconds = live_cancel(page, nb, artifacts, "20-lab")
    print(f"JupyterLab: click to interrupted {seconds:.2f} s")
    live_retry(page, nb, artifacts, tmp_path, "21-lab")


def _run_nb7(page, cells, index: int, wait: bool = True, timeout: int = TIMEOUT) -> None:
    """Run a cell of Notebook 7; with ``wait``, until its prompt shows its number."""
    cell = cells.nth(index)
    cell.locator(".jp-InputPrompt").click()
    expect(cell).to_have_class(re.compile("jp-mod-active"))
    page.keyboard.press("Shift+Enter")
    if wait:
        expect(cell.locator(".jp-InputPrompt")).to_contain_text(
            re.compile(r"\[\d+\]"), timeout=timeout
        )


def test_cancel_during_a_run_in_notebook7(notebook7, page, artifacts, tmp_path):
    cells_src = (SETUP.format(flag=str(tmp_path)), LONG, AFTER, REPORT_CANCEL)
    write_notebook(notebook7.root, "live7.ipynb", *cells_src)
    page.goto(notebook7.notebook7_url("notebooks/live7.ipynb"))
    cells = page.locator(".jp-Cell")
    cells.first.wait_for(timeout=TIMEOUT)
    expect(page.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=TIMEOUT
    )
    for attempt in range(3):  # the first Shift+Enter can land before the kernel is ready
        try:
            _run_nb7(page, cells, 0, timeout=30_000)  # %load_ext: running it twice is harmless
            break
        except AssertionError:
            if attempt == 2:
                raise
    _run_nb7(page, cells, 1)
    expect(cells.nth(1)).to_contain_text("loaded", timeout=TIMEOUT)
    _run_nb7(page, cells, 2, wait=False)
    panel = cells.nth(2).locator(".dm-panel").first
    try:
        panel.wait_for(timeout=TIMEOUT)
    finally:
        shot(page, artifacts, "22-notebook7-live-started")
    expect(panel.locator(".dm-hint")).to_contain_text("the buttons act now", timeout=TIMEOUT)
    _wait_for(page, lambda: _done(panel) >= 66, "a third of the items")
    clicked = time.monotonic()
    panel.locator(".dm-cancel").click()
    expect(panel.locator(".dm-head")).to_contain_text("interrupted", timeout=TIMEOUT)
    print(f"Notebook 7: click to interrupted {time.monotonic() - clicked:.2f} s")
    shot(page, artifacts, "22-notebook7-live-cancelled")
    _run_nb7(page, cells, 3)
    _run_nb7(page, cells, 4)
    expect(cells.nth(4)).to_contain_text('"same_cluster": true', timeout=TIMEOUT)
    report = _printed(cells.nth(4))
    assert report["status"] == "interrupted" and 66 <= report["done"] < 200, report
    assert report["in_order"] and report["after"] == 4, report
