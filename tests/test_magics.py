"""``%%parallel_for`` and its companions in a real IPython shell on a real LocalCluster."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest
from conftest import run_ok, user_names
from IPython.core.error import UsageError

from dask_magic.engine import cluster
from dask_magic.engine.results import RunStatus


def magics(ip):
    return ip.magics_manager.registry["DaskMagics"]


def usage_error(ip, cell: str) -> str:
    result = ip.run_cell(cell)
    assert isinstance(result.error_in_exec, UsageError), (
        result.error_in_exec or result.error_before_exec
    )
    return str(result.error_in_exec)


FAILING_SETUP = """
items = list(range(100))
def parse(x):
    if x % 20 == 7:
        raise ValueError(f"bad record {x}")
    return x * 0.5
"""

FAILING_LOOP = """%%parallel_for --progress none
results = []
for x in items:
    print("reading", x)
    value = parse(x)
    results.append(value)
"""


def test_failing_items_are_reported_and_the_rest_finish(fresh):
    run_ok(fresh, FAILING_SETUP)
    run = run_ok(fresh, FAILING_LOOP)
    assert run.status is RunStatus.FAILED
    assert (run.counts.done, run.counts.failed, run.counts.total) == (95, 5, 100)
    assert fresh.user_ns["results"] == [x * 0.5 for x in range(100) if x % 20 != 7]
    failure = run.failures[0]
    assert failure.index == 7 and failure.item_repr == "7"
    assert failure.error.type_name == "ValueError" and failure.error.message == "bad record 7"
    assert failure.line == 5  # `value = parse(x)`: the magic line is line 1
    assert "reading 7" in failure.stdout
    text = failure.traceback
    assert "line 5, in <loop body>" in text and "value = parse(x)" in text
    assert 'raise ValueError(f"bad record {x}")' in text
    assert text.rstrip().endswith("ValueError: bad record 7")
    assert "distributed" not in text.replace("(", "").split("hidden")[-1]  # no dask frames shown


def test_a_fetched_final_value_changes_only_its_own_item(fresh):
    # items of one shape share their `bound` dict: fetching the final value replaces it
    run_ok(fresh, "items = list(range(8))")
    run = run_ok(
        fresh,
        "%%parallel_for --progress none\nfor x in items:\n    if x in (2, 3):\n"
        "        y = x * 10\n",
    )
    assert fresh.user_ns["y"] == 30 and fresh.user_ns["x"] == 7
    assert run.outcomes[3].bound["y"] == 30
    assert repr(run.outcomes[2].bound["y"]) == "STASHED"
    assert repr(run.outcomes[0].bound["x"]) == "STASHED"


def test_retry_after_a_fix_equals_a_clean_serial_run(fresh):
    run_ok(fresh, FAILING_SETUP)
    run_ok(fresh, FAILING_LOOP + "n = len(results)\n")
    assert fresh.user_ns["n"] == 95
    run_ok(fresh, "def parse(x):\n    return x * 0.5\n")
    fresh.run_line_magic("parallel_retry", "--progress none")
    run = magics(fresh).last_run
    assert run.status is RunStatus.FINISHED and run.counts.done == 100
    assert fresh.user_ns["results"] == [x * 0.5 for x in range(100)]
    assert fresh.user_ns["n"] == 100  # the statements after the loop ran again
    assert fresh.user_ns["value"] == 99 * 0.5 and fresh.user_ns["x"] == 99


def test_retry_with_nothing_to_do(fresh, capsys):
    run_ok(fresh, "items = [1, 2]")
    run_ok(fresh, "%%parallel_for --progress none\nout = []\nfor x in items:\n    out.append(x)\n")
    fresh.run_line_magic("parallel_retry", "")
    assert "nothing to retry" in capsys.readouterr().out


def test_on_error_raise_stops_with_the_item_traceback(fresh):
    run_ok(fresh, FAILING_SETUP)
    message = usage_error(
        fresh, FAILING_LOOP.replace("--progress none", "--progress none --on-error raise")
    )
    assert "failed:" in message and "ValueError: bad record" in message


def test_retries_rerun_flaky_items(fresh, tmp_path):
    run_ok(
        fresh, f"import pathlib\nmarks = pathlib.Path({str(tmp_path)!r})\nitems = list(range(6))"
    )
    cell = """%%parallel_for --progress none --retries 2
done = []
for x in items:
    mark = marks / f"{x}.seen"
    if not mark.exists():
        mark.touch()
        raise OSError("flaky, first attempt")
    done.append(x)
"""
    run = run_ok(fresh, cell)
    assert run.counts.done == 6 and fresh.user_ns["done"] == list(range(6))


def test_same_cluster_for_every_cell(fresh, capfd):
    run_ok(fresh, "items = list(range(4))")
    cell = "%%parallel_for --progress none\nout = []\nfor x in items:\n    out.append(x)\n"
    first = run_ok(fresh, cell).cluster.scheduler
    second = run_ok(fresh, cell.replace("none", "none --fresh")).cluster.scheduler
    assert first == second
    assert cluster.get_client().scheduler.address == first
    assert "already in use" not in capfd.readouterr().err


def _interrupt_once_items_are_done(shell, previous, done=2, deadline=120.0) -> None:
    """Ctrl-C the kernel once the new run has finished ``done`` items (a fixed delay could
    fire before the run starts on a loaded machine)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        run = magics(shell).last_run
        if run is not previous and run is not None:
            if sum(p.status == "done" for p in run.partial()) >= done:
                os.kill(os.getpid(), signal.SIGINT)
                return
        time.sleep(0.05)


def test_interrupt_cancels_the_rest_and_keeps_finished_items(fresh):
    run_ok(fresh, "import time\nitems = list(range(40))")
    cell = (
        "%%parallel_for --progress none\nout = []\nfor x in items:\n    time.sleep(0.25)\n"
        "    out.append(x)\n"
    )
    run_ok(
        fresh,
        "%%parallel_for --progress none\nwarm = []\nfor x in items[:2]:\n    warm.append(x)\n",
    )
    warm_run = magics(fresh).last_run
    watcher = threading.Thread(target=_interrupt_once_items_are_done, args=(fresh, warm_run))
    watcher.start()
    message = usage_error(fresh, cell)
    watcher.join()
    run = magics(fresh).last_run
    assert run.status is RunStatus.INTERRUPTED and "interrupted" in message
    counts = run.counts
    assert counts.done > 0 and counts.cancelled > 0
    assert counts.done + counts.failed + counts.cancelled == 40
    done = sorted(i for i, o in run.outcomes.items() if o.status == "done")
    assert fresh.user_ns["out"] == done  # finished items replayed in item order
    # the cluster is still usable, and the retry runs exactly the unfinished items
    fresh.run_line_magic("parallel_retry", "--progress none")
    assert fresh.user_ns["out"] == list(range(40))
    assert (
        run_ok(
            fresh, "%%parallel_for --progress none\nz = []\nfor x in items[:3]:\n    z.append(x)\n"
        ).counts.done
        == 3
    )


def test_refusal_through_the_magic_names_line_and_column(fresh):
    cell = "%%parallel_for\nstate = 0\nfor f in [1, 2]:\n    state = step(state, f)\n"
    message = usage_error(fresh, "def step(s, f):\n    return s + f\n" and cell)
    assert "cannot run this loop in parallel" in message
    assert "line 4, column 5: nothing in this loop can run in parallel" in message
    assert "`state` is read on line 4 and assigned on line 4" in message
    assert "    state = step(state, f)" in message and "fix:" in message


def test_syntax_error_is_one_line_with_the_cell_line(fresh):
    message = usage_error(fresh, "%%parallel_for\nfor f in [1, 2]:\n    x = (\n")
    assert message.startswith("line 3")


def test_misspelled_option_gets_a_suggestion(fresh):
    message = usage_error(fresh, "%%parallel_for --retrys 2\nfor f in [1]:\n    pass\n")
    assert "did you mean --retries?" in message


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("--batch 0", "--batch 0"),
        ("--batch many", "--batch many"),
        ("--workers 0", "--workers 0"),
        ("--retries -1", "--retries -1"),
        ("--on-error stop", "invalid choice"),
        ("--client nosuchname", "no variable `nosuchname`"),
    ],
)
def test_bad_option_values(fresh, line, words):
    assert words in usage_error(fresh, f"%%parallel_for {line}\nfor f in [1]:\n    pass\n")


def test_missing_accumulator_is_named(fresh):
    message = usage_error(fresh, "%%parallel_for\nfor f in [1]:\n    results.append(f)\n")
    assert "`results`" in message and "results = []" in message


def test_iterable_that_raises_is_reported_with_its_line(fresh):
    run_ok(fresh, "def files():\n    raise OSError('disk gone')\n")
    message = usage_error(fresh, "%%parallel_for\nfor f in files():\n    pass\n")
    assert "listing the loop's items (`files()`, line 2)" in message
    assert "OSError: disk gone" in message


def test_show_prints_the_generated_code_and_runs_nothing(fresh, capsys):
    run_ok(fresh, "import numpy as np\ntable = np.zeros(1_000_000)\nscale = 3")
    run_ok(
        fresh,
        "%%parallel_for --show\nresults = []\nfor f in [1, 2]:\n"
        "    results.append(f * scale + table[f])\n",
    )
    out = capsys.readouterr().out
    assert (
        "#   table: ndarray, 7.63 MiB: scattered once, re-used by later runs while unchanged" in out
    )
    assert "#   scale: int, 28 B: sent with the run's code" in out
    assert "def dask_magic_loop(@dm_item, @dm_rec):" in out
    assert "@dm_rec.call('results', (), 'append', (f * scale + table[f],))" in out
    assert "results" not in user_names(fresh.user_ns)


def test_name_binds_the_run_and_last_expression_is_the_value(fresh):
    value = run_ok(
        fresh,
        "%%parallel_for --name myrun --progress none\nout = []\nfor f in range(3):\n"
        "    out.append(f)\nlen(out)\n",
    )
    assert value == 3
    assert fresh.user_ns["myrun"].counts.done == 3
    assert repr(fresh.user_ns["myrun"]).startswith("<Run 'myrun' finished: 3 done, 0 failed of 3")


def test_serial_reruns_in_the_kernel(fresh):
    run_ok(fresh, "import os\npids = []")
    run_ok(
        fresh,
        "%%parallel_for --serial --progress none\nfor f in range(3):\n"
        "    pids.append(os.getpid())\n",
    )
    assert set(fresh.user_ns["pids"]) == {os.getpid()}


def test_rerun_here_raises_in_the_kernel_for_debugging(fresh):
    run_ok(fresh, FAILING_SETUP)
    run_ok(fresh, FAILING_LOOP)
    with pytest.raises(ValueError, match="bad record 7"):
        fresh.run_line_magic("parallel_retry", "--here 7")
    run_ok(fresh, "def parse(x):\n    return x * 0.5\n")
    fresh.run_line_magic("parallel_retry", "--here 7")
    run = magics(fresh).last_run
    assert run.counts.failed == 4
    assert fresh.user_ns["results"][7] == 3.5  # landed in item order, not appended


def test_text_progress_and_summary(fresh, capsys):
    run_ok(fresh, FAILING_SETUP)
    run_ok(fresh, FAILING_LOOP.replace("--progress none", "--progress text"))
    out = capsys.readouterr().out
    assert "95/100 done, 5 failed" in out
    assert "5 × ValueError at line 5" in out
    assert "%parallel_retry" in out


def test_dask_cluster_shows_the_cluster(fresh, capsys):
    run_ok(fresh, "%dask_cluster")
    out = capsys.readouterr().out
    assert "tcp://127.0.0.1:" in out
    assert re.search(r"\d+ workers?, \d+ threads?", out)  # an earlier test may have scaled it


def test_unload_removes_the_magics(ip):
    ip.run_line_magic("unload_ext", "dask_magic")
    try:
        assert "parallel_for" not in ip.magics_manager.magics["cell"]
    finally:
        ip.run_line_magic("load_ext", "dask_magic")
    assert "parallel_for" in ip.magics_manager.magics["cell"]


def test_dask_cluster_scale_restart_and_close(fresh, capsys):
    run_ok(fresh, "%dask_cluster --scale 1")
    assert "1 worker" in capsys.readouterr().out
    run_ok(fresh, "%dask_cluster --scale 2")
    run_ok(fresh, "%dask_cluster --restart")
    assert "2 workers" in capsys.readouterr().out
    before = cluster.get_client().scheduler.address
    run_ok(fresh, "%dask_cluster --close")
    assert "closed" in capsys.readouterr().out
    run = run_ok(
        fresh, "%%parallel_for --progress none\nout = []\nfor x in range(3):\n    out.append(x)\n"
    )
    assert run.counts.done == 3 and run.cluster.scheduler != before  # a fresh cluster on demand


def test_a_change_the_code_cannot_show_is_reported(fresh, capsys):
    run_ok(
        fresh,
        "class Model:\n    def __init__(self):\n        self.seen = []\n    def fit(self, x):\n"
        "        self.seen.append(x)\n"
        "model = Model()\nconfig = {'scale': 2}",
    )
    run_ok(
        fresh,
        "%%parallel_for --progress none\nout = []\nfor x in range(4):\n    model.fit(x)\n"
        "    out.append(x * config['scale'])\n",
    )
    err = capsys.readouterr().err
    assert "`model` was changed by the loop body on a worker" in err and "`config`" not in err
    assert fresh.user_ns["model"].seen == [] and fresh.user_ns["out"] == [0, 2, 4, 6]


def test_a_name_the_items_listing_rebinds_is_planned_afresh(fresh, capsys):
    """The plan is made once when nothing the rewrite read changed: a name the iterable's
    own call rebinds (here to a draw from the global random state) makes it again."""
    run_ok(
        fresh,
        "import random\ndef pick(s):\n    return s[0]\n"
        "def items():\n    global pick\n    pick = random.choice\n    return [1, 2]\nout = []\n",
    )
    capsys.readouterr()
    run_ok(
        fresh,
        "%%parallel_for --serial --progress none\nfor x in items():\n    out.append(pick([x]))\n",
    )
    assert fresh.user_ns["out"] == [1, 2]
    assert "`pick(...)` draws from random's process-wide random state" in capsys.readouterr().err


def test_plan_inputs_see_a_rebound_name_and_a_changed_kind():
    from dask_magic.kinds import PlanInputs

    first, other = object(), object()
    seen = PlanInputs({"a": "value"}, {"a": first})
    assert seen.same({"a": "value"}, {"a": first})
    assert not seen.same({"a": "value"}, {"a": other})  # rebound to another object
    assert not seen.same({"a": "module"}, {"a": first})  # another kind
    assert not seen.same({"a": "value"}, {})  # deleted


def test_the_stash_is_cleared_only_where_a_worker_may_hold_one(fresh, monkeypatch):
    from dask_magic.engine import final_values

    drops = []
    real = final_values._drop_everywhere
    monkeypatch.setattr(
        final_values, "_drop_everywhere", lambda c, key: drops.append(key) or real(c, key)
    )
    run_ok(fresh, "out = []")
    run_ok(fresh, "%%parallel_for --progress none\nfor x in [1]:\n    y = x + 1\n")
    assert fresh.user_ns["y"] == 2 and drops == []  # its only item's values came back inline
    run_ok(fresh, "%%parallel_for --progress none --batch 5\nfor x in range(10):\n    y = x\n")
    assert fresh.user_ns["y"] == 9 and len(drops) == 1  # the first batch's y stayed on a worker
