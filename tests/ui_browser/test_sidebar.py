"""The sidebar in a real JupyterLab, driven by Chromium, with the real magic.

One flow, as a user would: a notebook without the extension shows the hint; a
``%%parallel_for`` run with failures shows its final counts; a failure opens to its
traceback; clicking the run selects its cell; after a fix, Retry failed finishes the run;
Cancel interrupts a live run; a second notebook shows its own runs; switching back, reloading
the page, closing the cluster and restarting the kernel do what they should. Screenshots go to
test-artifacts/ui/.
"""

from __future__ import annotations

import importlib.util
import re

from helpers import import_tool

from .notebooks import write_notebooks

expect = import_tool("playwright.sync_api").expect

VISIBLE_NB = ".jp-NotebookPanel:not(.lm-mod-hidden)"
SIDEBAR = "#dask-magic-sidebar"


def wait_idle(page) -> None:
    page.locator(f"{VISIBLE_NB} .jp-Cell").first.wait_for(timeout=60_000)
    expect(page.locator(".jp-StatusBar-Widget").first).to_contain_text(
        re.compile(r"\| Idle"), timeout=60_000
    )


def run_cell(page, index: int, wait_for: str | None = None) -> None:
    """Select cell `index` of the visible notebook and run it with Shift+Enter."""
    cell = page.locator(f"{VISIBLE_NB} .jp-Cell").nth(index)
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")
    if wait_for is not None:
        expect(cell.locator(".jp-OutputArea-output")).to_contain_text(wait_for, timeout=30_000)


def open_sidebar(page) -> None:
    tab = page.locator(".jp-SideBar.jp-mod-left li[data-id='dask-magic-sidebar']")
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    expect(page.locator(SIDEBAR)).to_be_visible()


def active_cell_index(page) -> int:
    """The index of the visible notebook's active cell."""
    return page.evaluate(
        """(sel) => {
            const cells = [...document.querySelectorAll(`${sel} .jp-Notebook .jp-Cell`)];
            return cells.findIndex(cell => cell.classList.contains('jp-mod-active'));
        }""",
        VISIBLE_NB,
    )


def test_sidebar_flow(lab, page, artifacts):
    write_notebooks(lab.root)
    shot = lambda name: page.screenshot(path=str(artifacts / f"{name}.png"))  # noqa: E731
    sidebar = page.locator(SIDEBAR)
    cells = page.locator(f"{VISIBLE_NB} .jp-Cell")

    # 1. A notebook that has not loaded the extension: the hint.
    page.goto(lab.page_url("one.ipynb"))
    wait_idle(page)
    open_sidebar(page)
    expect(sidebar).to_contain_text("%load_ext dask_magic")
    expect(sidebar.locator(".jp-DaskMagic-notebook")).to_have_text("one.ipynb")
    shot("01-hint")
    if importlib.util.find_spec("dask_labextension") is not None:
        # Coexists with dask-labextension: both tabs, each its own panel.
        theirs = page.locator(".jp-SideBar.jp-mod-left li[data-id='dask-dashboard-launcher']")
        theirs.click()
        expect(page.locator("#dask-dashboard-launcher")).to_be_visible()
        expect(sidebar).to_be_hidden()
        shot("01b-dask-labextension")
        open_sidebar(page)

    # 2. %load_ext, then a %%parallel_for loop with failures: final counts, groups, cluster.
    run_cell(page, 0, wait_for="loaded")
    expect(sidebar).to_contain_text("No runs yet")
    run_cell(page, 1)
    run = sidebar.locator(".jp-DaskMagic-run[data-run-id]").first
    expect(run.locator(".jp-DaskMagic-runTitle")).to_have_text("files", timeout=60_000)
    expect(run).to_have_attribute("data-status", "failed", timeout=90_000)
    shot("02-failed-run")
    expect(run.locator("[data-count='done']")).to_have_text("7 done")
    expect(run.locator("[data-count='failed']")).to_have_text("3 failed")
    expect(run.locator("[data-count='running']")).to_have_text("0 running")
    expect(run.locator("[data-count='queued']")).to_have_text("0 queued")
    expect(run.locator(".jp-DaskMagic-status")).to_have_text("failed")
    expect(run).to_have_attribute("data-cell-id", "files-loop-cell")  # from the execute request
    groups = run.locator(".jp-DaskMagic-groupSummary")
    expect(groups).to_have_count(2)
    expect(groups.nth(0)).to_have_text("2 \N{MULTIPLICATION SIGN} FileNotFoundError at line 7")
    expect(groups.nth(1)).to_have_text("1 \N{MULTIPLICATION SIGN} ValueError at line 9")
    expect(sidebar.locator(".jp-DaskMagic-scheduler")).to_have_text(
        re.compile(r"^tcp://127\.0\.0\.1:")
    )
    expect(sidebar.locator(".jp-DaskMagic-workers")).to_have_text(re.compile(r"^[1-9]\d*$"))

    # 3. A failure opens to its traceback (the user's cell lines); kernel text stays text.
    groups.nth(1).click()
    item = run.locator(".jp-DaskMagic-item[data-index='9']")
    expect(item.locator(".jp-DaskMagic-itemValue")).to_have_text("9")
    expect(item.locator(".jp-DaskMagic-traceback")).to_be_hidden()
    item.locator("summary").click()
    traceback = item.locator(".jp-DaskMagic-traceback")
    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text('float("<b>n/a</b>")')
    expect(traceback).to_contain_text("ValueError: could not convert string to float: '<b>n/a</b>'")
    assert sidebar.locator("b").count() == 0  # '<b>' was not parsed as HTML
    expect(item.locator(".jp-DaskMagic-output-stdout")).to_contain_text("reading data/2021-09.csv")
    shot("03-traceback")

    # 4. Clicking the run selects and scrolls to the cell that started it.
    run_cell(page, 2, wait_for="fixed")  # the fix; the active cell is now another one
    assert active_cell_index(page) == 3
    run.locator(".jp-DaskMagic-runHeader").click()
    expect(run).to_have_class(re.compile(r"jp-mod-selected"))
    expect(page.locator(f"{VISIBLE_NB} .jp-Cell.jp-mod-active")).to_contain_text("# files loop")
    assert active_cell_index(page) == 1
    # selected, not being edited: the notebook stays in command mode
    expect(page.locator(".jp-StatusBar-Widget").first).to_contain_text("Mode: Command")
    shot("04-cell-selected")

    # 5. Retry failed runs %parallel_retry for the run: after the fix, all 10 are done.
    run.locator(".jp-DaskMagic-retry").click()
    expect(run).to_have_attribute("data-status", "finished", timeout=60_000)
    expect(run.locator("[data-count='done']")).to_have_text("10 done")
    expect(run.locator("[data-count='failed']")).to_have_text("0 failed")
    expect(run.locator(".jp-DaskMagic-group")).to_have_count(0)
    run_cell(page, 3, wait_for="results: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]")
    shot("05-retried")

    # 6. Cancel interrupts a live run.
    run_cell(page, 4)
    long_run = sidebar.locator(".jp-DaskMagic-run[data-run-id]").first
    expect(long_run.locator(".jp-DaskMagic-runTitle")).to_have_text("long", timeout=30_000)
    expect(long_run).to_have_attribute("data-status", "running")
    expect(long_run.locator("[data-count='done']")).not_to_have_text("0 done", timeout=30_000)
    shot("06-long-running")
    long_run.locator(".jp-DaskMagic-cancel").click()
    expect(long_run).to_have_attribute("data-status", "interrupted", timeout=30_000)
    expect(long_run.locator("[data-count='cancelled']")).to_be_visible()
    expect(cells.nth(4)).to_contain_text("%parallel_retry", timeout=30_000)
    shot("07-interrupted")

    # 7. A second notebook: its own hint, then its own runs only.
    page.locator(".jp-SideBar.jp-mod-left li[data-id='filebrowser']").click()
    page.locator(".jp-DirListing-item", has_text="two.ipynb").dblclick()
    expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
        "two.ipynb"
    )
    wait_idle(page)
    open_sidebar(page)
    expect(sidebar.locator(".jp-DaskMagic-notebook")).to_have_text("two.ipynb")
    expect(sidebar).to_contain_text("%load_ext dask_magic")
    run_cell(page, 0, wait_for="loaded")
    run_cell(page, 1)
    features = sidebar.locator(".jp-DaskMagic-run[data-run-id]").first
    expect(features.locator(".jp-DaskMagic-runTitle")).to_have_text("features", timeout=60_000)
    expect(features).to_have_attribute("data-status", "finished", timeout=90_000)
    expect(features.locator("[data-count='done']")).to_have_text("5 done")
    expect(sidebar.locator(".jp-DaskMagic-run")).to_have_count(1)
    expect(features).to_have_attribute("data-cell-id", "features-loop-cell")
    shot("08-second-notebook")

    # 8. Back to the first: its runs again.
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="one.ipynb").click()
    expect(sidebar.locator(".jp-DaskMagic-notebook")).to_have_text("one.ipynb")
    expect(sidebar.locator(".jp-DaskMagic-run")).to_have_count(2)

    # 9. Reload the page: the sidebar asks the kernel for its state.
    page.reload()
    wait_idle(page)
    open_sidebar(page)
    expect(sidebar.locator(".jp-DaskMagic-run")).to_have_count(2, timeout=30_000)
    titles = sidebar.locator(".jp-DaskMagic-runTitle")
    expect(titles).to_have_text(["long", "files"])  # newest first
    shot("09-after-reload")

    # 10. Close the cluster from the sidebar, then restart the kernel: the view clears.
    sidebar.locator(".jp-DaskMagic-closeCluster").click()
    expect(sidebar).to_contain_text("No cluster", timeout=30_000)
    page.locator(f"{VISIBLE_NB} .jp-Cell").first.locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("0")
    page.keyboard.press("0")
    page.locator(".jp-Dialog-button", has_text="Restart").click()
    expect(sidebar).to_contain_text("%load_ext dask_magic", timeout=30_000)
    expect(sidebar.locator(".jp-DaskMagic-run")).to_have_count(0)
    wait_idle(page)
    shot("10-after-restart")

    assert page.page_errors == []
