"""Differential tests of loops with an ordered part: the serial loop and ``%%parallel_for``
leave the same namespace, print the same output in the same order, draw the same figures and
write the same files.

Each case runs twice in the real IPython shell on the real LocalCluster (worker processes):
once as the plain cell, once under ``%%parallel_for``, each after a fresh namespace and the
same setup. Figures are compared by what was drawn (axes, titles, the data of every line,
bar heights), files by their bytes, output by its text (print) and its display data.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from textwrap import dedent

import pytest
from conftest import run_ok, user_names
from IPython.utils.capture import capture_output
from test_differential import same

COMMON = """
import csv, io, os, sys
import numpy as np
import pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.close("all")
"""

CASES = [
    (
        "running total printed",
        "items = list(range(12))",
        """
        total = 0
        for i in items:
            total = total + i * i
            print(i, total)
        """,
    ),
    (
        "f-string of a running total",
        "items = list(range(8))",
        """
        total = 0.0
        for i in items:
            total = total + i / 7
            print(f"{i}: {total:.3f}")
        """,
    ),
    (
        "best so far",
        "items = list(range(15))\ndef score(x):\n    return (x * 37) % 11",
        """
        best = -1
        best_item = None
        for f in items:
            s = score(f)
            if s > best:
                best = s
                best_item = f
        """,
    ),
    (
        "best so far, tuple assignment, score in the condition",
        "items = list(range(15))\ndef score(x):\n    return (x * 13) % 7",
        """
        best, best_f = -1, None
        for f in items:
            if score(f) > best:
                best, best_f = score(f), f
        """,
    ),
    (
        "count with get",
        "words = 'a b a c b a d'.split()",
        """
        cnt = {}
        for w in words:
            cnt[w] = cnt.get(w, 0) + 1
        """,
    ),
    (
        "pd.concat growth",
        "items = list(range(6))",
        """
        df = pd.DataFrame()
        for i in items:
            part = pd.DataFrame({"i": [i], "sq": [i * i]})
            df = pd.concat([df, part])
        """,
    ),
    (
        "np.append bootstrap",
        "items = list(range(10))\ndef draw(i):\n    return np.random.default_rng(i).normal()",
        """
        x = np.array([])
        for i in items:
            x = np.append(x, draw(i))
        """,
    ),
    (
        "seen / add de-duplication",
        "texts = ['a', 'b', 'a', 'c', 'b', 'd']",
        """
        seen = set()
        unique = []
        for t in texts:
            h = t.upper()
            if h not in seen:
                seen.add(h)
                unique.append(h)
        """,
    ),
    (
        "first-item initialisation",
        "items = [np.arange(3) * i for i in range(5)]",
        """
        acc = None
        for v in items:
            if acc is None:
                acc = v
            else:
                acc = acc + v
        """,
    ),
    (
        "pred = pred + model.predict(X)",
        (
            "class Model:\n"
            "    def __init__(self, k):\n"
            "        self.k = k\n"
            "    def predict(self, X):\n"
            "        return X * self.k\n"
            "models = [Model(k) for k in range(5)]\n"
            "X = np.arange(4.0)"
        ),
        """
        pred = np.zeros(4)
        for m in models:
            pred = pred + m.predict(X)
        pred = pred / len(models)
        """,
    ),
    (
        "log = log + [row]",
        "items = list(range(7))",
        """
        log = []
        for i in items:
            row = {"i": i, "half": i / 2}
            log = log + [row]
        """,
    ),
    (
        "state = step(state, heavy(x))",
        (
            "items = list(range(9))\n"
            "def heavy(x):\n"
            "    return sum(range(x * 1000))\n"
            "def step(s, v):\n"
            "    return s * 0.5 + v"
        ),
        """
        state = 0.0
        for x in items:
            state = step(state, heavy(x))
        """,
    ),
    (
        "total += x and a read of it",
        "items = list(range(10))",
        """
        total = 0
        marks = []
        for x in items:
            total += x
            marks.append(total)
        """,
    ),
    (
        "print per item",
        "items = list(range(6))",
        """
        for i in items:
            print("item", i)
        """,
    ),
    (
        "several prints per item, end=''",
        "items = list('abcde')",
        """
        for c in items:
            print("<", end="")
            print(c.upper(), end="")
            print(">")
        """,
    ),
    (
        "print around an ordered statement",
        "items = list(range(6))",
        """
        total = 0
        for i in items:
            print("before", i)
            total = total + i
            print("after", i, total)
        """,
    ),
    (
        "display per item",
        "items = list(range(4))",
        """
        for i in items:
            display({"item": i, "square": i * i})
        """,
    ),
    (
        "display(df.head())",
        "items = list(range(3))",
        """
        for i in items:
            frame = pd.DataFrame({"a": range(i + 2)})
            display(frame.head(2))
        """,
    ),
    (
        "try/except printing a name from the try",
        "items = list(range(7))",
        """
        results = []
        for i in items:
            try:
                path = f"file-{i}.csv"
                v = 10 / (i % 3)
            except ZeroDivisionError:
                print("bad", path)
                continue
            results.append(v)
        """,
    ),
    (
        "plot into an outer ax",
        "items = list(range(6))\nfig, ax = plt.subplots()",
        """
        for i in items:
            y = [i * i, (i + 1) ** 2]
            ax.plot([i, i + 1], y)
        ax.set_title("squares")
        """,
    ),
    (
        "plt.subplot grid",
        "items = list(range(4))",
        """
        plt.figure()
        for i in items:
            plt.subplot(2, 2, i + 1)
            plt.plot(range(i + 2), [v * i for v in range(i + 2)])
            plt.title(f"panel {i}")
        """,
    ),
    (
        "plt.plot on the current figure",
        "items = list(range(5))",
        """
        plt.figure()
        for i in items:
            plt.plot([0, 1], [i, 2 * i], label=str(i))
        legend = plt.legend()
        """,
    ),
    (
        "df.plot(ax=ax)",
        "items = list(range(3))\nfig, ax = plt.subplots()",
        """
        for i in items:
            frame = pd.DataFrame({"y": [i, i + 1, i * 3]})
            frame.plot(ax=ax)
        """,
    ),
    (
        "zip over an array of axes",
        "items = list(range(4))\nfig, axes = plt.subplots(2, 2)",
        """
        for ax, i in zip(axes.flat, items):
            ax.bar(["a", "b"], [i, i + 1])
            ax.set_title(str(i))
        """,
    ),
    (
        "axes picked in the body",
        "items = list(range(4))\nfig, axes = plt.subplots(2, 2)",
        """
        for i in items:
            ax = axes.flat[i]
            ax.plot([0, i])
        """,
    ),
    (
        "csv writer on an open notebook file",
        (
            "items = list(range(8))\n"
            "out_file = open(os.path.join(OUT, 'rows.csv'), 'w', newline='')\n"
            "writer = csv.writer(out_file)"
        ),
        """
        for i in items:
            n = len(str(i ** 10))
            writer.writerow([i, n])
        out_file.close()
        """,
    ),
    (
        "write through an open notebook file",
        "items = list(range(10))\nfh = open(os.path.join(OUT, 'log.txt'), 'w')",
        """
        for i in items:
            fh.write(f"{i}:{i * i}\\n")
        fh.close()
        """,
    ),
    (
        "print(..., file=fh)",
        "items = list('xyz')\nfh = open(os.path.join(OUT, 'p.txt'), 'w')",
        """
        for c in items:
            print(c * 3, file=fh)
        fh.close()
        """,
    ),
    (
        "a file per item, written by the body",
        "items = list(range(5))",
        """
        for i in items:
            pd.Series([i] * i).to_csv(os.path.join(OUT, f"item-{i}.txt"))
        """,
    ),
    (
        "os.remove in the body",
        (
            "items = list(range(4))\n"
            "for i in items:\n"
            "    open(os.path.join(OUT, f'tmp-{i}'), 'w').close()"
        ),
        """
        removed = []
        for i in items:
            path = os.path.join(OUT, f"tmp-{i}")
            if i % 2:
                os.remove(path)
                removed.append(path)
        """,
    ),
    (
        "np.sort in the body",
        "items = list(range(5))\na = np.array([3, 1, 2])",
        """
        firsts = []
        for i in items:
            s = np.sort(a * (i - 2))
            firsts.append(int(s[0]))
        """,
    ),
    (
        "manual tqdm bar",
        (
            "from tqdm import tqdm\n"
            "items = list(range(10))\n"
            "bar = tqdm(total=len(items), file=io.StringIO())"
        ),
        """
        squares = []
        for i in items:
            squares.append(i * i)
            bar.update(1)
        done = bar.n
        """,
    ),
    (
        "attribute, then use",
        (
            "class Svc:\n"
            "    C = 1.0\n"
            "    def score(self, X):\n"
            "        return float(np.sum(X) * self.C)\n"
            "svc = Svc()\n"
            "X = np.arange(5.0)\n"
            "Cs = [0.1, 1.0, 10.0]"
        ),
        """
        scores = []
        for C in Cs:
            svc.C = C
            scores.append(svc.score(X))
        """,
    ),
    (
        "per-column encoding",
        (
            "df = pd.DataFrame({'a': list('xyzx'), 'b': list('ppqq'), 'n': [1, 2, 3, 4]})\n"
            "cols = ['a', 'b']"
        ),
        """
        for c in cols:
            df[c] = df[c].astype("category").cat.codes
        """,
    ),
    (
        "own-key dict update",
        "d = {k: list(range(k)) for k in range(6)}",
        """
        for k in list(d):
            d[k] = sum(d[k])
        """,
    ),
    (
        "own-key with a repeated key: ordered instead",
        "d = {'a': 1, 'b': 2}\nkeys = ['a', 'b', 'a']",
        """
        for k in keys:
            d[k] = d[k] * 3
        """,
    ),
    (
        "attribute carried from item to item",
        "class Counter:\n    count = 0\nc = Counter()\nitems = list(range(5))",
        """
        for i in items:
            c.count = c.count + i
        """,
    ),
    (
        "d.pop in the body",
        "d = {i: str(i) for i in range(8)}\nitems = [1, 3, 5]",
        """
        popped = []
        for k in items:
            popped.append(d.pop(k))
        """,
    ),
    (
        "todo.remove",
        "texts = ['a', '', 'b', '', 'c']",
        """
        todo = list(range(len(texts)))
        for i, t in enumerate(texts):
            if not t:
                todo.remove(i)
        """,
    ),
    (
        "append used as a value",
        "items = list(range(4))",
        """
        acc = []
        for i in items:
            y = acc.append(i * 2)
        """,
    ),
    (
        "chained store on notebook objects",
        "items = list(range(4))",
        """
        a, b = {}, {}
        for i in items:
            a[i] = b[i] = i * i
        """,
    ),
    (
        "addition inside a nested function",
        "items = list(range(5))",
        """
        out = []
        for i in items:
            def add(v):
                out.append(v)
            add(i * 10)
        """,
    ),
    (
        "append inside a comprehension",
        "items = list(range(4))",
        """
        out = []
        for i in items:
            [out.append(v) for v in range(i)]
        """,
    ),
    (
        "continue decided by the ordered part",
        "items = [3, 1, 4, 1, 5, 9, 2, 6]",
        """
        best = 0
        worse = []
        for x in items:
            if x > best:
                best = x
                continue
            worse.append(x)
        """,
    ),
    (
        "carried through an inner loop",
        "rows = [[1, 4, 9], [16, 25], [36]]",
        """
        prev = None
        diffs = []
        for row in rows:
            for v in row:
                if prev is not None:
                    diffs.append(v - prev)
                prev = v
        """,
    ),
    (
        "assigned under an if, read after",
        "items = list(range(8))",
        """
        kind = "none"
        labels = []
        for i in items:
            if i % 3 == 0:
                kind = f"third-{i}"
            labels.append(kind)
        """,
    ),
    (
        "extend with a generator",
        "items = list(range(5))",
        """
        out = []
        for i in items:
            out.extend(x * 2 for x in range(i))
        """,
    ),
    (
        "sort after each append",
        "items = [5, 3, 8, 1]",
        """
        ranked = []
        for x in items:
            ranked.append(x)
            ranked.sort()
        """,
    ),
    (
        "continue on the length of the results",
        "items = list(range(10))",
        """
        results = []
        for i in items:
            if len(results) >= 4:
                continue
            results.append(i * i)
        """,
    ),
    (
        "counter with a heavy part",
        "items = list(range(6))\ndef heavy(x):\n    return sum(range(x * 100))",
        """
        n = 0
        out = {}
        for x in items:
            n = n + 1
            out[x] = heavy(x) * n
        """,
    ),
]


def _figures() -> list:
    """What every open figure shows: axes, titles, lines' data, bars, legends."""
    import matplotlib.pyplot as plt

    state = []
    for number in plt.get_fignums():
        for ax in plt.figure(number).axes:
            lines = [
                (list(map(float, line.get_xdata())), list(map(float, line.get_ydata())))
                for line in ax.lines
            ]
            bars = [round(p.get_height(), 9) for p in ax.patches]
            legend = [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
            state.append((number, ax.get_title(), lines, bars, legend))
    return state


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _comparable(ns: dict) -> dict:
    """User names, with objects that cannot be compared by value told by what they hold."""
    found = {}
    for name, value in user_names(ns).items():
        module = type(value).__module__ or ""
        if module.startswith(("matplotlib", "_io", "io", "_csv", "tqdm")) or name == "OUT":
            found[name] = getattr(value, "n", getattr(value, "name", type(value).__name__))
        elif getattr(getattr(value, "dtype", None), "kind", None) == "O" and "Axes" in repr(value):
            found[name] = ("axes", getattr(value, "shape", None))
        else:
            found[name] = _by_value(value)
    return found


def _by_value(value):
    """Instances of notebook classes compare by their attributes (lists of them, too)."""
    if isinstance(value, list):
        return [_by_value(v) for v in value]
    if (
        type(value).__module__ == "__main__"
        and hasattr(value, "__dict__")
        and not isinstance(value, type)
    ):
        return (type(value).__qualname__, {k: _by_value(v) for k, v in vars(value).items()})
    return value


def _after(ip, setup: str, cell: str, folder: Path) -> tuple:
    ip.reset(new_session=False)
    for old in folder.iterdir():
        old.unlink()
    run_ok(ip, COMMON + f"OUT = {str(folder)!r}\n" + setup)
    with capture_output() as captured:
        run_ok(ip, cell)
    shown = [dict(o.data) for o in captured.outputs]
    # the magic's own cell value (the Run, in a terminal) is not the loop's output
    printed = "".join(line for line in captured.stdout.splitlines(True) if "<Run " not in line)
    return _comparable(ip.user_ns), printed, shown, _figures(), _files(folder)


@pytest.fixture(scope="module")
def out_folder():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@pytest.mark.parametrize(
    ("setup", "loop"), [pytest.param(setup, loop, id=name) for name, setup, loop in CASES]
)
def test_parallel_matches_the_serial_loop(ip, setup, loop, out_folder):
    loop = dedent(loop).strip("\n") + "\n"
    serial = _after(ip, setup, loop, out_folder)
    parallel = _after(ip, setup, "%%parallel_for --progress none\n" + loop, out_folder)
    names, out, shown, figures, files = serial
    p_names, p_out, p_shown, p_figures, p_files = parallel
    assert sorted(names) == sorted(p_names), "different names bound"
    for name in names:
        assert same(names[name], p_names[name]), (
            f"{name}: serial {names[name]!r} != parallel {p_names[name]!r}"
        )
    assert p_out == out, "printed output differs"
    assert p_shown == shown, "displayed output differs"
    assert p_figures == figures, "figures differ"
    assert p_files == files, "files differ"


def test_enough_ordered_shapes_are_checked():
    assert len(CASES) >= 40
