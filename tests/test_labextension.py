"""The sidebar's own toolchain, run from pytest so `make test` covers it: jest (protocol,
model, views) and the linters. Needs `labextension/node_modules`, which `pip install -e .`
leaves there (the build hook runs `jlpm install`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import missing_tool

LABEXTENSION = Path(__file__).resolve().parents[1] / "labextension"


def _jlpm() -> str:
    found = shutil.which("jlpm") or shutil.which("jlpm", path=str(Path(sys.executable).parent))
    if found is None:
        missing_tool("jlpm not found (pip install jupyterlab)")
    if not (LABEXTENSION / "node_modules").is_dir():
        missing_tool("labextension/node_modules missing: cd labextension && jlpm install")
    return found


@pytest.mark.parametrize("script", ["test", "lint:check"])
def test_labextension_script(script):
    jlpm = _jlpm()
    # package.json scripts call jlpm again: it must be on PATH
    path = os.pathsep.join([str(Path(jlpm).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "CI": "true", "PATH": path}
    result = subprocess.run(
        [jlpm, "run", script],
        cwd=LABEXTENSION,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
