"""The Binder configuration (``binder/``), checked without Docker.

mybinder.org builds ``binder/environment.yml`` (Python and Node.js from conda-forge), then
runs ``binder/postBuild`` (pip installs ``binder/requirements.txt`` and the package), and
starts every session through ``binder/start``. The slow test does the pip part as Binder
would, in a fresh ``python3 -m venv`` built from a copy of the checkout's files, runs the real
``postBuild`` in it, and executes ``01-quickstart`` through ``binder/start`` with the cluster
told it has 2 GB, as on a small Binder instance.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
FACTS_MARK = "BINDER-FACTS "


def _requirements() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout on PYTHONPATH (tests/conftest.py puts it there)."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "DASK_MAGIC_MEMORY_LIMIT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def test_binder_files():
    for name in ("postBuild", "start"):
        path = BINDER / name
        assert os.access(path, os.X_OK), f"binder/{name} must be executable"
    assert (BINDER / "postBuild").read_text().startswith("#!/usr/bin/env python3")
    assert (BINDER / "start").read_text().startswith("#!/bin/bash")
    assert 'exec "$@"' in (BINDER / "start").read_text()
    conda = (BINDER / "environment.yml").read_text()
    for package in ("python >=", "nodejs >=", "- pip"):
        assert package in conda
    # the pip packages are in requirements.txt, which postBuild installs
    assert not re.search(r"^\s*- pip:", conda, re.M)
    assert "binder/requirements.txt" in (BINDER / "postBuild").read_text()


def test_requirements_are_ranges():
    requirements = _requirements()
    names = {re.split(r"[<>=!~\[ ]", r)[0].lower() for r in requirements}
    assert {
        "jupyterlab",
        "ipykernel",
        "ipywidgets",
        "jupyter-server-proxy",
        "bokeh",
        "dask",
        "distributed",
        "pandas",
        "numpy",
    } <= names
    for requirement in requirements:
        ranged = ">=" in requirement and "<" in requirement.replace("<=", "")
        assert ranged, f"not a range: {requirement}"


def test_start_routes_the_dashboard_through_the_proxy_and_sizes_the_cluster():
    env = _clean_env(MEM_LIMIT=str(2 * 2**30), JUPYTERHUB_SERVICE_PREFIX="/user/someone/")
    probe = (
        "import os, json\n"
        "import dask\n"
        "from distributed.utils import format_dashboard_link\n"
        "from dask_magic.engine import local_cluster\n"
        "from dask_magic.ui.html import dashboard_url\n"
        "link = format_dashboard_link('127.0.0.1', 8787)\n"
        "budget = local_cluster.memory_budget()\n"
        "size = local_cluster.local_cluster_size(2, budget)\n"
        "print(json.dumps([os.environ.get('DASK_MAGIC_MEMORY_LIMIT'), link, dashboard_url(link),"
        " budget, size.workers]))\n"
    )
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [str(BINDER / "start"), sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    limit, link, shown, budget, workers = json.loads(done.stdout)
    assert limit == str(2 * 2**30 - 768 * 2**20)  # the session's 2 GiB less 768 MiB
    assert link == shown == "/user/someone/proxy/8787/status"
    assert budget == 1280 * 2**20 and workers == 1
    # a value set by hand wins
    env["DASK_MAGIC_MEMORY_LIMIT"] = "2GB"
    done = subprocess.run(
        [str(BINDER / "start"), "env"], env=env, capture_output=True, text=True, check=True
    )
    assert "DASK_MAGIC_MEMORY_LIMIT=2GB" in done.stdout.splitlines()


def _copy_checkout(target: Path) -> None:
    """The files git would commit (tracked, and new ones not ignored), as Binder clones them."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


FACTS = r"""
import json, sys, dask_magic
from dask_magic.engine import cluster as _cluster
_info = _cluster.current_cluster_info()
print("BINDER-FACTS " + json.dumps({
    "python": sys.executable, "package": dask_magic.__file__, "status": str(run.status),
    "done": run.counts.done, "failed": run.counts.failed, "workers": _info.workers,
    "memory": _info.memory, "dashboard": _info.dashboard,
}))
"""


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_binder_environment_from_scratch_runs_the_quickstart(tmp_path):
    repo, venv, work = tmp_path / "repo", tmp_path / "venv", tmp_path / "work"
    repo.mkdir()
    work.mkdir()
    _copy_checkout(repo)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = _clean_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv))
    if "YARN_NPM_REGISTRY_SERVER" not in env and shutil.which("npm"):
        # the sidebar's build fetches from npm's configured registry, as the Makefile arranges
        registry = subprocess.run(
            ["npm", "config", "get", "registry"], capture_output=True, text=True
        ).stdout.strip()
        if registry:
            env["YARN_NPM_REGISTRY_SERVER"] = registry
    build = subprocess.run(
        [str(repo / "binder" / "postBuild")], cwd=repo, env=env, capture_output=True, text=True
    )
    built = time.perf_counter()
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    assert "JupyterLab extension @jupyter-widgets/jupyterlab-manager enabled OK" in build.stdout
    assert "server extension jupyter_server_proxy enabled OK" in build.stdout
    if (ROOT / "labextension" / "package.json").exists():
        assert "JupyterLab extension dask-magic enabled OK" in build.stdout

    nb = nbformat.read(str(repo / "notebooks" / "01-quickstart.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(FACTS))
    nbformat.write(nb, str(work / "01-quickstart.ipynb"))
    session = dict(
        env, DASK_MAGIC_MEMORY_LIMIT="2GB", JUPYTERHUB_SERVICE_PREFIX="/user/binder-test/"
    )
    run = subprocess.run(
        [
            str(repo / "binder" / "start"),
            str(venv / "bin" / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--ExecutePreprocessor.timeout=600",
            "--output",
            "executed.ipynb",
            "01-quickstart.ipynb",
        ],
        cwd=work,
        env=session,
        capture_output=True,
        text=True,
    )
    finished = time.perf_counter()
    print(
        f"\nbinder from scratch: venv + postBuild {built - started:.0f} s, "
        f"01-quickstart {finished - built:.0f} s, total {finished - started:.0f} s"
    )
    assert run.returncode == 0, run.stderr[-4000:]

    executed = nbformat.read(str(work / "executed.ipynb"), as_version=4)
    texts = [json.dumps(c.get("outputs", [])) for c in executed.cells]
    assert not any("KilledWorker" in t for t in texts)
    printed = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    facts = json.loads(printed.split(FACTS_MARK, 1)[1])
    assert Path(facts["python"]).is_relative_to(venv)
    assert Path(facts["package"]).is_relative_to(venv)  # the installed package, not the checkout
    assert (facts["status"], facts["done"], facts["failed"]) == ("finished", 200, 0)
    assert facts["workers"] == 1 and facts["memory"] == 2_000_000_000
    assert re.fullmatch(r"/user/binder-test/proxy/\d+/status", facts["dashboard"])
    first = next(c for c in executed.cells if c.get("id") == "compare")
    assert "<Run 'run' failed: 190 done, 10 failed of 200" in json.dumps(first.outputs)
