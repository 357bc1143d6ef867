"""In-place changes the code cannot show, of any size, reported before the results are used.

A real IPython shell on the real local cluster: the 50 MB objects are scattered to the
worker processes, and the change happens to the workers' copies only.
"""

from __future__ import annotations

import pytest
from conftest import run_ok

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

SETUP = """
import numpy as np
import pandas as pd
class Model:
    def __init__(self):
        self.weights = np.zeros(50 * 2**20 // 8)
    def fit(self, x):
        self.weights += x
    def score(self, x):
        return float(self.weights[x])
big = np.zeros(50 * 2**20 // 8)
model = Model()
frame = pd.DataFrame({"a": np.arange(2_000_000.0)})
frame["b"] = frame["a"] * 2
"""


def run_loop(ip, body: str, over: str = "range(4)", target: str = "x") -> None:
    run_ok(ip, f"%%parallel_for --progress none\nout = []\nfor {target} in {over}:\n{body}")


def test_a_big_array_changed_by_a_method_call_is_reported(fresh, capsys) -> None:
    run_ok(fresh, SETUP)
    capsys.readouterr()
    run_loop(fresh, "    big.fill(x)\n    out.append(x)\n")
    err = capsys.readouterr().err
    assert "`big` was changed by the loop body on a worker (line 4: `big.fill(x)`)" in err
    assert "Return values instead" in err
    assert not fresh.user_ns["big"].any() and fresh.user_ns["out"] == [0, 1, 2, 3]


def test_a_big_model_changed_by_fit_is_reported(fresh, capsys) -> None:
    run_ok(fresh, SETUP)
    capsys.readouterr()
    run_loop(fresh, "    model.fit(1.0)\n    out.append(model.score(x))\n")
    err = capsys.readouterr().err
    assert "`model` was changed by the loop body on a worker (line 4: `model.fit(1.0)`)" in err
    assert "`big`" not in err and "`frame`" not in err


def test_items_changed_in_place_are_reported_by_index_and_value(fresh, capsys) -> None:
    run_ok(fresh, "dicts = [{'a': i} for i in range(8)]\nrows = [[i] for i in range(3)]")
    capsys.readouterr()
    run_loop(fresh, "    d['seen'] = True\n    out.append(d['a'])\n", over="dicts", target="d")
    err = capsys.readouterr().err
    assert (
        "item 0 ({'a': 0}), item 1 ({'a': 1}), item 2 ({'a': 2}), item 3 ({'a': 3}), "
        "item 4 ({'a': 4}) and 3 more were changed by the loop body on a worker "
        "(line 4: `d['seen'] = True`)"
    ) in err
    assert fresh.user_ns["dicts"][0] == {"a": 0}  # the notebook's items are unchanged
    run_ok(
        fresh,
        "%%parallel_for --progress none\nsizes = []\nfor row in rows:\n    row.append(0)\n"
        "    sizes.append(len(row))\n",
    )
    err = capsys.readouterr().err
    assert "item 0 ([0]), item 1 ([1]), item 2 ([2]) were changed by the loop body" in err
    assert "(line 4: `row.append(0)`)" in err


def test_big_objects_only_read_are_never_reported(fresh, capsys) -> None:
    run_ok(fresh, SETUP + "dicts = [{'a': i} for i in range(6)]")
    body = (
        "    total = float(big[x]) + model.score(x) + float(frame['a'].iloc[x])\n"
        "    total += float(frame.values[x].sum()) + len(frame.describe())\n"
        "    out.append(total + dicts[x]['a'])\n"
    )
    capsys.readouterr()
    run_loop(fresh, body, over="range(6)")
    run_loop(fresh, body, over="range(6)")  # the second run re-uses the scattered copies
    run_loop(fresh, "    out.append(d['a'] + len(d))\n", over="dicts", target="d")
    err = capsys.readouterr().err
    assert "was changed" not in err and "were changed" not in err, err
