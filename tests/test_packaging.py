"""A fresh clone installs with plain pip and ships the prebuilt sidebar: no node for users."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest
from helpers import missing_tool

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kwargs) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{cmd}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


@pytest.mark.slow
def test_fresh_clone_pip_install_has_the_labextension(tmp_path):
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        missing_tool("not a git checkout, or no git")
    if shutil.which("node") is None:
        missing_tool("node is needed to build the extension from source")
    env = dict(os.environ, CI="true")  # Yarn refuses to change yarn.lock: it must be current
    if "YARN_NPM_REGISTRY_SERVER" not in env and shutil.which("npm"):
        registry = _run(["npm", "config", "get", "registry"]).strip()
        env["YARN_NPM_REGISTRY_SERVER"] = registry
    clone = tmp_path / "clone"
    _run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)])
    assert not (clone / "dask_magic" / "labextension").exists()
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", str(clone), "jupyterlab"], env=env)

    share = tmp_path / "venv" / "share" / "jupyter" / "labextensions" / "dask-magic"
    package = json.loads((share / "package.json").read_text())
    assert package["name"] == "dask-magic"
    assert (share / "install.json").exists()
    assert list((share / "static").glob("remoteEntry.*.js"))
    listing = _run([str(python), "-m", "jupyter", "labextension", "list"], env=env)
    assert any(
        "dask-magic" in line and "enabled" in line and "OK" in line for line in listing.splitlines()
    ), listing
