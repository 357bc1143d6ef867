"""Cancel item during a run, in the panel and in the sidebar, and the sidebar's Cancel and
Retry failed during a run: a real JupyterLab 4.6 with ipykernel 7 (live mode: the actions
travel on a kernel subshell and act while the cell runs). Screenshots go to
test-artifacts/ui/."""

from __future__ import annotations

import time

from helpers import import_tool

from .pages import TIMEOUT, open_notebook, run_cell, shot, wait_idle, write_notebook
from .test_live import FAILING, REPORT_RETRY, _done, _panel, _printed, _wait_for

expect = import_tool("playwright.sync_api").expect

SIDEBAR = "#dask-magic-sidebar"

SETUP = """\
import json, os, time
flag = {flag!r}
out, out2, out3, out4 = [], [], [], []
print("loaded")
"""

# item 5 would run for ten minutes: only Cancel item ends it
ONE_SLOW = """\
%%parallel_for --name slow --fresh
for i in range(12):
    time.sleep(600 if i == 5 else 0.5)
    out.append(i)
"""

REPORT_SLOW = """\
print(json.dumps({"status": str(slow.status), "done": slow.counts.done,
                  "cancelled": slow.counts.cancelled, "failed": slow.counts.failed,
                  "in_order": out == [i for i in range(12) if i != 5], "message": slow.message,
                  "workers": slow.cluster.workers}))
"""

ONE_SLOW_SIDEBAR = ONE_SLOW.replace("slow", "slow2").replace("out.", "out3.")
REPORT_SLOW_SIDEBAR = REPORT_SLOW.replace("slow", "slow2").replace("out ==", "out3 ==")

LONG = """\
%%parallel_for --name long --fresh
for i in range(200):
    time.sleep(0.25)
    out4.append(i)
"""

REPORT_LONG = """\
done = sorted(i for i, o in long.outcomes.items() if o.status == "done")
print(json.dumps({"status": str(long.status), "done": len(done), "in_order": out4 == done}))
"""

CELLS = (
    SETUP,  # 1
    ONE_SLOW,  # 2
    REPORT_SLOW,  # 3
    ONE_SLOW_SIDEBAR,  # 4
    REPORT_SLOW_SIDEBAR,  # 5
    FAILING,  # 6
    REPORT_RETRY,  # 7
    LONG,  # 8
    REPORT_LONG,  # 9
)


def _report(page, nb, index: int) -> dict:
    run_cell(page, nb, index)
    cell = nb.locator(".jp-Cell").nth(index)
    expect(cell.locator(".jp-OutputArea-output").last).to_contain_text("{", timeout=TIMEOUT)
    wait_idle(page)
    return _printed(cell)


def _status_bar(page) -> str:
    return page.locator(".jp-StatusBar-Widget").first.inner_text()


def panel_cancel_item(page, nb, artifacts) -> tuple[float, str]:
    """Cancel item 5 from the panel's Running list; seconds from click to cancelled."""
    run_cell(page, nb, 2)
    panel = _panel(nb, 2)
    button = panel.locator(".dm-cancel-item.dm-item-5")
    expect(button).to_be_visible(timeout=TIMEOUT)
    expect(panel.locator(".dm-running-item[data-index='5']")).to_contain_text("item 5")
    _wait_for(page, lambda: _done(panel) >= 6, "the other items to run past item 5")
    # a request ended on a subshell meanwhile (JupyterLab made one for a comm): the status
    # bar still says the kernel is busy, as it is
    status_bar = page.locator(".jp-StatusBar-Widget").first
    expect(status_bar).to_contain_text("| Busy", timeout=3_000)
    status_during = _status_bar(page)
    shot(page, artifacts, "30-lab-running-list")
    clicked = time.monotonic()
    button.click()
    expect(panel.locator(".dm-status")).to_have_attribute("data-cancelled", "1", timeout=TIMEOUT)
    seconds = time.monotonic() - clicked
    expect(panel.locator(".dm-head")).to_contain_text("finished, 1 cancelled", timeout=TIMEOUT)
    expect(panel.locator(".dm-retry")).to_have_text("Run the rest (1)")
    expect(panel.locator(".dm-running-item")).to_have_count(0)
    wait_idle(page)
    shot(page, artifacts, "31-lab-item-cancelled")
    report = _report(page, nb, 3)
    assert report["status"] == "failed" and report["in_order"], report
    assert (report["done"], report["cancelled"], report["failed"]) == (11, 1, 0), report
    assert "1 item was cancelled during the run" in report["message"], report
    return seconds, status_during, report["workers"]


def _sidebar_run(page, name: str):
    run = page.locator(f"{SIDEBAR} .jp-DaskMagic-run[data-run-id]").first
    expect(run.locator(".jp-DaskMagic-runTitle")).to_have_text(name, timeout=TIMEOUT)
    return run


def sidebar_cancel_item(page, nb, artifacts, workers: int) -> None:
    run_cell(page, nb, 4)
    run = _sidebar_run(page, "slow2")
    row = run.locator(".jp-DaskMagic-runningItem[data-index='5']")
    expect(row).to_be_visible(timeout=TIMEOUT)
    done = run.locator("[data-count='done']")
    _wait_for(page, lambda: int(done.inner_text().split()[0]) >= 6, "the others to run past it")
    shot(page, artifacts, "32-lab-sidebar-running-items")
    row.locator(".jp-DaskMagic-cancelItem").click()
    expect(run).to_have_attribute("data-status", "failed", timeout=TIMEOUT)
    expect(run.locator("[data-count='cancelled']")).to_be_visible()
    wait_idle(page)
    report = _report(page, nb, 5)
    assert report["in_order"] and (report["done"], report["cancelled"]) == (11, 1), report
    # the worker restarted for the first Cancel item was back before that run ended
    assert report["workers"] == workers, report
    expect(run.locator(".jp-DaskMagic-status")).to_have_text("1 cancelled")


def sidebar_retry(page, nb, artifacts, flag) -> None:
    """Two items fail; fixed meanwhile, the sidebar's Retry failed re-runs them in the run."""
    run_cell(page, nb, 6)
    run = _sidebar_run(page, "flaky")
    expect(run).to_have_attribute("data-status", "running", timeout=TIMEOUT)
    expect(run.locator("[data-count='failed']")).to_have_text("2 failed", timeout=TIMEOUT)
    (flag / "ok").touch()
    shot(page, artifacts, "33-lab-sidebar-failures-live")
    assert run.get_attribute("data-status") == "running", "the run ended before the retry"
    run.locator(".jp-DaskMagic-retry").click()
    # the click's request ended on a subshell; the cell runs on, and the status bar says so
    page.wait_for_timeout(300)
    if run.get_attribute("data-status") == "running":
        expect(page.locator(".jp-StatusBar-Widget").first).to_contain_text("| Busy")
    expect(run).to_have_attribute("data-status", "finished", timeout=TIMEOUT)
    wait_idle(page)
    assert _report(page, nb, 7) == {"status": "finished", "failed": 0, "done": 60, "in_order": True}


def sidebar_cancel(page, nb, artifacts) -> None:
    run_cell(page, nb, 8)
    run = _sidebar_run(page, "long")
    expect(run).to_have_attribute("data-status", "running", timeout=TIMEOUT)
    expect(run.locator("[data-count='done']")).not_to_have_text("0 done", timeout=TIMEOUT)
    run.locator(".jp-DaskMagic-cancel").click()
    expect(run).to_have_attribute("data-status", "interrupted", timeout=TIMEOUT)
    wait_idle(page)
    shot(page, artifacts, "34-lab-sidebar-cancelled")
    report = _report(page, nb, 9)
    assert report["status"] == "interrupted" and report["in_order"], report
    assert 0 < report["done"] < 200, report


def test_cancel_item_and_the_sidebar_buttons_during_a_run(
    lab, lab_kernels, page, artifacts, tmp_path
):
    cells = (SETUP.format(flag=str(tmp_path)), *CELLS[1:])
    nb = open_notebook(page, lab, write_notebook(lab.root, "items.ipynb", *cells))
    for index in (0, 1):
        run_cell(page, nb, index)
        wait_idle(page)
    seconds, status_during, workers = panel_cancel_item(page, nb, artifacts)
    print(f"JupyterLab: Cancel item click to cancelled {seconds:.2f} s")
    print(f"status bar during the run: {status_during!r}")
    tab = page.locator(".jp-SideBar.jp-mod-left li[data-id='dask-magic-sidebar']")
    tab.click()
    expect(page.locator(SIDEBAR)).to_be_visible()
    sidebar_cancel_item(page, nb, artifacts, workers)
    sidebar_retry(page, nb, artifacts, tmp_path)
    sidebar_cancel(page, nb, artifacts)
    assert not page.page_errors, page.page_errors


def test_cancel_item_during_a_run_in_notebook7(notebook7, page, artifacts, tmp_path):
    from .test_live import _run_nb7

    write_notebook(notebook7.root, "items7.ipynb", SETUP.format(flag=str(tmp_path)), *CELLS[1:3])
    page.goto(notebook7.notebook7_url("notebooks/items7.ipynb"))
    cells = page.locator(".jp-Cell")
    cells.first.wait_for(timeout=TIMEOUT)
    expect(page.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=TIMEOUT
    )
    for attempt in range(3):  # the first Shift+Enter can land before the kernel is ready
        try:
            _run_nb7(page, cells, 0, timeout=30_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
    _run_nb7(page, cells, 1)
    expect(cells.nth(1)).to_contain_text("loaded", timeout=TIMEOUT)
    _run_nb7(page, cells, 2, wait=False)
    panel = cells.nth(2).locator(".dm-panel").first
    button = panel.locator(".dm-cancel-item.dm-item-5")
    expect(button).to_be_visible(timeout=TIMEOUT)
    _wait_for(page, lambda: _done(panel) >= 6, "the other items to run past item 5")
    clicked = time.monotonic()
    button.click()
    expect(panel.locator(".dm-status")).to_have_attribute("data-cancelled", "1", timeout=TIMEOUT)
    print(f"Notebook 7: Cancel item click to cancelled {time.monotonic() - clicked:.2f} s")
    expect(panel.locator(".dm-head")).to_contain_text("finished, 1 cancelled", timeout=TIMEOUT)
    shot(page, artifacts, "35-notebook7-item-cancelled")
    _run_nb7(page, cells, 3)
    expect(cells.nth(3)).to_contain_text('"in_order": true', timeout=TIMEOUT)
    report = _printed(cells.nth(3))
    assert (report["done"], report["cancelled"], report["failed"]) == (11, 1, 0), report
