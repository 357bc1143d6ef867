"""Hostile and odd input: each gets a clear message or works, never a dask-magic traceback."""

from __future__ import annotations

import html

import pytest
from conftest import run_ok
from IPython.core.error import UsageError


def usage_error(ip, cell: str) -> str:
    result = ip.run_cell(cell)
    assert isinstance(result.error_in_exec, UsageError), (
        result.error_in_exec or result.error_before_exec
    )
    return str(result.error_in_exec)


@pytest.mark.parametrize(
    "cell",
    ["%%parallel_for\n# just a comment\n", "%%parallel_for\nx = 1\n"],
    ids=["only a comment", "no loop"],
)
def test_cells_without_a_loop(fresh, cell):
    assert "no top-level `for` loop" in usage_error(fresh, cell)


def test_empty_cell_is_refused_by_ipython_in_one_line(fresh):
    assert "cell body is empty" in usage_error(fresh, "%%parallel_for\n")


def test_a_million_items(fresh):
    run = run_ok(
        fresh,
        "%%parallel_for --progress none\ntotal = 0\nfor x in range(1_000_000):\n    total += x\n",
    )
    assert run.counts.done == 1_000_000
    assert fresh.user_ns["total"] == sum(range(1_000_000))


def test_huge_and_hostile_item_reprs_are_bounded(fresh):
    run_ok(fresh, "items = ['x' * 10_000_000, '<script>alert(1)</script>.csv']")
    run = run_ok(
        fresh, "%%parallel_for --progress none\nfor f in items:\n    raise ValueError(f[:50])\n"
    )
    big, hostile = run.failures
    assert len(big.item_repr) <= 120
    assert hostile.item_repr == repr("<script>alert(1)</script>.csv")
    assert len(big.error.message) <= 10_100


def test_body_that_prints_ten_megabytes(fresh):
    run = run_ok(
        fresh,
        "%%parallel_for --progress none\nfor x in range(2):\n    print('z' * 10_000_000)\n"
        "    raise RuntimeError('after printing')\n",
    )
    assert all(len(f.stdout) < 70_000 for f in run.failures)


def test_item_that_cannot_be_sent_to_a_worker(fresh):
    run_ok(fresh, "import threading\nitems = [1, threading.Lock(), 3]")
    run = run_ok(
        fresh,
        "%%parallel_for --progress none --batch 1\nout = []\nfor x in items:\n"
        "    out.append(str(type(x)))\n",
    )
    assert (run.counts.done, run.counts.failed) == (2, 1)
    assert fresh.user_ns["out"] == ["<class 'int'>", "<class 'int'>"]
    failure = run.failures[0]
    assert failure.index == 1 and "cannot be sent to a worker" in failure.error.message
    assert "inside the loop body" in failure.error.hint


def test_unpicklable_name_is_named_before_anything_runs(fresh):
    run_ok(fresh, "numbers = (i for i in range(10))\nitems = [1, 2]")
    message = usage_error(fresh, "%%parallel_for\nfor x in items:\n    y = next(numbers) + x\n")
    assert "`numbers`" in message and "cannot be sent to the workers" in message


def test_writes_through_an_open_notebook_file_run_in_item_order(fresh, tmp_path):
    path = tmp_path / "x.txt"
    run_ok(fresh, f"fh = open({str(path)!r}, 'w')\nitems = list(range(20))")
    run_ok(
        fresh, "%%parallel_for --progress none\nfor x in items:\n    fh.write(str(x * x) + ',')\n"
    )
    run_ok(fresh, "fh.close()")
    assert path.read_text() == "".join(f"{x * x}," for x in range(20))


def test_unpicklable_return_value_is_an_item_failure(fresh):
    run_ok(fresh, "import threading\nitems = [0, 1, 2]")
    run = run_ok(
        fresh,
        "%%parallel_for --progress none\nout = []\nfor x in items:\n"
        "    out.append(threading.Lock() if x == 1 else x)\n",
    )
    assert run.counts.failed == 1 and fresh.user_ns["out"] == [0, 2]
    assert "cannot be sent back to the notebook" in run.failures[0].error.message


def test_exception_with_html_in_its_message_stays_text(fresh):
    run = run_ok(
        fresh,
        "%%parallel_for --progress none\nfor x in [1]:\n"
        "    raise ValueError('<img src=x onerror=alert(1)></details><script>')\n",
    )
    failure = run.failures[0]
    assert failure.error.message == "<img src=x onerror=alert(1)></details><script>"
    assert html.escape(failure.error.message) not in failure.traceback  # text views keep it raw
