"""The extension in Jupyter Notebook 7: it must not break the tree or notebook pages, and its
panel (View > Left Sidebar) works there too."""

from __future__ import annotations

import re

from helpers import import_tool

from .notebooks import write_notebooks

expect = import_tool("playwright.sync_api").expect

SIDEBAR = "#dask-magic-sidebar"


def ours(errors: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Page errors raised from dask-magic's bundle (Notebook 7 has a few of its own)."""
    return [e for e in errors if "dask-magic" in e[1] or "DaskMagic" in e[0]]


def test_notebook7_pages_and_panel(notebook7, page, artifacts):
    write_notebooks(notebook7.root)
    page.goto(notebook7.notebook7_url("tree"))
    expect(page.locator(".jp-DirListing-item", has_text="one.ipynb")).to_be_visible(timeout=60_000)

    page.goto(notebook7.notebook7_url("notebooks/one.ipynb"))
    page.locator(".jp-Cell").first.wait_for(timeout=60_000)
    expect(page.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=60_000
    )
    page.locator(".lm-MenuBar-itemLabel", has_text="View").click()
    page.locator(".lm-Menu-itemLabel", has_text="Left Sidebar").hover()
    page.locator(".lm-Menu-itemLabel", has_text="Show Dask parallel runs").click()
    sidebar = page.locator(SIDEBAR)
    expect(sidebar).to_contain_text("%load_ext dask_magic")

    cells = page.locator(".jp-Cell")
    cells.nth(0).locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")
    expect(cells.nth(0)).to_contain_text("loaded", timeout=30_000)
    cells.nth(1).locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")
    run = sidebar.locator(".jp-DaskMagic-run[data-run-id]").first
    expect(run).to_have_attribute("data-status", "failed", timeout=90_000)
    expect(run.locator("[data-count='failed']")).to_have_text("3 failed")

    cells.nth(3).locator(".jp-InputPrompt").click()
    run.locator(".jp-DaskMagic-runHeader").click()
    expect(page.locator(".jp-Cell.jp-mod-active")).to_contain_text("# files loop")
    expect(run).to_have_class(re.compile("jp-mod-selected"))
    page.screenshot(path=str(artifacts / "10-notebook7.png"))
    assert ours(page.page_errors) == []
