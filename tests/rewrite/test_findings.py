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
    tested = {p.values[1] for p in REFUSED} | {p.values[1] for p in WARNED}
    assert kinds == tested


@pytest.mark.parametrize(
    ("cell", "kinds", "refused"),
    [
        pytest.param(
            "for f in files:\n    state = model.update(state, f)\n",
            {"model": "object"},
            True,
            id="object method",
        ),
        pytest.param(
            "for f in files:\n    state = merge(state, f)\n",
            {"merge": "callable"},
            True,
            id="notebook function",
        ),
        pytest.param(
            "for f in files:\n    df = pd.concat([df, f])\n",
            {"pd": "module", "df": "data"},
            False,
            id="module function",
        ),
        pytest.param(
            "for f in files:\n    cnt[f] = cnt.get(f, 0) + 1\n",
            {"cnt": "data"},
            False,
            id="dict bookkeeping",
        ),
        pytest.param(
            "for f in files:\n    total = total + f\n    print(f, total)\n",
            {},
            False,
            id="builtin print",
        ),
        pytest.param(
            "for f in files:\n    if f not in seen:\n        seen.add(f)\n",
            {"seen": "data"},
            False,
            id="seen.add",
        ),
    ],
)
def test_only_real_work_in_a_recurrence_is_refused(cell, kinds, refused):
    """Nothing runs in parallel in any of these: bookkeeping is fine in the kernel, a call of
    notebook code that needs the previous item's value is a real recurrence."""
    if refused:
        with pytest.raises(UnsupportedLoopError) as info:
            rewrite_loop(cell, filename="<cell>", line_offset=1, kinds=kinds)
        assert info.value.findings[0].code == "DM009"
    else:
        plan = rewrite_loop(cell, filename="<cell>", line_offset=1, kinds=kinds)
        assert plan.steps  # it runs, with an ordered part


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


WARNED = [
    # (cell body, code, line, col, words the message must contain): the loop still runs
    pytest.param(
        "for f in files:\n    x = np.random.rand()\n",
        "DM017",
        3,
        8,
        "`np.random.rand(...)` draws from numpy.random's process-wide random state",
        id="np.random.rand",
    ),
    pytest.param(
        "import numpy\nfor f in files:\n    x = f + numpy.random.randint(0, 9, size=3)\n",
        "DM017",
        4,
        12,
        "`numpy.random.randint(...)`",
        id="numpy.random.randint",
    ),
    pytest.param(
        "for f in files:\n    if f:\n        pick = random.choice(f)\n",
        "DM017",
        4,
        15,
        "`random.choice(...)` draws from random's",
        id="random.choice",
    ),
    pytest.param(
        "for f in files:\n    noise = [random.random() for _ in f]\n",
        "DM017",
        3,
        13,
        "`random.random(...)`",
        id="random.random in a comprehension",
    ),
    pytest.param(
        "for f in files:\n    w = torch.rand(3, 3)\n", "DM017", 3, 8, "torch's", id="torch.rand"
    ),
]


@pytest.mark.parametrize(("cell", "code", "line", "col", "words"), WARNED)
def test_warning(cell, code, line, col, words):
    from dask_magic.errors import render_warnings

    plan = rewrite_loop(dedent(cell), filename="<cell>", line_offset=1)
    (finding,) = plan.warnings
    assert (finding.code, finding.lineno, finding.col) == (code, line, col)
    assert words in finding.message
    assert "default_rng([seed, i])" in finding.hint and "--seed N" in finding.hint
    rendered = render_warnings(plan.warnings, plan.source)
    assert rendered.startswith(f"dask-magic: warning: line {line}, column {col + 1}:")
    assert "^^^" in rendered and "fix: draw from a generator seeded per item" in rendered


NOT_WARNED = [
    # (cell body, what the notebook's names are, or None for the conventional meaning)
    pytest.param(
        "for i, f in enumerate(files):\n    rng = np.random.default_rng([3, i])\n"
        "    x = rng.random() + rng.integers(9)\n",
        None,
        id="generator seeded per item",
    ),
    pytest.param("for f in files:\n    x = gen.choice(f)\n", None, id="a generator's method"),
    pytest.param(
        "for f in files:\n    x = torch.rand(3, generator=g)\n", None, id="torch with generator"
    ),
    pytest.param(
        "for f in files:\n    np.random.seed(f)\n    x = np.random.rand()\n",
        None,
        id="seeded in the body",
    ),
    pytest.param(
        "for f in files:\n    random = make(f)\n    x = random.random()\n",
        None,
        id="a local named random",
    ),
    pytest.param(
        "for f in files:\n    x = random.random()\n",
        {"random": None},
        id="the notebook's random is a generator object",
    ),
    pytest.param(
        "for f in files:\n    x = np.random.rand()\n",
        {"np": "mylib"},
        id="np is another module",
    ),
]


@pytest.mark.parametrize(("cell", "origins"), NOT_WARNED)
def test_not_warned(cell, origins):
    plan = rewrite_loop(dedent(cell), filename="<cell>", line_offset=1, origins=origins)
    assert plan.warnings == ()


def test_names_imported_in_the_notebook_are_known_by_what_they_are():
    import random

    import numpy

    from dask_magic.rewrite.random_state import NamespaceOrigins

    namespace = {"choice": random.choice, "npr": numpy.random, "rng": random.Random(1)}
    cell = "for f in files:\n    a = choice(f)\n    b = npr.normal()\n    c = rng.random()\n"
    plan = rewrite_loop(cell, filename="<cell>", line_offset=1, origins=NamespaceOrigins(namespace))
    found = [(w.lineno, w.message.split("`")[1]) for w in plan.warnings]
    assert found == [(3, "choice(...)"), (4, "npr.normal(...)")]
