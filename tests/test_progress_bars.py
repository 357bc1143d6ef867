"""A tqdm bar around the loop's iterable is taken off: no racing bar, the same results.

Real tqdm, a real IPython shell and the real local cluster; the bar's text would go to the
cell's stderr, which capsys captures.
"""

from __future__ import annotations

import io

import pytest
from conftest import run_ok

from dask_magic import progress_bars

tqdm = pytest.importorskip("tqdm")

SETUP = """
import tqdm
import tqdm.auto
import tqdm.notebook
from tqdm import tqdm as bar, trange
files = ["a.csv", "b.csv", "c.csv", "d.csv"]
"""

BAR_TEXT = ("%|", "it/s", "/4 [", "/5 [")


@pytest.mark.parametrize(
    ("iterable", "expected"),
    [
        pytest.param("bar(files)", ["A.CSV", "B.CSV", "C.CSV", "D.CSV"], id="tqdm(files)"),
        pytest.param(
            "tqdm.tqdm(files, desc='reading')", ["A.CSV", "B.CSV", "C.CSV", "D.CSV"], id="tqdm.tqdm"
        ),
        pytest.param(
            "tqdm.auto.tqdm(files)", ["A.CSV", "B.CSV", "C.CSV", "D.CSV"], id="tqdm.auto.tqdm"
        ),
        pytest.param(
            "tqdm.notebook.tqdm(files)",
            ["A.CSV", "B.CSV", "C.CSV", "D.CSV"],
            id="tqdm.notebook.tqdm",
        ),
        pytest.param(
            "bar(iterable=files, total=4)",
            ["A.CSV", "B.CSV", "C.CSV", "D.CSV"],
            id="keyword iterable",
        ),
        pytest.param(
            "bar(f for f in files if f != 'a.csv')", ["B.CSV", "C.CSV", "D.CSV"], id="generator"
        ),
        pytest.param("trange(5)", [0, 1, 2, 3, 4], id="trange(n)"),
        pytest.param("tqdm.auto.trange(1, 9, 2, desc='x')", [1, 3, 5, 7], id="tqdm.auto.trange"),
        pytest.param("tqdm.notebook.tnrange(3)", [0, 1, 2], id="tnrange"),
    ],
)
def test_the_loop_runs_over_what_the_bar_wraps_and_no_bar_is_drawn(
    fresh, capsys: pytest.CaptureFixture, iterable: str, expected: list
) -> None:
    run_ok(fresh, SETUP)
    capsys.readouterr()
    run = run_ok(
        fresh,
        f"%%parallel_for --progress none\nout = []\nfor f in {iterable}:\n"
        "    out.append(f.upper() if isinstance(f, str) else f * 1)\n",
    )
    captured = capsys.readouterr()
    assert fresh.user_ns["out"] == expected and run.counts.done == len(expected)
    assert not any(part in captured.err + captured.out for part in BAR_TEXT), captured


def test_a_bar_made_before_the_loop_is_closed_without_its_last_frame(
    fresh, capsys: pytest.CaptureFixture
) -> None:
    run_ok(fresh, SETUP)
    run_ok(
        fresh,
        "%%parallel_for --progress none\nprogress = bar(files)\nout = []\nfor f in progress:\n"
        "    out.append(f)\n",
    )
    err = capsys.readouterr().err
    assert fresh.user_ns["out"] == ["a.csv", "b.csv", "c.csv", "d.csv"]
    assert "0/4" in err and "4/4" not in err  # its first frame was the user's own statement
    assert fresh.user_ns["progress"].disable  # closed


def test_a_subclass_of_the_users_is_unwrapped_after_it_is_made() -> None:
    class Quiet(tqdm.tqdm):
        pass

    sink = io.StringIO()
    wrapped = Quiet(range(3), file=sink, mininterval=0)
    assert progress_bars.is_bar(wrapped)
    assert progress_bars.unwrap_bar(wrapped) == range(3)
    assert "3/3" not in sink.getvalue() and wrapped.n == 0  # never iterated


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([1, 2], id="list"),
        pytest.param(range(2), id="range"),
        pytest.param(type("tqdm", (), {"iterable": [1]})(), id="a class named tqdm elsewhere"),
    ],
)
def test_anything_else_is_listed_as_it_is(value: object) -> None:
    assert not progress_bars.is_bar(value)
    assert progress_bars.unwrap_bar(value) is value


def test_an_error_in_the_wrapped_iterable_is_the_users(fresh) -> None:
    run_ok(fresh, SETUP)
    result = fresh.run_cell(
        "%%parallel_for --progress none\nout = []\nfor f in bar(missing_name):\n    out.append(f)\n"
    )
    message = str(result.error_in_exec)
    assert "NameError" in message and "missing_name" in message and "line 3" in message
