"""Draws from the global random state: warned about, and made repeatable by ``--seed N``.

A real IPython shell on the real local cluster (worker processes): the numbers come from the
workers' own `random` and `numpy.random` states.
"""

from __future__ import annotations

import pytest
from conftest import run_ok

from dask_magic import parallel_for

np = pytest.importorskip("numpy")

SETUP = "import random\nimport numpy as np\nitems = list(range(12))\n"


def draws(ip, options: str) -> list:
    """The numbers a loop that draws from both global states gives under ``options``."""
    run_ok(
        ip,
        f"%%parallel_for --progress none {options}\nout = []\nfor i in items:\n"
        "    out.append((i, random.random(), float(np.random.rand())))\n",
    )
    return ip.user_ns["out"]


def test_a_draw_from_global_state_is_warned_about_with_its_line_and_fix(fresh, capsys) -> None:
    run_ok(fresh, SETUP)
    capsys.readouterr()
    draws(fresh, "--batch 3")
    err = capsys.readouterr().err
    assert (
        "dask-magic: warning: line 4, column 20: `random.random(...)` draws from random's "
        "process-wide random state" in err
    )
    assert "line 4, column 43: `np.random.rand(...)` draws from numpy.random's" in err
    assert err.count("fix: draw from a generator seeded per item") == 2 and "--seed N" in err


def test_with_seed_the_numbers_repeat_whatever_the_batching(fresh, capsys) -> None:
    run_ok(fresh, SETUP)
    capsys.readouterr()
    first = draws(fresh, "--seed 3 --batch 1")
    assert "warning" not in capsys.readouterr().err  # --seed is the answer to the warning
    again = draws(fresh, "--seed 3 --batch 1")
    batched = draws(fresh, "--seed 3 --batch 5")
    serial = draws(fresh, "--seed 3 --serial")
    assert first == again == batched == serial
    assert [i for i, *_ in first] == list(range(12))
    assert len({r for _, r, _ in first}) == 12 and len({x for *_, x in first}) == 12
    other = draws(fresh, "--seed 4 --batch 1")
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_the_plain_api_takes_a_seed_too(ip) -> None:
    def draw(i):
        import random

        return i, random.random()

    one = parallel_for(draw, range(8), seed=11, batch=1).results
    four = parallel_for(draw, range(8), seed=11, batch=4).results
    assert one == four and [i for i, _ in one] == list(range(8))
