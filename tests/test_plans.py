"""A cell run again unchanged keeps its plan; anything its rewrite read that changed makes
a new one. The cache itself on a plain namespace, then through the magic in a real shell."""

from __future__ import annotations

import random

import pytest
from conftest import run_ok
from IPython.core.error import UsageError

from dask_magic.kinds import cell_kinds
from dask_magic.plans import PlanCache

CELL = "out = []\nfor x in items:\n    out.append(f(x))\n"
RAW = "%%parallel_for\n" + CELL


def _plan(cache: PlanCache, ns: dict, filename: str = "<cell-1>", cell: str = CELL):
    return cache.plan(cell, filename, "%%parallel_for\n" + cell, cell_kinds(cell, ns), ns)


def _ns(**names: object) -> dict:
    return {"items": [1, 2], "f": abs, **names}


def test_the_same_cell_again_keeps_its_plan_under_the_new_filename() -> None:
    cache, ns = PlanCache(), _ns()
    first = _plan(cache, ns, "<cell-1>")
    again = _plan(cache, ns, "<cell-1>")
    assert again is first
    later = _plan(cache, ns, "<cell-7>")
    assert later.body is first.body  # not rewritten
    assert later.filename == "<cell-7>" and first.filename == "<cell-1>"
    assert later.body_code().co_filename == "<cell-7>"  # its tracebacks name the new cell
    assert first.body_code().co_filename == "<cell-1>"


def test_a_name_of_another_kind_makes_a_new_plan() -> None:
    cache = PlanCache()
    first = _plan(cache, _ns())
    # `f` a plotting module now: what runs in the ordered part may differ
    other = _plan(cache, _ns(f=pytest))
    assert other.body is not first.body


def test_a_name_bound_to_the_global_random_state_makes_a_new_plan_with_its_warning() -> None:
    cache = PlanCache()
    cell = "out = []\nfor x in items:\n    out.append(draw())\n"
    plain = _plan(cache, _ns(draw=lambda: 4), cell=cell)
    assert not plain.warnings
    drawing = _plan(cache, _ns(draw=random.random), cell=cell)
    assert drawing.warnings  # the same kind (a callable), another answer to "where from"


def test_other_text_or_options_make_a_new_plan() -> None:
    cache, ns = PlanCache(), _ns()
    first = _plan(cache, ns)
    assert _plan(cache, ns, cell=CELL + "# a comment\n").body is not first.body
    shown = cache.plan(CELL, "<c>", "%%parallel_for --seed 1\n" + CELL, cell_kinds(CELL, ns), ns)
    assert shown.body is not first.body and shown.source.startswith("%%parallel_for --seed 1")


def test_a_refusal_is_raised_every_time() -> None:
    cache, ns = PlanCache(), _ns()
    cell = "out = []\nfor x in items:\n    if x > 1:\n        break\n    out.append(x)\n"
    for _ in range(2):
        with pytest.raises(UsageError, match="cannot run this loop in parallel"):
            _plan(cache, ns, cell=cell)


def test_only_the_last_cells_are_kept() -> None:
    cache, ns = PlanCache(size=2), _ns()
    first = _plan(cache, ns)
    _plan(cache, ns, cell=CELL + "# 2\n")
    _plan(cache, ns, cell=CELL + "# 3\n")
    assert _plan(cache, ns).body is not first.body  # evicted, made again


def test_the_key_keeps_no_notebook_object_alive() -> None:
    import gc
    import weakref

    class Big:
        pass

    big = Big()
    cache = PlanCache()
    _plan(cache, _ns(f=big))
    ref = weakref.ref(big)
    del big
    gc.collect()
    assert ref() is None


def test_a_rerun_cell_reports_its_failures_at_its_own_cell(fresh):
    run_ok(fresh, "def f(x):\n    if x == 2:\n        raise ValueError('two')\n    return x")
    run_ok(fresh, "items = [1, 2, 3]")
    cell = "%%parallel_for --progress none\nout = []\nfor x in items:\n    out.append(f(x))\n"
    runs = []
    for _ in range(2):
        result = fresh.run_cell(cell, store_history=True)  # each run its own In[n]
        assert result.success, result.error_in_exec
        runs.append((result.execution_count, result.result))
    assert fresh.user_ns["out"] == [1, 3]
    for number, run in runs:
        text = run.failures[0].traceback
        assert f"Cell In[{number}], line 4" in text and "out.append(f(x))" in text
    assert runs[0][0] != runs[1][0]
