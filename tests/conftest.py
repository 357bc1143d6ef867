"""Shared fixtures: a real IPython shell with dask_magic loaded, and namespace helpers.

The shell is IPython's own test shell (``IPython.testing.globalipapp``), the cluster is the
real LocalCluster with worker processes that ``%%parallel_for`` starts on first use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# workers are spawned processes: they must import dask_magic from this checkout too
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


@pytest.fixture(autouse=True)
def _own_journal(tmp_path_factory, monkeypatch):
    """Each test gets an empty journal: a cell run twice in two tests runs twice.

    Within one test, a cell run twice unchanged is restored from the journal; tests about
    running again use ``--fresh``.
    """
    monkeypatch.setenv("DASK_MAGIC_JOURNAL", str(tmp_path_factory.mktemp("journal")))


@pytest.fixture(scope="session")
def ip():
    """IPython's test shell with ``%load_ext dask_magic`` done."""
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_line_magic("load_ext", "dask_magic")
    return shell


@pytest.fixture
def fresh(ip):
    """The shell with an empty user namespace (IPython's own names kept)."""
    ip.reset(new_session=False)
    yield ip
    ip.reset(new_session=False)


def user_names(ns: dict) -> dict:
    """The part of a namespace a user wrote (no IPython history variables)."""
    return {k: v for k, v in ns.items() if not k.startswith("_") and k not in _IPYTHON_NAMES}


def run_ok(ip, cell: str):
    """Run a cell and fail the test with the cell's error if it raised."""
    result = ip.run_cell(cell)
    if not result.success:
        raise AssertionError(
            f"cell failed: {result.error_before_exec or result.error_in_exec!r}\n{cell}"
        )
    return result.result


@pytest.fixture(scope="module")
def one_worker_cluster():
    """A LocalCluster of one single-threaded worker process on loopback, per test module."""
    from helpers import own_local_cluster

    with own_local_cluster(n_workers=1, threads_per_worker=1, processes=True) as made:
        yield made
