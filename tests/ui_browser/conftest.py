"""Fixtures for the browser tests: a JupyterLab server and a Chromium page (Playwright)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .harness import CHROMIUM, CHROMIUM_ARGS, extension_installed, start_lab, stop_lab

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if extension_installed() is None:
        pytest.fail(
            "the dask-magic labextension is not installed for this Python: "
            "build it (cd labextension && jlpm install && jlpm build:prod) and pip install -e ."
        )
    server = start_lab(tmp_path_factory.mktemp("lab"))
    yield server
    stop_lab(server)
    if os.environ.get("DASK_MAGIC_KEEP_LAB_LOG"):
        shutil.copy(server.log, ARTIFACTS / "jupyterlab.log")


@pytest.fixture
def page(lab, artifacts):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.console_errors = errors
        yield page
        context.close()
        browser.close()
