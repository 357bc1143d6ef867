"""The worker side, run in-process: per-item capture, errors as data, what travels back."""

from __future__ import annotations

import sys
import threading
import warnings

import cloudpickle
import pytest

from dask_magic.engine import execute, worker
from dask_magic.engine.results import STASHED
from dask_magic.rewrite import rewrite_loop


def run_cell(
    cell: str, items, env=None, *, last_index=None, stash_key=None, serialize=False, retries=0
):
    plan = rewrite_loop(cell, filename="<cell>", line_offset=1)
    job = execute.make_job({"kind": "loop", "code": plan.body_code(), "env": env or {}})
    pairs = list(enumerate(items))
    last = pairs[-1][0] if last_index is None else last_index
    out = worker.run_batch(
        job.token, job.blob, {}, pairs, last, stash_key, "w1", retries, serialize
    )
    return cloudpickle.loads(out) if serialize else out


def test_stdout_stderr_and_warnings_per_item():
    cell = (
        "for x in items:\n    print('out', x)\n    print('err', x, file=sys.stderr)\n"
        "    warnings.warn(f'w{x}')\n"
    )
    a, b = run_cell(cell, [1, 2], {"sys": sys, "warnings": warnings})
    assert (a.stdout, a.stderr) == ("out 1\n", "err 1\n")
    assert (b.stdout, b.stderr) == ("out 2\n", "err 2\n")
    assert "UserWarning: w1" in a.warnings[0]


def test_ten_megabytes_of_output_are_capped():
    (outcome,) = run_cell("for x in items:\n    print('y' * 10_000_000)\n", [0])
    assert len(outcome.stdout) < 70_000
    assert "characters of output dropped" in outcome.stdout


def test_threads_do_not_mix_their_output():
    cell = (
        "import time\nfor x in items:\n    for i in range(50):\n        print(x)\n"
        "        time.sleep(0.0005)\n"
    )
    results = {}

    def go(tag):
        results[tag] = run_cell(cell, [tag])[0].stdout

    threads = [threading.Thread(target=go, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results["a"].split()) == {"a"} and set(results["b"].split()) == {"b"}


def test_failure_keeps_frames_and_message_and_no_ops():
    (outcome,) = run_cell(
        "out = []\nfor x in items:\n    out.append(x)\n    raise ValueError('no')\n", [1]
    )
    assert outcome.status == "failed" and not outcome.ops
    assert outcome.error.summary == "ValueError: no"
    user = [f for f in outcome.error.frames if not f.internal]
    assert (user[-1].filename, user[-1].lineno, user[-1].name) == ("<cell>", 5, "<loop body>")
    assert isinstance(outcome.error.exception, ValueError)


NEEDS_ARGS = """
for x in items:
    class NeedsArgs(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}/{b}")
    raise NeedsArgs(1, 2)
"""
UNPICKLABLE = """
for x in items:
    class Locked(Exception):
        def __reduce__(self):
            raise TypeError("not today")
    raise Locked("locked")
"""


@pytest.mark.parametrize(
    ("cell", "summary"),
    [(NEEDS_ARGS, "NeedsArgs: 1/2"), (UNPICKLABLE, "Locked: locked")],
    ids=["init needs arguments", "cannot pickle"],
)
def test_exceptions_that_do_not_survive_pickling_arrive_as_text(cell, summary):
    (outcome,) = run_cell(cell, [0], serialize=True)
    assert outcome.status == "failed"
    assert outcome.error.summary == summary
    assert outcome.error.exception is None


def test_unpicklable_contribution_fails_only_that_item():
    cell = "out = []\nfor x in items:\n    out.append(threading.Lock() if x == 1 else x)\n"
    outcomes = run_cell(cell, [0, 1, 2], {"threading": threading}, serialize=True)
    assert [o.status for o in outcomes] == ["done", "failed", "done"]
    assert (
        "cannot be sent back" in outcomes[1].error.message and "`out`" in outcomes[1].error.message
    )


def test_bound_values_are_stashed_except_for_the_last_item():
    cell = "for x in items:\n    y = x * 10\n"
    outcomes = run_cell(cell, [0, 1, 2], stash_key="run-1")
    assert outcomes[0].bound == {"x": STASHED, "y": STASHED}
    assert outcomes[2].bound == {"x": 2, "y": 20}
    assert worker.fetch_stash("run-1", {"y": 1}) == {"y": 10}
    assert worker.fetch_stash("run-1", {"y": 1}) == {}  # fetching clears the run's stash


def test_unbinding_is_reported():
    cell = (
        "for x in items:\n    try:\n        1 / x\n    except ZeroDivisionError as e:\n"
        "        pass\n"
    )
    zero, one = run_cell(cell, [0, 1])
    assert zero.deleted == {"e"} and one.deleted == frozenset()


def test_retries_run_a_failing_item_again():
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("try again")
        return "ok"

    env = {"flaky": flaky}
    (outcome,) = run_cell(
        "got = []\nfor x in items:\n    got.append(flaky())\n", [0], env, retries=2
    )
    assert outcome.status == "done"
    (outcome,) = run_cell(
        "got = []\nfor x in items:\n    got.append(flaky())\n", [0], env, retries=0
    )
    assert outcome.status == "done"  # the bundle's own copy of `attempts` already has 3 entries


def test_keyboard_interrupt_is_not_an_item_failure():
    with pytest.raises(KeyboardInterrupt):
        run_cell("for x in items:\n    raise KeyboardInterrupt\n", [0])


def test_code_objects_keep_the_cell_filename_through_pickling():
    def helper():
        return 1

    helper.__code__ = helper.__code__.replace(co_filename="<ipython-input-9-abc>")
    loaded = cloudpickle.loads(execute.dumps_keeping_filenames({"f": helper}))
    assert loaded["f"].__code__.co_filename == "<ipython-input-9-abc>"


def test_warnings_outside_items_still_reach_the_original_handler():
    run_cell("for x in items:\n    pass\n", [0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("outside", stacklevel=1)
    assert [str(w.message) for w in caught] == ["outside"]
