"""The journal in a real IPython shell on the real LocalCluster: what runs again, and why.

Each item appends its name to a log file, so a test counts the items that really ran. Each
test has its own journal (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import sys

import pytest
from conftest import run_ok, user_names

from dask_magic.ui import html, text

CELL = """%%parallel_for --progress none {flags}
out = {{}}
total = 0
for f in files:
    with open(log, "a") as fh:  # count what runs
        fh.write(f + "\\n")
    n = len(open(f).read())
    v = g(n) * scale
    out[f] = v
    total += v
    print(f, v)
"""

SETUP = """
files = {files!r}
log = {log!r}
scale = 3
def helper(x):
    return x * 2
def g(x):
    return helper(x) + 1
"""


@pytest.fixture
def shell(fresh, tmp_path):
    files = []
    for n in range(6):
        path = tmp_path / f"in{n}.txt"
        path.write_text("x" * (n + 1))
        files.append(str(path))
    log = tmp_path / "log"
    log.write_text("")
    run_ok(fresh, SETUP.format(files=files, log=str(log)))
    fresh.journal_log = log
    return fresh


def _ran(shell, cell: str, capfd) -> tuple[list[str], object, str]:
    """Run ``cell``; the items that really ran (from the log), the run, what it printed."""
    before = shell.journal_log.read_text().splitlines()
    capfd.readouterr()
    run = run_ok(shell, cell)
    printed = capfd.readouterr().out
    after = shell.journal_log.read_text().splitlines()
    return sorted(after[len(before) :]), run, printed


def _serial(shell, cell: str) -> dict:
    """The names the plain loop leaves (run on a copy of the namespace, log restored)."""
    plain = cell.split("\n", 1)[1]
    ns = dict(shell.user_ns)
    saved = shell.journal_log.read_text()
    exec(plain, ns)
    shell.journal_log.write_text(saved)
    return {k: ns[k] for k in ("out", "total", "v", "n", "f")}


def _names(shell) -> dict:
    return {k: shell.user_ns[k] for k in ("out", "total", "v", "n", "f")}


def test_same_cell_twice_restores_everything(shell, capfd):
    cell = CELL.format(flags="")
    ran, first, printed = _ran(shell, cell, capfd)
    assert len(ran) == 6 and first.counts.restored == 0
    names = user_names(shell.user_ns).copy()
    ran, second, again = _ran(shell, cell, capfd)
    assert ran == []  # nothing ran: every item came from the journal
    assert second.counts.restored == 6 and second.counts.done == 6
    assert "6 restored from the journal" in repr(second)
    assert "6 restored from the journal" in text.summary_text(second.snapshot())
    assert "restored from the journal" in html.status_html(second.snapshot())
    assert again.replace(repr(second), "") == printed.replace(repr(first), "")
    now = user_names(shell.user_ns)
    assert {k: v for k, v in now.items() if k != "_"} == {
        k: v for k, v in names.items() if k != "_"
    }
    assert _names(shell) == _serial(shell, cell)
    assert second.cluster is None  # no cluster was needed for a pass with nothing to run


def _modify(shell, path: str) -> None:
    with open(path, "a") as fh:
        fh.write("more")
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))


EDITS = [
    pytest.param(
        lambda s, c: (c.replace("# count what runs", "# a new comment"), []), id="a comment"
    ),
    pytest.param(lambda s, c: (run_ok(s, "unrelated = 42") or c, []), id="an unrelated cell"),
    pytest.param(
        lambda s, c: (_modify(s, s.user_ns["files"][2]) or c, [2]), id="one input file modified"
    ),
    pytest.param(lambda s, c: (run_ok(s, "scale = 4") or c, range(6)), id="a value the body reads"),
    pytest.param(
        lambda s, c: (run_ok(s, "def helper(x):\n    return x * 5") or c, range(6)),
        id="a notebook function called through another",
    ),
    pytest.param(
        lambda s, c: (run_ok(s, "def g(x):\n    return helper(x) + 2") or c, range(6)),
        id="a notebook function the body calls",
    ),
    pytest.param(
        lambda s, c: (c.replace("g(n) * scale", "g(n) * scale + 1"), range(6)), id="the body"
    ),
]


@pytest.mark.parametrize("edit", EDITS)
def test_edit_runs_exactly_the_items_it_could_change(shell, capfd, edit):
    cell = CELL.format(flags="")
    _ran(shell, cell, capfd)
    cell, expected = edit(shell, cell)
    files = shell.user_ns["files"]
    ran, run, _ = _ran(shell, cell, capfd)
    assert ran == sorted(files[i] for i in expected)
    assert run.counts.restored == 6 - len(ran)
    assert _names(shell) == _serial(shell, cell)


LOCAL_CELL = """%%parallel_for --progress none --serial
out = []
for x in items:
    open(log, "a").write(f"{x}\\n")
    out.append(jhelpers.twice(x))
"""


def test_editing_a_local_module_runs_the_items_again(fresh, tmp_path, monkeypatch):
    # a module next to the notebook (its folder is the kernel's working directory); --serial
    # keeps the body in the kernel, which imports it from there as the notebook does
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "jhelpers.py"
    module.write_text("def twice(x):\n    return 2 * x\n")
    log = tmp_path / "log"
    run_ok(fresh, f"import jhelpers\nlog = {str(log)!r}\nitems = list(range(4))")
    try:
        run_ok(fresh, LOCAL_CELL)
        log.write_text("")
        assert run_ok(fresh, LOCAL_CELL).counts.restored == 4 and log.read_text() == ""
        module.write_text("def twice(x):\n    # a new comment\n    return 3 * x\n")
        run_ok(fresh, "import importlib\nimportlib.reload(jhelpers)")
        run = run_ok(fresh, LOCAL_CELL)
        assert log.read_text().split() == ["0", "1", "2", "3"] and run.counts.restored == 0
        assert fresh.user_ns["out"] == [0, 3, 6, 9]
        assert run.explain(0) == "code changed (module jhelpers.py)"
    finally:
        sys.modules.pop("jhelpers", None)


def test_why_says_why_each_item_runs(shell, capfd):
    run_ok(shell, "files = files[:4]")
    _ran(shell, CELL.format(flags=""), capfd)
    run_ok(shell, "files = files + [files[0].replace('in0', 'in5')]")
    _modify(shell, shell.user_ns["files"][1])
    capfd.readouterr()
    run = run_ok(shell, CELL.format(flags="--why"))
    err = capfd.readouterr().err
    assert "item 1 (" in err and "runs: input changed (the file it names)" in err
    assert "item 4 (" in err and "runs: new" in err
    assert "item 0 (" not in err  # restored: it does not run
    assert run.explain(0) == "restored from the journal"
    assert run.explain(4) == "new"
    run_ok(shell, "scale = 5")
    run = run_ok(shell, CELL.format(flags=""))
    assert run.explain(0) == "input changed (a value it reads from the notebook: scale)"
    # a notebook function the body reaches through another one: that one is named
    run_ok(shell, "def helper(x):\n    return x * 4")
    run = run_ok(shell, CELL.format(flags=""))
    assert run.explain(0) == "code changed (notebook function helper)"
    run = run_ok(shell, CELL.format(flags="").replace("* scale", "* scale * 1"))
    assert run.explain(0) == "code changed"
    run = run_ok(shell, CELL.format(flags="--fresh"))
    assert run.explain(0) == "journal off (--fresh)" and run.counts.restored == 0


def test_failed_items_run_again_and_the_result_is_the_serial_one(fresh, tmp_path, capfd):
    flag = tmp_path / "broken"
    flag.write_text("")
    log = tmp_path / "log"
    run_ok(fresh, f"import os\nflag = {str(flag)!r}\nlog = {str(log)!r}\nitems = list(range(8))")
    cell = (
        "%%parallel_for --progress none\nres = []\nfor x in items:\n"
        "    open(log, 'a').write(f'{x}\\n')\n"
        "    if x % 3 == 0 and os.path.exists(flag):\n        raise ValueError(x)\n"
        "    res.append(x * x)\n"
    )
    first = run_ok(fresh, cell)
    assert first.counts.failed == 3
    flag.unlink()
    log.write_text("")
    capfd.readouterr()
    second = run_ok(fresh, cell)
    assert sorted(log.read_text().split()) == ["0", "3", "6"]  # only the failed ones
    assert second.counts.restored == 5 and second.counts.failed == 0
    assert fresh.user_ns["res"] == [x * x for x in range(8)]
    assert second.explain(3) == "failed before"


def test_ordered_part_replays_from_the_journal(fresh, tmp_path, capfd):
    log = tmp_path / "log"
    run_ok(fresh, f"log = {str(log)!r}\nitems = [5, 1, 9, 3, 9, 2]")
    cell = (
        "%%parallel_for --progress none\nbest = -1\nwhere = None\nseen = []\n"
        "for i, x in enumerate(items):\n"
        "    open(log, 'a').write(f'{i}\\n')\n"
        "    s = x * 10\n"
        "    if s > best:\n        best, where = s, i\n        print('new best', i, s)\n"
        "    seen.append(s)\n"
    )
    capfd.readouterr()
    run_ok(fresh, cell)
    first = capfd.readouterr().out
    names = {k: fresh.user_ns[k] for k in ("best", "where", "seen", "s", "i", "x")}
    log.write_text("")
    second = run_ok(fresh, cell)
    assert log.read_text() == "" and second.counts.restored == 6
    assert (
        {k: fresh.user_ns[k] for k in names}
        == names
        == {"best": 90, "where": 2, "seen": [50, 10, 90, 30, 90, 20], "s": 20, "i": 5, "x": 2}
    )
    assert capfd.readouterr().out.replace(repr(second), "").count("new best") == first.count(
        "new best"
    )


def test_an_unpicklable_outcome_is_not_journaled_and_the_run_goes_on(fresh, tmp_path, capfd):
    # in the kernel (--serial) nothing travels, so a lock can be added; it cannot be journaled
    log = tmp_path / "log"
    run_ok(fresh, f"import threading\nlog = {str(log)!r}\nitems = list(range(3))")
    cell = (
        "%%parallel_for --progress none --serial\nout = []\nfor x in items:\n"
        "    open(log, 'a').write(f'{x}\\n')\n"
        "    out.append(threading.Lock() if x == 1 else x)\n"
    )
    capfd.readouterr()
    run_ok(fresh, cell)
    err = capfd.readouterr().err
    assert err.count("cannot be pickled for the journal") == 1
    assert fresh.user_ns["out"][0::2] == [0, 2]
    log.write_text("")
    run = run_ok(fresh, cell)
    assert log.read_text().split() == ["1"] and run.counts.restored == 2
    assert fresh.user_ns["out"][0::2] == [0, 2] and len(fresh.user_ns["out"]) == 3


def test_parallel_journal_lists_and_clears(shell, capfd):
    run_ok(shell, CELL.format(flags=""))
    capfd.readouterr()
    shell.run_line_magic("parallel_journal", "")
    listed = capfd.readouterr().out
    assert "6 items" in listed and "for f in files:" in listed
    shell.run_line_magic("parallel_journal", "--clear")
    assert "cleared" in capfd.readouterr().out
    ran, run, _ = _ran(shell, CELL.format(flags=""), capfd)
    assert len(ran) == 6 and run.counts.restored == 0


def test_an_ordered_part_writing_to_a_notebook_file_is_replayed_from_the_journal(fresh, tmp_path):
    # the ordered part runs in the kernel from each item's recorded values, restored or not
    log = tmp_path / "log"
    run_ok(fresh, f"log = {str(log)!r}\nitems = list(range(10))")
    cell = (
        "%%parallel_for --progress none\nfor x in items:\n"
        "    open(log, 'a').write(f'{x}\\n')\n    y = x * 3\n    fh.write(f'{x}:{y}\\n')\n"
    )
    outputs = []
    for name in ("first.txt", "second.txt"):
        run_ok(fresh, f"fh = open({str(tmp_path / name)!r}, 'w')")
        run = run_ok(fresh, cell)
        run_ok(fresh, "fh.close()")
        outputs.append((tmp_path / name).read_text())
    assert run.counts.restored == 10  # the second run ran nothing
    assert sorted(map(int, log.read_text().split())) == list(range(10))
    assert outputs[1] == outputs[0] == "".join(f"{x}:{3 * x}\n" for x in range(10))


def test_items_that_are_objects_drawn_on_are_not_journaled_and_why_says_so(fresh, capfd):
    run_ok(fresh, "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt")
    cell = (
        "%%parallel_for --progress none --why\n"
        "for ax, i in zip(axes.flat, items):\n    ax.plot([0, i])\n"
    )
    for _ in range(2):
        run_ok(fresh, "items = list(range(4))\nfig, axes = plt.subplots(2, 2)")
        capfd.readouterr()
        run = run_ok(fresh, cell)
        assert "journal off (the ordered part draws or writes on items that are objects)" in (
            capfd.readouterr().err
        )
        assert run.counts.restored == 0
        assert [len(ax.lines) for ax in fresh.user_ns["axes"].flat] == [1, 1, 1, 1]
    run_ok(fresh, "plt.close('all')")


BIG_CELL = """%%parallel_for --progress none
out = []
for i in items:
    out.append(int(big[i]))
"""


def test_a_big_value_is_fingerprinted_once_per_pass(fresh):
    """The journal's key and the scatter share one fingerprint of a value read by the body."""
    from dask_magic.engine import scatter

    run_ok(fresh, "import numpy as np\nbig = np.arange(1_000_000)\nitems = list(range(4))")
    before = scatter.COUNTS["fingerprint"]
    run_ok(fresh, BIG_CELL)  # keys, then the scatter of `big`: one fingerprint
    assert scatter.COUNTS["fingerprint"] - before == 1
    assert fresh.user_ns["out"] == [0, 1, 2, 3]
    # changed in place: the next pass hashes it again, sees it and runs every item
    run_ok(fresh, "big[0] = 7")
    before = scatter.COUNTS["fingerprint"]
    run = run_ok(fresh, BIG_CELL)
    assert scatter.COUNTS["fingerprint"] - before == 1
    assert fresh.user_ns["out"] == [7, 1, 2, 3] and run.restored == 0
    # unchanged: every item restored, and the one fingerprint is the key's
    before = scatter.COUNTS["fingerprint"]
    run = run_ok(fresh, BIG_CELL)
    assert scatter.COUNTS["fingerprint"] - before == 1 and run.restored == 4


def test_the_size_cap_evicts_the_older_loops_behind_the_cell(fresh):
    import dask.config

    from dask_magic.engine.journal_setup import shared_journal

    run_ok(fresh, "items = list(range(50))")
    loop = "%%parallel_for --progress none\nout{n} = []\nfor x in items:\n"
    loop += "    out{n}.append(x * {n})\n"
    run_ok(fresh, loop.format(n=1))
    store = shared_journal()
    assert store is not None
    store.settle()
    (first,) = store.runs()
    with dask.config.set({"dask-magic.journal.max-size": first.size + 1}):
        run = run_ok(fresh, loop.format(n=2))  # both do not fit: the older one goes
        store.settle()  # the cap ran on the writer thread, after the cell
    assert run.counts.done == 50 and fresh.user_ns["out2"][-1] == 98
    (kept,) = store.runs()
    assert kept.run_key != first.run_key and kept.items == 50


def test_a_fresh_run_replaces_the_rows_it_wrote_again(fresh):
    from dask_magic.engine.journal_setup import shared_journal

    run_ok(fresh, "items = list(range(30))")
    cell = (
        "%%parallel_for --progress none {flags}\nout = []\nfor x in items:\n    out.append(x + 1)\n"
    )
    run_ok(fresh, cell.format(flags=""))
    store = shared_journal()
    assert store is not None
    store.settle()
    before = {batch.id for batch in store.listing()}
    run = run_ok(fresh, cell.format(flags="--fresh"))
    store.settle()
    after = store.listing()
    assert run.counts.restored == 0 and fresh.user_ns["out"] == list(range(1, 31))
    assert before and not before & {batch.id for batch in after}  # the older rows dropped
    assert sorted(key for batch in after for key in batch.keys) == sorted(map(repr, range(30)))
    assert run_ok(fresh, cell.format(flags="")).counts.restored == 30
