"""The panel in a real JupyterLab in Chromium: counts, a traceback, Re-run here, Retry failed.

Screenshots of each step are saved under ``test-artifacts/ui/``; look at them.
"""

from __future__ import annotations

import json
import re
import time

import nbformat
import pytest

from .pages import TIMEOUT, open_notebook, run_cell, shot, wait_idle, write_notebook

SETUP = """\
import time
def parse(x):
    time.sleep(0.1)  # slow enough to see the panel while it runs
    if x % 10 == 3:
        raise ValueError(f"bad <img src=x onerror=alert(1)> {x}")
    return x * 2
"""
LOOP = """\
%%parallel_for
results = []
for x in range(40):
    print("reading", x)
    results.append(parse(x))
"""
FIX = "def parse(x):\n    return x * 2  # fixed\n"
BIG_SETUP = """\
def check(x):
    if x % 5 == 2:
        raise KeyError(f"</details><script>alert({x})</script>")
    return x
"""
BIG_LOOP = "%%parallel_for\nout = []\nfor x in range(10_000):\n    out.append(check(x))\n"


@pytest.fixture
def dialogs(page):
    """Every alert/confirm the page opened: user text must never run as script."""
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(d.message), d.dismiss()))
    yield seen
    assert seen == [], f"user text ran as script: {seen}"


@pytest.mark.slow
def test_counts_traceback_rerun_and_retry_in_jupyterlab(lab, lab_kernels, page, artifacts, dialogs):
    from playwright.sync_api import expect

    nb = open_notebook(page, lab, write_notebook(lab.root, "panel.ipynb", SETUP, LOOP, FIX))
    for index in range(3):
        run_cell(page, nb, index)
    panel = nb.locator(".jp-Cell").nth(2).locator(".dm-panel").first
    expect(panel.locator(".dm-badge-running")).to_be_visible(timeout=TIMEOUT)
    # JupyterLab 4.6 + ipykernel 7: clicks reach the kernel on a subshell (test_live.py)
    expect(panel.locator(".dm-hint")).to_contain_text("the buttons act now")
    shot(page, artifacts, "00-running")

    status = panel.locator(".dm-status")
    expect(status).to_have_attribute("data-done", "36", timeout=TIMEOUT)
    expect(status).to_have_attribute("data-failed", "4")
    expect(panel.locator(".dm-counts")).to_contain_text("36 done")
    expect(panel.locator(".dm-group").first).to_contain_text("4 \u00d7 ValueError at line 5")
    retry = panel.locator(".dm-retry")
    expect(retry).to_be_visible(timeout=TIMEOUT)
    wait_idle(page)
    shot(page, artifacts, "01-counts")

    item = panel.locator(".dm-item").first
    item.locator("summary").first.click()
    traceback = item.locator(".dm-tb").first
    expect(traceback).to_be_visible()
    # The cell's line; its In[] label is checked in tests/test_notebook_panel.py.
    expect(traceback).to_contain_text(
        re.compile(r"Cell In\[\d+\], line 5, in <loop body>\s+results.append\(parse\(x\)\)")
    )
    marked = 'raise ValueError(f"bad <img src=x onerror=alert(1)> {x}")'
    expect(traceback.locator("mark")).to_contain_text(marked)
    expect(item.locator(".dm-stdout")).to_contain_text("reading 3")
    expect(item.locator(".dm-tb-full")).to_be_hidden()
    item.locator(".dm-frames > summary").click()
    expect(item.locator(".dm-tb-full")).to_be_visible()
    shot(page, artifacts, "02-traceback")

    panel.get_by_role("button", name="Re-run here").first.click()
    output = panel.locator(".dm-output")
    expect(output).to_contain_text("running item 3", timeout=TIMEOUT)
    expect(output).to_contain_text("ValueError", timeout=TIMEOUT)
    wait_idle(page)
    item.locator("summary").first.click()  # fold the traceback again to see the output area
    output.scroll_into_view_if_needed()
    shot(page, artifacts, "03-rerun-here")

    run_cell(page, nb, 3)  # the fix
    wait_idle(page)
    retry.click()
    expect(status).to_have_attribute("data-failed", "0", timeout=TIMEOUT)
    expect(status).to_have_attribute("data-done", "40")
    expect(panel.locator(".dm-item")).to_have_count(0)
    expect(retry).to_be_hidden()
    expect(output).to_contain_text("retry ended: 40 done, 0 failed of 40", timeout=TIMEOUT)
    wait_idle(page)
    shot(page, artifacts, "04-retried")
    assert page.locator(".dm-panel img").count() == 0
    _check_saved_fallback(page, lab.root / "panel.ipynb")


def _check_saved_fallback(page, path) -> None:
    """After saving, the notebook's text/html fallback holds the state after the retry."""
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 20
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        nb = nbformat.read(path, as_version=4)
        data = next(
            (o["data"] for o in nb.cells[2].outputs if "text/html" in o.get("data", {})), {}
        )
        found = dict(re.findall(r'data-(done|failed)="(\d+)"', data.get("text/html", "")))
        if found == {"done": "40", "failed": "0"}:
            return
        time.sleep(0.25)
    raise AssertionError(f"saved text/html fallback shows {found}, not the retried state")


@pytest.mark.slow
def test_10000_items_with_2000_failures_stay_responsive(lab, lab_kernels, page, artifacts, dialogs):
    from playwright.sync_api import expect

    nb = open_notebook(page, lab, write_notebook(lab.root, "big.ipynb", BIG_SETUP, BIG_LOOP))
    started = time.monotonic()
    for index in range(3):
        run_cell(page, nb, index)
    panel = nb.locator(".jp-Cell").nth(2).locator(".dm-panel").first
    status = panel.locator(".dm-status")
    expect(status).to_have_attribute("data-failed", "2000", timeout=TIMEOUT)
    expect(status).to_have_attribute("data-done", "8000")
    to_final = time.monotonic() - started
    expect(panel.locator(".dm-group").first).to_contain_text("2,000 \u00d7 KeyError at line 4")
    items = panel.locator(".dm-item")
    expect(items).to_have_count(5)  # rows are capped per group
    wait_idle(page)
    more = panel.locator(".dm-more").first
    expect(more).to_contain_text("1,995 not shown")
    clicked = time.monotonic()
    more.click()
    expect(items).to_have_count(30)
    to_more = time.monotonic() - clicked
    items.nth(29).locator("summary").first.click()
    expect(items.nth(29).locator(".dm-tb")).to_contain_text("KeyError")
    shot(page, artifacts, "05-big-run")
    (artifacts / "big-run-timing.json").write_text(
        json.dumps(
            {"submit_to_final_counts_s": round(to_final, 2), "show_more_s": round(to_more, 2)}
        )
    )
