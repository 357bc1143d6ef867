"""A headless JupyterLab for the browser tests: started with Popen, stopped by its own PID."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from helpers import free_port

CHROMIUM = os.environ.get("DASK_MAGIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Lab:
    """A running JupyterLab: its URL, token, notebook folder and process."""

    url: str
    token: str
    root: Path
    log: Path
    proc: subprocess.Popen

    def page_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}&reset"

    def notebook7_url(self, path: str) -> str:
        return f"{self.url}/{path}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> dict | list | None:
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None


def start_lab(workdir: Path, timeout: float = 60.0, app: str = "jupyterlab") -> Lab:
    """Start ``python -m jupyterlab`` (or ``notebook``: Notebook 7) on a free loopback port
    and wait until it answers."""
    app_class = {"jupyterlab": "LabApp", "notebook": "JupyterNotebookApp"}[app]
    root = workdir / "notebooks"
    settings = workdir / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True, exist_ok=True)
    # No "get notified about Jupyter news?" toast over the UI.
    (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_hex(16)
    log = workdir / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        app,
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--{app_class}.user_settings_dir={settings}",
        f"--{app_class}.workspaces_dir={workdir / 'workspaces'}",
        f"--{app_class}.extension_manager=readonly",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=_checkout_first(workdir)
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()}")
        try:
            lab.api("/api/status")
            return lab
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.25)
    stop_lab(lab)
    raise TimeoutError(f"JupyterLab did not answer in {timeout} s:\n{log.read_text()}")


#: The extension as this checkout builds it (``jlpm build`` writes it here).
CHECKOUT_BUILD = Path(__file__).resolve().parents[2] / "dask_magic" / "labextension"


def _checkout_first(workdir: Path) -> dict[str, str]:
    """The server's environment: where this checkout has built the extension, JupyterLab
    loads that build rather than the one installed in the environment (the first folder on
    the Jupyter path that holds an extension of a name wins), so the tests see these sources."""
    env = dict(os.environ)
    if not (CHECKOUT_BUILD / "package.json").exists():
        return env
    labextensions = workdir / "jupyter-path" / "labextensions"
    labextensions.mkdir(parents=True, exist_ok=True)
    link = labextensions / "dask-magic"
    if not link.exists():
        link.symlink_to(CHECKOUT_BUILD, target_is_directory=True)
    paths = [str(workdir / "jupyter-path"), env.get("JUPYTER_PATH", "")]
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in paths if p)
    return env


def stop_lab(lab: Lab) -> None:
    """SIGTERM the server we started (it shuts its kernels down), SIGKILL if it hangs."""
    if lab.proc.poll() is None:
        lab.proc.send_signal(signal.SIGTERM)
        try:
            lab.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.proc.kill()
            lab.proc.wait(timeout=10)


def extension_installed() -> Path | None:
    """Where the prebuilt dask-magic extension is installed for this Python, if it is."""
    from jupyter_core.paths import jupyter_path

    for base in jupyter_path("labextensions"):
        candidate = Path(base) / "dask-magic" / "package.json"
        if candidate.exists():
            return candidate
    return None
