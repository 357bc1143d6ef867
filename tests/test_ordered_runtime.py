"""The ordered part at run time: failures in it, retries, may-depend reads, what bounds a run.

Real IPython shell, real LocalCluster with worker processes (the ``ip`` fixture).
"""

from __future__ import annotations

from conftest import run_ok
from IPython.utils.capture import capture_output

FLAKY = "bad = {3}\ndef f(i):\n    if i in bad:\n        raise ValueError(i)\n    return i\n"


def test_retry_rebuilds_what_the_ordered_part_changed(fresh):
    run_ok(fresh, FLAKY)
    cell = (
        "%%parallel_for --name r --progress none\nseq = []\ntotal = 0\nfor i in range(6):\n"
        "    total = total + f(i)\n    seq.append(total)\n"
    )
    run_ok(fresh, cell)
    assert fresh.user_ns["seq"] == [0, 1, 3, 7, 12] and fresh.user_ns["r"].counts.failed == 1
    run_ok(fresh, "bad = set()")
    with capture_output():
        run_ok(fresh, "%parallel_retry r --progress none")
    assert fresh.user_ns["total"] == 15
    assert fresh.user_ns["seq"] == [0, 1, 3, 6, 10, 15]  # as a clean serial run leaves it


def test_retry_prints_only_the_retried_items(fresh):
    run_ok(fresh, FLAKY)
    with capture_output() as first:
        run_ok(
            fresh,
            (
                "%%parallel_for --name r --progress none\n"
                "for i in range(5):\n"
                "    print('item', f(i))\n"
            ),
        )
    assert first.stdout.splitlines()[:4] == ["item 0", "item 1", "item 2", "item 4"]
    run_ok(fresh, "bad = set()")
    with capture_output() as again:
        run_ok(fresh, "%parallel_retry r --progress none")
    assert [line for line in again.stdout.splitlines() if line.startswith("item")] == ["item 3"]


def test_an_ordered_step_that_raises_fails_its_item_at_the_users_line(fresh):
    cell = (
        "%%parallel_for --name r --progress none\nbest = -1\nfor x in [5, 3, 7, 9]:\n"
        "    if x > best:\n        best = 100 // (x - 7)\n"
    )
    run_ok(fresh, cell)
    run = fresh.user_ns["r"]
    assert run.counts.failed == 1 and run.counts.done == 3
    failure = run.failures[0]
    assert failure.index == 2 and failure.error.type_name == "ZeroDivisionError"
    assert "line 5" in failure.traceback and "best = 100 // (x - 7)" in failure.traceback
    assert fresh.user_ns["best"] == 50  # 5 -> 50; 3 is not better; 7 failed; 9 -> 50 not > 50


def test_a_name_the_item_did_not_assign_fails_with_the_reason(fresh):
    run_ok(
        fresh,
        (
            "def load(p):\n"
            "    if p == 'b':\n"
            "        raise FileNotFoundError(p)\n"
            "    return p.upper()\n"
        ),
    )
    cell = (
        "%%parallel_for --name r --progress none\nout = []\nfor p in ['a', 'b', 'c']:\n    try:\n"
        "        data = load(p)\n    except FileNotFoundError:\n"
        "        print('missing', p, data)\n        continue\n    out.append(data)\n"
    )
    with capture_output():
        run_ok(fresh, cell)
    run = fresh.user_ns["r"]
    assert fresh.user_ns["out"] == ["A", "C"]
    failure = run.failures[0]
    assert failure.index == 1 and "line 7" in failure.traceback
    assert "previous item's" in failure.error.hint and "`data`" in failure.error.hint


def test_a_slow_ordered_part_is_named_as_what_bounds_the_run(fresh):
    run_ok(fresh, "import time\ndef step(state, x):\n    time.sleep(0.05)\n    return state + x\n")
    cell = (
        "%%parallel_for --name r --progress none\nstate = 0\nfor f in range(30):\n"
        "    x = f * f\n    state = step(state, len(str(x)))\n"
    )
    run_ok(fresh, cell)
    message = fresh.user_ns["r"].message
    assert "the ordered part (line 5)" in message and "bounded the run" in message


def test_show_marks_lines_and_hoisted_expressions(fresh):
    run_ok(
        fresh,
        (
            "import matplotlib\n"
            "matplotlib.use('Agg')\n"
            "import matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots()"
        ),
    )
    cell = (
        "%%parallel_for --show\ntotal = 0\nfor i in range(5):\n    y = i * i\n"
        "    total = total + len(str(y))\n    ax.plot([i, i + 1], [y, total])\n"
    )
    with capture_output() as shown:
        run_ok(fresh, cell)
    lines = shown.stdout.splitlines()
    assert any(line.startswith("#   4 P") and "y = i * i" in line for line in lines)
    assert any(
        line.startswith("#   5 O") and "<- computed on the worker: len(str(y))" in line
        for line in lines
    )
    assert any(line.startswith("#   6 O") and "ax.plot" in line for line in lines)
    assert "ordered step 0 (line 5)" in shown.stdout and "total = total + @dm_h0" in shown.stdout
