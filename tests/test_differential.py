"""Differential tests: the serial loop and ``%%parallel_for`` leave the same namespace.

Each case is a setup cell and a loop cell. The loop runs once as plain Python and once under
``%%parallel_for`` on the real LocalCluster (worker processes), each time after a fresh
namespace and the same setup; afterwards every user name must hold an equal value (floats
bit-for-bit, DataFrames with ``.equals``, notebook functions and classes by name).
"""

from __future__ import annotations

import math
import struct
import types
from textwrap import dedent

import numpy as np
import pandas as pd
import pytest
from conftest import run_ok, user_names
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CASES = [
    pytest.param(
        "files = list(range(30))",
        """
        results = []
        for f in files:
            results.append(f * 2)
        """,
        id="append",
    ),
    pytest.param(
        "files = ['a.csv', 'b.csv', 'c.csv']",
        """
        out = {}
        for i, f in enumerate(files):
            out[i] = f.upper()
        """,
        id="enumerate tuple target + setitem",
    ),
    pytest.param(
        "xs = list(range(10)); ys = list('abcdefghij')",
        """
        pairs = []
        for a, b in zip(xs, ys):
            pairs.append((a, b))
        """,
        id="zip",
    ),
    pytest.param(
        "xs = list(range(6)); ys = [x * 10 for x in xs]",
        """
        seen = []
        for i, (a, b) in enumerate(zip(xs, ys)):
            seen.append(i * a + b)
        """,
        id="nested tuple target",
    ),
    pytest.param(
        "files = list(range(12))",
        """
        results = []
        for f in files:
            s = 0
            for k in range(f):
                s += k
            results.append(s)
        """,
        id="nested loop with local sum",
    ),
    pytest.param(
        "files = list(range(10)); features = [1, 2, 3]",
        """
        results = []
        for f in files:
            feats = [f * k for k in features]
            results.append(sum(feats))
        """,
        id="comprehension in body",
    ),
    pytest.param(
        "files = list(range(20))",
        """
        results = []
        for f in files:
            if f % 3 == 0:
                continue
            results.append(f)
        """,
        id="continue",
    ),
    pytest.param(
        "files = [1, 0, 2, 0, 4]",
        """
        results = []
        for f in files:
            try:
                v = 10 / f
            except ZeroDivisionError:
                continue
            results.append(v)
        """,
        id="continue in except",
    ),
    pytest.param(
        "files = list(range(8))",
        """
        acc = []
        for f in files:
            acc.extend([f, -f])
        """,
        id="extend",
    ),
    pytest.param(
        "files = list(range(25))",
        """
        seen = set()
        for f in files:
            seen.add(f % 5)
        """,
        id="set add",
    ),
    pytest.param(
        "files = list(range(6))",
        """
        d = {}
        for f in files:
            d.update({f: str(f)})
        """,
        id="dict update",
    ),
    pytest.param(
        "files = list(range(6))",
        """
        d = {}
        for f in files:
            d.update(last=f)
        """,
        id="dict update keywords",
    ),
    pytest.param(
        "files = list(range(15))",
        """
        table = {}
        for f in files:
            table[f] = f ** 2
        """,
        id="setitem",
    ),
    pytest.param(
        "files = list(range(1, 200))",
        """
        total = 0.0
        for f in files:
            total += 1 / f
        """,
        id="float sum bit-identical",
    ),
    pytest.param(
        "files = list(range(1, 50))",
        """
        prod = 1.0
        for f in files:
            prod *= 1 + 1 / f
        """,
        id="float product",
    ),
    pytest.param(
        "files = list(range(40))",
        """
        counts = {0: 0, 1: 0, 2: 0}
        for f in files:
            counts[f % 3] += 1
        """,
        id="counts[k] += 1",
    ),
    pytest.param(
        "from collections import defaultdict\nfiles = list(range(30))",
        """
        groups = defaultdict(list)
        for f in files:
            groups[f % 4].append(f)
        """,
        id="defaultdict groups append",
    ),
    pytest.param(
        "from collections import Counter\nwords = 'a b a c b a d'.split()",
        """
        c = Counter()
        for w in words:
            c[w] += 1
        """,
        id="Counter",
    ),
    pytest.param(
        "def square(x):\n    return x * x\nfiles = list(range(10))",
        """
        results = []
        for f in files:
            results.append(square(f))
        """,
        id="notebook function",
    ),
    pytest.param(
        dedent("""
        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y
            def __eq__(self, other):
                return (self.x, self.y) == (other.x, other.y)
        files = list(range(5))
        """),
        """
        points = []
        for f in files:
            points.append(Point(f, f * f))
        """,
        id="notebook class",
    ),
    pytest.param(
        "def make_adder(n):\n    return lambda x: x + n\nadd3 = make_adder(3)\n"
        "files = list(range(7))",
        """
        results = []
        for f in files:
            results.append(add3(f))
        """,
        id="closure",
    ),
    pytest.param(
        "files = list(range(10))\nn = 2",
        """
        scale = n * 10
        results = []
        for f in files:
            results.append(f * scale)
        summary = sum(results)
        top = max(results)
        """,
        id="statements before and after",
    ),
    pytest.param(
        "files = list(range(5))",
        """
        results = []
        for f in files:
            results.append(f)
        else:
            finished = True
        """,
        id="loop else",
    ),
    pytest.param(
        "files = list(range(9))",
        """
        for f in files:
            y = f * 3
            z = str(y)
        """,
        id="last values of body names",
    ),
    pytest.param(
        "files = list(range(9))",
        """
        for f in files:
            if f % 2:
                odd = f
        """,
        id="conditional binding keeps last binder",
    ),
    pytest.param(
        "files = [1, 2, 0, 3]\ne = 'before'",
        """
        errs = []
        for f in files:
            try:
                x = 1 / f
            except ZeroDivisionError as e:
                errs.append(f)
        """,
        id="except-as unbinds",
    ),
    pytest.param(
        "files = list(range(4))",
        """
        out = []
        for f in files:
            tmp = f * 2
            out.append(tmp)
            del tmp
        """,
        id="del of a body name",
    ),
    pytest.param(
        "files = list(range(10))",
        """
        results = []
        for f in files:
            if (sq := f * f) > 10:
                results.append(sq)
        """,
        id="walrus",
    ),
    pytest.param(
        "import contextlib\nfiles = [2, 1, 0, 4]",
        """
        results = []
        for f in files:
            with contextlib.suppress(ZeroDivisionError):
                results.append(8 / f)
        """,
        id="with statement",
    ),
    pytest.param(
        "files = list(range(5))",
        """
        lines = []
        for f in files:
            lines.append(f"item {f:03d}: {f / 3:.2f}")
        """,
        id="f-strings",
    ),
    pytest.param(
        "files = [1, 4, 9]",
        """
        roots = []
        for f in files:
            import math
            roots.append(math.sqrt(f))
        """,
        id="import in body",
    ),
    pytest.param(
        "files = [1, 'a', (2, 3), None]",
        """
        kinds = []
        for f in files:
            match f:
                case int(n):
                    kinds.append(('int', n))
                case (a, b):
                    kinds.append(('pair', a + b))
                case _:
                    kinds.append(('other', repr(f)))
        """,
        id="match statement",
    ),
    pytest.param(
        "files = list(range(6))",
        """
        results = []
        for f in files:
            k = f
            steps = 0
            while k > 1:
                k //= 2
                steps += 1
            results.append(steps)
        """,
        id="while in body",
    ),
    pytest.param(
        "",
        """
        results = []
        for f in (x * 2 for x in range(10)):
            results.append(f + 1)
        """,
        id="generator iterable consumed once",
    ),
    pytest.param(
        "d = {'a': 1, 'b': 2, 'c': 3}",
        """
        inverted = {}
        for k, v in d.items():
            inverted[v] = k
        """,
        id="dict items",
    ),
    pytest.param(
        "files = list(range(5))",
        """
        text = ''
        tup = ()
        for f in files:
            text += str(f)
            tup += (f,)
        """,
        id="immutable += (str, tuple)",
    ),
    pytest.param(
        "files = list(range(6))",
        """
        arr = [0] * 6
        for f in files:
            arr[f:f + 1] = [f * f]
        """,
        id="slice assignment",
    ),
    pytest.param(
        "from types import SimpleNamespace\nfiles = list(range(5))",
        """
        stats = SimpleNamespace(values=[])
        for f in files:
            stats.values.append(f)
        """,
        id="attribute path accumulator",
    ),
    pytest.param(
        "files = list(range(5))",
        """
        nested = {'a': [], 'b': []}
        for f in files:
            nested['a' if f % 2 else 'b'].extend([f, f])
        """,
        id="nested subscript extend",
    ),
    pytest.param(
        "import numpy as np\nfiles = list(range(5))",
        """
        acc = np.zeros(3)
        for f in files:
            acc += np.arange(3) * f
        """,
        id="numpy in-place accumulate",
    ),
    pytest.param(
        "import pandas as pd\nfiles = list(range(4))",
        """
        frames = []
        for f in files:
            frames.append(pd.DataFrame({'a': [f, f + 1], 'b': ['x', 'y']}))
        df = pd.concat(frames, ignore_index=True)
        """,
        id="DataFrames concatenated after the loop",
    ),
    pytest.param(
        "data = [(1, 3), (2, 1), (3, 2)]\nfiles = [1, -1]",
        """
        results = []
        for f in files:
            results.append(sorted(data, key=lambda r: r[1] * f))
        """,
        id="lambda key in body",
    ),
    pytest.param(
        "files = list(range(3))",
        """
        results = []
        for f in files:
            print('processing', f)
            results.append(f)
        """,
        id="print in body",
    ),
    pytest.param(
        "",
        """
        results = []
        for f in []:
            results.append(f)
        """,
        id="empty iterable",
    ),
    pytest.param(
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nfiles = list(range(12))",
        """
        results = []
        for f in files:
            results.append(fib(f))
        """,
        id="recursive notebook function",
    ),
    pytest.param(
        "FACTOR = 3\nfiles = list(range(5))",
        """
        results = []
        for f in files:
            results.append(f * FACTOR)
        """,
        id="notebook constant",
    ),
    pytest.param(
        "files = list(range(5))",
        """
        acc = []
        for f in files:
            acc.extend([*range(f)])
        """,
        id="starred extend",
    ),
    pytest.param(
        "files = list(range(10))",
        """
        evens, odds = [], []
        total = 0
        for f in files:
            if f % 2:
                odds.append(f)
            else:
                evens.append(f)
            total += f
        """,
        id="several accumulators",
    ),
    pytest.param(
        "files = ['x1', 'y22', 'z333']",
        """
        lengths = {}
        for name in files:
            key = name[0]
            value = len(name)
            lengths[key] = value
        """,
        id="string items",
    ),
    pytest.param(
        "files = list(range(10))",
        """
        results = []
        for f in files:
            label = 'big' if f > 5 else 'small'
            results.append(label)
        """,
        id="conditional expression",
    ),
]


def same(a, b) -> bool:
    """Equality that is strict where it matters (float bits, dtypes) and lenient for code."""
    if isinstance(a, (types.FunctionType, type)):
        return type(a) is type(b) and a.__qualname__ == b.__qualname__
    if type(a).__qualname__ != type(b).__qualname__:  # a re-run setup redefines notebook classes
        return False
    if isinstance(a, float):
        return struct.pack("d", a) == struct.pack("d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, types.SimpleNamespace):
        return same(vars(a), vars(b))
    return a == b


def namespace_after(ip, setup: str, cell: str) -> dict:
    ip.reset(new_session=False)
    if setup:
        run_ok(ip, setup)
    run_ok(ip, cell)
    return user_names(ip.user_ns)


def assert_same_namespace(serial: dict, parallel: dict) -> None:
    assert sorted(serial) == sorted(parallel), "different names bound"
    for name in serial:
        assert same(serial[name], parallel[name]), (
            f"{name}: serial {serial[name]!r} != parallel {parallel[name]!r}"
        )


@pytest.mark.parametrize(("setup", "loop"), CASES)
def test_parallel_leaves_the_serial_namespace(ip, setup, loop):
    loop = dedent(loop).strip("\n") + "\n"
    serial = namespace_after(ip, setup, loop)
    parallel = namespace_after(ip, setup, "%%parallel_for --progress none\n" + loop)
    parallel.pop("Run", None)
    assert_same_namespace(serial, parallel)


def test_serial_option_leaves_the_same_namespace(ip):
    loop = (
        "results = []\ntotal = 0\nfor f in files:\n    y = f * 2\n    results.append(y)\n"
        "    total += y\n"
    )
    serial = namespace_after(ip, "files = list(range(10))", loop)
    in_kernel = namespace_after(
        ip, "files = list(range(10))", "%%parallel_for --serial --progress none\n" + loop
    )
    assert_same_namespace(serial, in_kernel)


def test_enough_shapes_are_checked():
    assert len(CASES) >= 40


# -- generated bodies ---------------------------------------------------------------------------

_STATEMENTS = [
    "a = x * {k}",
    "b = x + {k}",
    "if x % {m} == 0:\n    continue",
    "results.append(x * {k})",
    "total += x * {k} / 7",
    "counts[x % {m}] += 1",
    "if x > {k}:\n    c = x - {k}",
    "seen.add(x % {m})",
    "table[x % {m}] = x",
    "parts = [x * i for i in range({m})]\nresults.append(sum(parts))",
    "try:\n    q = {k} / (x % {m})\nexcept ZeroDivisionError:\n    q = -1",
    # the ordered part: carried names, reads of what the loop adds to, printing
    "best = max(best, (x * {k}) % {m})",
    "if x % {m} == 0:\n    last = x",
    "lst = lst + [x * {k}]",
    "if len(results) > {k}:\n    continue",
    "print('item', x, {k})",
]
_SETUP = "items = list(range({n}))"
_PRELUDE = (
    "results = []\ntotal = 0.0\ncounts = {{i: 0 for i in range(10)}}\nseen = set()\ntable = {{}}\n"
    "best = -1\nlast = None\nlst = []\n"
)

bodies = st.lists(
    st.tuples(st.sampled_from(_STATEMENTS), st.integers(1, 9), st.integers(2, 9)),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, n=st.integers(0, 40))
def test_generated_bodies(ip, body, n):
    lines = []
    for template, k, m in body:
        lines += template.format(k=k, m=m).splitlines()
    loop = (
        _PRELUDE.format() + "for x in items:\n" + "\n".join("    " + line for line in lines) + "\n"
    )
    setup = _SETUP.format(n=n)
    serial = namespace_after(ip, setup, loop)
    parallel = namespace_after(ip, setup, "%%parallel_for --progress none\n" + loop)
    assert_same_namespace(serial, parallel)
