"""Fixtures for the browser tests: a JupyterLab server and a Chromium page (Playwright)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import import_tool, missing_tool

from .harness import CHROMIUM, CHROMIUM_ARGS, extension_installed, start_lab, stop_lab

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _serve(tmp_path_factory, app: str):
    if extension_installed() is None:
        pytest.fail(
            "the dask-magic labextension is not installed for this Python: "
            "build it (cd labextension && jlpm install && jlpm build:prod) and pip install -e ."
        )
    server = start_lab(tmp_path_factory.mktemp(app), app=app)
    yield server
    stop_lab(server)
    if os.environ.get("DASK_MAGIC_KEEP_LAB_LOG"):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.log, ARTIFACTS / f"{app}.log")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab with the extension installed."""
    yield from _serve(tmp_path_factory, "jupyterlab")


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory):
    """Jupyter Notebook 7 (skipped where the notebook package is not installed, except in CI)."""
    import_tool("notebook.app")
    yield from _serve(tmp_path_factory, "notebook")


@pytest.fixture
def lab_kernels(lab):
    """Shut the test's kernels (and the clusters they started) down after it."""
    yield
    for kernel in lab.api("/api/kernels"):
        lab.api(f"/api/kernels/{kernel['id']}", method="DELETE")


@pytest.fixture
def page(artifacts):
    sync_api = import_tool("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        missing_tool(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        errors: list[tuple[str, str]] = []  # (message, stack) of uncaught page errors
        page.on("pageerror", lambda exc: errors.append((exc.message, exc.stack or "")))
        page.page_errors = errors
        yield page
        context.close()
        browser.close()
