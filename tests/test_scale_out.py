"""The path past one machine: ``dask scheduler`` and ``dask worker`` processes from the
command line, on 127.0.0.1, and ``%%parallel_for --scheduler`` pointed at them."""

from __future__ import annotations

import os

import pytest
from conftest import run_ok
from helpers import command_line_cluster


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A scheduler and two single-threaded workers, each its own process, in another folder."""
    elsewhere = tmp_path_factory.mktemp("cluster-cwd")
    with command_line_cluster(elsewhere, workers=2, nanny=False) as (address, _, _):
        yield address


def test_parallel_for_on_a_command_line_cluster(fresh, scheduler):
    run_ok(
        fresh,
        "import os\ndef describe(x):\n    return (x * x, os.getpid())\nitems = list(range(12))",
    )
    run = run_ok(
        fresh,
        f"%%parallel_for --scheduler {scheduler} --progress none\nsquares = []\npids = set()\n"
        "for x in items:\n    sq, pid = describe(x)\n    squares.append(sq)\n    pids.add(pid)\n",
    )
    assert run.counts.done == 12
    assert run.cluster.scheduler == scheduler and run.cluster.workers == 2 and not run.cluster.local
    assert fresh.user_ns["squares"] == [x * x for x in range(12)]
    assert os.getpid() not in fresh.user_ns["pids"]
    assert fresh.user_ns["sq"] == 121


def test_failures_on_the_remote_cluster_point_at_the_cell(fresh, scheduler):
    run_ok(fresh, "def check(x):\n    if x == 3:\n        raise KeyError(x)\n    return x\n")
    run = run_ok(
        fresh,
        f"%%parallel_for --scheduler {scheduler} --progress none\nout = []\n"
        "for x in range(5):\n    out.append(check(x))\n",
    )
    assert run.counts.failed == 1 and fresh.user_ns["out"] == [0, 1, 2, 4]
    assert run.failures[0].line == 4 and "out.append(check(x))" in run.failures[0].traceback


def test_module_next_to_the_notebook_is_shipped_to_remote_workers(
    fresh, scheduler, tmp_path, monkeypatch
):
    (tmp_path / "nb_helpers_xyz.py").write_text("def clean(x):\n    return f'clean-{x}'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    run_ok(fresh, "import nb_helpers_xyz")
    run = run_ok(
        fresh,
        f"%%parallel_for --scheduler {scheduler} --progress none\nout = []\n"
        "for x in range(4):\n    out.append(nb_helpers_xyz.clean(x))\n",
    )
    assert run.counts.done == 4, run.failures[0].traceback if run.failures else ""
    assert fresh.user_ns["out"] == [f"clean-{x}" for x in range(4)]
