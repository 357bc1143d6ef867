"""Page helpers shared by the browser tests: write a notebook, open it, run a cell, wait idle."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

TIMEOUT = 90_000  # ms: the first cell starts a LocalCluster on a shared 2-core machine


def write_notebook(root: Path, name: str, *sources: str) -> str:
    """``root/name`` with ``%load_ext dask_magic`` and then ``sources`` as code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in ("%load_ext dask_magic", *sources)]
    nbformat.write(nb, root / name)
    return name


def open_notebook(page, lab, name: str):
    """Open notebook ``name`` and wait for its kernel; return the notebook panel locator."""
    page.goto(lab.page_url(name))
    nb = page.locator(".jp-NotebookPanel").first
    nb.locator(".jp-Cell").first.wait_for(timeout=TIMEOUT)
    wait_idle(page)
    return nb


def run_cell(page, nb, index: int) -> None:
    nb.locator(".jp-Cell").nth(index).locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")


def wait_idle(page) -> None:
    from playwright.sync_api import expect

    status = page.locator(".jp-StatusBar-Widget").first
    expect(status).to_contain_text(re.compile(r"\| Idle"), timeout=TIMEOUT)


def shot(page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
