"""Every refused loop shape: its code, message, line and column (pyflakes-style table).

Lines are the user's: the ``%%parallel_for`` line is line 1, so the first line of the cell
body is line 2. Columns are 1-based in messages (``column 5``) and 0-based in `Finding.col`.
"""

from __future__ import annotations

from textwrap import dedent

import pytest

from dask_magic.errors import UnsupportedLoopError
from dask_magic.rewrite import rewrite_loop

REFUSED = [
    # (cell body, code, line, col, words the message must contain)
    pytest.param("x = 1\nprint(x)\n", "DM001", 2, 0, "no top-level `for`", id="no loop"),
    pytest.param(
        "if True:\n    for f in files:\n        pass\n",
        "DM001",
        2,
        0,
        "no top-level",
        id="loop inside if",
    ),
    pytest.param(
        "for a in x:\n    pass\nfor b in y:\n    pass\n",
        "DM002",
        4,
        0,
        "2 top-level `for` loops (lines 2, 4)",
        id="two loops",
    ),
    pytest.param("async for f in files:\n    pass\n", "DM003", 2, 0, "`async for`", id="async for"),
    pytest.param(
        "for f in files:\n    if f:\n        break\n", "DM004", 4, 8, "`break`", id="break"
    ),
    pytest.param("for f in files:\n    return f\n", "DM005", 3, 4, "`return`", id="return"),
    pytest.param("for f in files:\n    yield f\n", "DM006", 3, 4, "`yield`", id="yield"),
    pytest.param("for f in files:\n    x = await g(f)\n", "DM006", 3, 8, "`await`", id="await"),
    pytest.param(
        "for f in files:\n    global total\n    total = f\n",
        "DM007",
        3,
        4,
        "`global total`",
        id="global",
    ),
    pytest.param(
        "for f in files:\n    def g():\n        nonlocal f\n",
        "DM007",
        4,
        8,
        "`nonlocal f`",
        id="nonlocal",
    ),
    pytest.param(
        "for f in files:\n    def g():\n        global z\n        z = 1\n",
        "DM007",
        4,
        8,
        "`global z`",
        id="global in nested def",
    ),
    pytest.param(
        "for f in files:\n    state = step(state, f)\n",
        "DM009",
        3,
        4,
        "`state` is read on line 3 and assigned on line 3, for the next item",
        id="state = step(state, f)",
    ),
    pytest.param(
        "acc = None\nfor f in files:\n    acc = merge(acc, f)\n    report(acc)\n",
        "DM009",
        4,
        4,
        "nothing in this loop can run in parallel",
        id="recurrence, then a call on its value",
    ),
    pytest.param(
        "for f in files:\n    if better(f, best):\n        best = f\n",
        "DM009",
        3,
        4,
        "`best` is read on line 3 and assigned on line 4",
        id="recurrence in a condition",
    ),
    pytest.param(
        "for f in files:\n    del config\n", "DM010", 3, 4, "`del config`", id="del outer name"
    ),
    pytest.param(
        "for f in files:\n    get_ipython().system('ls')\n",
        "DM012",
        3,
        4,
        "IPython magics",
        id="shell escape",
    ),
]


@pytest.mark.parametrize(("cell", "code", "line", "col", "words"), REFUSED)
def test_refusal(cell, code, line, col, words):
    with pytest.raises(UnsupportedLoopError) as info:
        rewrite_loop(dedent(cell), filename="<cell>", line_offset=1)
    finding = info.value.findings[0]
    assert (finding.code, finding.lineno, finding.col) == (code, line, col), info.value.render()
    assert words in finding.message
    assert finding.hint  # every refusal says how to fix it
    rendered = info.value.render()
    assert f"line {line}, column {col + 1}:" in rendered
    assert "fix:" in rendered


def test_every_catalog_entry_is_tested():
    from dask_magic.rewrite import findings

    kinds = {k.code for k in vars(findings).values() if isinstance(k, findings.Kind)}
    tested = {p.values[1] for p in REFUSED}
    assert kinds == tested


def test_error_is_a_syntax_error_with_a_caret():
    with pytest.raises(SyntaxError) as info:
        rewrite_loop("for f in files:\n    break\n", filename="<cell>", line_offset=1)
    assert info.value.lineno == 3
    assert info.value.text == "    break"
    assert "    ^^^^^" in info.value.render()


ACCEPTED = [
    pytest.param("for f in files:\n    for g in f:\n        break\n", id="break of an inner loop"),
    pytest.param("for f in files:\n    continue\n", id="continue"),
    pytest.param(
        "for f in files:\n    def g():\n        return 1\n    x = g()\n",
        id="return inside a nested function",
    ),
    pytest.param("for f in files:\n    gen = (y for y in f)\n", id="generator expression"),
    pytest.param("for f in files:\n    total = 0\n    total += f\n", id="local total"),
    pytest.param(
        "for f in files:\n    model.predict(f)\n",
        id="method call on outer object (runtime warning only)",
    ),
    pytest.param(
        "for f in files:\n    async def g():\n        await h()\n", id="await in nested async def"
    ),
    pytest.param(
        "for f in files:\n    def g(results):\n        results.append(1)\n",
        id="parameter shadows an accumulator name",
    ),
    pytest.param(
        "for f in files:\n    prev = None\n    for row in f:\n        if prev:\n            pass\n        prev = row\n",
        id="initialised before the inner loop",
    ),
    pytest.param(
        "for f in files:\n    try:\n        df = read(f)\n    except ValueError:\n        continue\n    use(df)\n",
        id="assigned in try, except continues",
    ),
]


@pytest.mark.parametrize("cell", ACCEPTED)
def test_accepted(cell):
    plan = rewrite_loop(dedent(cell), filename="<cell>", line_offset=1)
    assert plan.body.body[0].name == "dask_magic_loop"
