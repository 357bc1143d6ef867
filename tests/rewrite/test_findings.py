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
        "seen = set()\nfor f in files:\n    if f not in seen:\n        seen.add(f)\n",
        "DM008",
        4,
        16,
        "`seen` is added to on line 5 and read on line 4",
        id="reading an accumulator",
    ),
    pytest.param(
        "for f in files:\n    total += f * total\n",
        "DM008",
        3,
        17,
        "`total` is added to",
        id="accumulator read in its own update",
    ),
    pytest.param(
        "for f in files:\n    count = count + 1\n",
        "DM009",
        3,
        12,
        "`count` is read on line 3 before this item assigns it",
        id="count = count + 1",
    ),
    pytest.param(
        "for part in parts:\n    df = pd.concat([df, part])\n",
        "DM009",
        3,
        20,
        "`df` is read",
        id="df = pd.concat([df, part])",
    ),
    pytest.param(
        "for f in files:\n    if f:\n        last = f\n    print(last)\n",
        "DM009",
        5,
        10,
        "`last` is read on line 5",
        id="conditionally assigned then read",
    ),
    pytest.param(
        "for f in files:\n    try:\n        df = read(f)\n    except ValueError:\n        pass\n"
        "    use(df)\n",
        "DM009",
        7,
        8,
        "`df` is read on line 7",
        id="assigned in try, read after a swallowed error",
    ),
    pytest.param(
        "for f in files:\n    for row in f:\n        if prev:\n            pass\n"
        "        prev = row\n",
        "DM009",
        4,
        11,
        "`prev`",
        id="carried through a nested loop",
    ),
    pytest.param(
        "for f in files:\n    del config\n", "DM010", 3, 4, "`del config`", id="del outer name"
    ),
    pytest.param(
        "for f in files:\n    model.fitted = True\n",
        "DM011",
        3,
        4,
        "`model.fitted = ...`",
        id="attribute assignment",
    ),
    pytest.param(
        "for f in files:\n    model.n += 1\n",
        "DM011",
        3,
        4,
        "model.n += ...",
        id="attribute augmented assignment",
    ),
    pytest.param(
        "for f in files:\n    del cache[f]\n", "DM011", 3, 8, "`del cache[f]`", id="del outer item"
    ),
    pytest.param(
        "for f in files:\n    get_ipython().system('ls')\n",
        "DM012",
        3,
        4,
        "IPython magics",
        id="shell escape",
    ),
    pytest.param(
        "for f in files:\n    x = results.append(f)\n",
        "DM013",
        3,
        8,
        "`results.append(...)` is used as a value",
        id="accumulate as a value",
    ),
    pytest.param(
        "for f in files:\n    queue.pop()\n", "DM014", 3, 4, "`queue.pop()`", id="in-place method"
    ),
    pytest.param("for f in files:\n    data.sort()\n", "DM014", 3, 4, "`data.sort()`", id="sort"),
    pytest.param(
        "for f in files:\n    def g(x):\n        results.append(x)\n    g(f)\n",
        "DM015",
        4,
        8,
        "inside a nested function",
        id="add in nested function",
    ),
    pytest.param(
        "for f in files:\n    a[f] = b[f] = 1\n",
        "DM016",
        3,
        4,
        "together with other targets",
        id="chained assignment",
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
        "for f in files:\n    prev = None\n    for row in f:\n        if prev:\n            pass\n"
        "        prev = row\n",
        id="initialised before the inner loop",
    ),
    pytest.param(
        "for f in files:\n    try:\n        df = read(f)\n    except ValueError:\n"
        "        continue\n    use(df)\n",
        id="assigned in try, except continues",
    ),
]


@pytest.mark.parametrize("cell", ACCEPTED)
def test_accepted(cell):
    plan = rewrite_loop(dedent(cell), filename="<cell>", line_offset=1)
    assert plan.body.body[0].name == "dask_magic_loop"
