"""A real JupyterLab, started once per session, and a headless Chromium page on it.

As in TOOLCHAIN.md §3: the server is ``python -m jupyterlab`` on a free loopback port with a
token, fresh settings/workspace folders and a read-only extension manager, started with
``subprocess.Popen`` and stopped by terminating that PID. The browser is Debian's
``/usr/bin/chromium`` through Python Playwright. The kernel finds this checkout through the
server's ``PYTHONPATH``. Screenshots go to ``test-artifacts/browser/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
VENV_JUPYTER = str(Path(sys.prefix) / "share" / "jupyter")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(
        f"JupyterLab did not answer {url} in {timeout:.0f}s:\n{log.read_text()[-3000:]}"
    )


def _settings(folder: Path) -> None:
    # Without this a "get notified about official Jupyter news?" toast covers the notebook.
    target = folder / "@jupyterlab" / "apputils-extension"
    target.mkdir(parents=True)
    (target / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )


@pytest.fixture(scope="session")
def lab():
    """``(base_url, token, root_dir)`` of a JupyterLab server that lives for the session."""
    _require_browser()
    base = Path(tempfile.mkdtemp(prefix="dm-lab-"))
    root, settings, workspaces = base / "root", base / "settings", base / "workspaces"
    root.mkdir()
    workspaces.mkdir()
    _settings(settings)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        # The venv's python3 kernelspec before any in ~/.local/share/jupyter.
        JUPYTER_PATH=os.pathsep.join(filter(None, [VENV_JUPYTER, os.environ.get("JUPYTER_PATH")])),
    )
    log = base / "server.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={workspaces}",
        "--LabApp.extension_manager=readonly",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(f"{url}/api/status?token={token}", proc, log)
        yield url, token, root
    finally:
        proc.terminate()  # the server shuts its kernels (and their clusters) down
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if ARTIFACTS.exists():  # kept for a failing run's post-mortem
            shutil.copy(log, ARTIFACTS / "server.log")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def artifacts() -> Path:
    """Where browser tests put screenshots (``test-artifacts/browser/``)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def page():
    """A fresh headless Chromium page (its own profile), closed after the test."""
    _require_browser()
    playwright_sync = pytest.importorskip(
        "playwright.sync_api", reason="browser tests need Python Playwright"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    with playwright_sync.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def _shutdown_kernels(base: str, token: str) -> None:
    """Stop every kernel (and with it the cluster it started) so tests do not pile them up."""
    headers = {"Authorization": f"token {token}"}
    request = urllib.request.Request(f"{base}/api/kernels", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        url = f"{base}/api/kernels/{kernel['id']}"
        urllib.request.urlopen(
            urllib.request.Request(url, headers=headers, method="DELETE"), timeout=30
        )


@pytest.fixture
def lab_kernels(lab):
    """Shut the test's kernels down after it."""
    yield
    _shutdown_kernels(lab[0], lab[1])
