"""The demo notebooks, executed top to bottom in a real kernel, and what each must show.

Each notebook runs once per module through nbclient (``notebooks/headless.py``, the runner
``make demo`` uses) in a fresh ``python3`` kernel of this venv, in a temporary folder, with
this checkout on the kernel's ``PYTHONPATH``. A cell that raises fails the run unless it is
tagged ``raises-exception``. The test appends one cell that prints a JSON line of facts from
the kernel's namespace, and checks those and the outputs of named cells (cell ids): counts,
the values the loops left, the lines refusal messages name. Timings are printed with
``-s``, never asserted.

The committed notebooks themselves must carry no outputs, execution counts or widget state.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import headless  # noqa: E402  (notebooks/headless.py)

ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
FACTS_MARK = "NOTEBOOK-FACTS "


# -- helpers -------------------------------------------------------------------------------------


def run_notebook(name: str, folder: Path, facts: str) -> tuple[nbformat.NotebookNode, dict]:
    """Execute ``name`` in ``folder``; ``facts`` is a dict expression evaluated at the end."""
    cell = (
        "import dataclasses as _dc, json as _json\n"
        "def _counts(run):\n    return _dc.asdict(run.counts)\n"
        f"print({FACTS_MARK!r} + _json.dumps({facts}, default=repr))"
    )
    start = time.perf_counter()
    nb = headless.execute(NOTEBOOKS / name, folder, timeout=300, extra_cells=[cell])
    print(f"\n{name}: executed in {time.perf_counter() - start:.1f} s")
    text = headless.outputs_text(nb.cells[-1])
    lines = [line for line in text.splitlines() if line.startswith(FACTS_MARK)]
    assert lines, f"{name}: the facts cell printed nothing: {nb.cells[-1].outputs}"
    return nb, json.loads(lines[0][len(FACTS_MARK) :])


def cell(nb: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    found = [c for c in nb.cells if c.get("id") == cell_id]
    assert len(found) == 1, f"no single cell with id {cell_id!r}"
    return found[0]


def out(nb: nbformat.NotebookNode, cell_id: str) -> str:
    """What the cell printed or showed as text (streams, text/plain, error name and value)."""
    return headless.outputs_text(cell(nb, cell_id))


def stream(nb: nbformat.NotebookNode, cell_id: str, name: str = "stdout") -> str:
    """What the cell wrote to one stream (``stdout`` or ``stderr``), all of it, in order."""
    return "".join(
        o.text for o in cell(nb, cell_id).outputs if o.output_type == "stream" and o.name == name
    )


def error_output(nb: nbformat.NotebookNode, cell_id: str) -> dict:
    errors = [o for o in cell(nb, cell_id).outputs if o.output_type == "error"]
    assert len(errors) == 1, cell(nb, cell_id).outputs
    return errors[0]


def has_panel(nb: nbformat.NotebookNode, cell_id: str) -> bool:
    return any(WIDGET_VIEW in o.get("data", {}) for o in cell(nb, cell_id).outputs)


def check_tagged_cells_raised(nb: nbformat.NotebookNode) -> None:
    """A ``raises-exception`` tag on a cell that no longer raises hides a change: flag it."""
    for c in nb.cells:
        if "raises-exception" in c.get("metadata", {}).get("tags", []):
            text = headless.outputs_text(c)
            raised = any(o.output_type == "error" for o in c.outputs) or "UsageError" in text
            assert raised, f"cell {c.id} is tagged raises-exception but raised nothing"


# -- the committed notebooks -----------------------------------------------------------------


def test_there_are_five_notebooks():
    assert [p.stem for p in ALL] == [
        "01-quickstart",
        "02-big-objects",
        "03-failures-and-debugging",
        "04-scale-out",
        "05-what-can-run-in-parallel",
    ]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    """Stored without outputs (clear them with `jupyter nbconvert --clear-output --inplace`)."""
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [c.id for c in code if c.outputs or c.execution_count is not None]
    assert not dirty, f"{path.name}: cells with outputs or execution counts: {dirty}"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert code[0].source == "%load_ext dask_magic"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


# -- 01-quickstart -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    return run_notebook(
        "01-quickstart.ipynb",
        tmp_path_factory.mktemp("nb01"),
        """{
        "status": str(run.status), "counts": _counts(run), "n_summaries": len(summaries),
        "sensors_in_order": [s["sensor"] for s in summaries] == [Path(f).stem for f in files],
        "broken": broken, "failed_files": failed_files,
        "same_as_serial": all(summaries[files.index(f)] == summarize(f)
                              for f in failed_files + files[:10]),
        "empty_files": sorted(s["sensor"] for s in summaries if s["mean"] is None),
        "again": _counts(again),
    }""",
    )


def test_quickstart_plain_loop_stops_then_parallel_reports_the_damaged_files(quickstart):
    nb, facts = quickstart
    check_tagged_cells_raised(nb)
    assert error_output(nb, "plain-loop")["ename"] == "ValueError"
    assert re.search(r"^stopped after \d+ of 200 files$", out(nb, "stopped-after"), re.M)
    assert out(nb, "plain-loop-timed").startswith("190 summaries, 10 failures")
    assert "(local, started by dask-magic)" in out(nb, "cluster")

    assert has_panel(nb, "parallel-loop")
    assert out(nb, "compare").startswith("<Run 'run' failed: 190 done, 10 failed of 200 in ")
    assert "\n190 summaries\n" in out(nb, "compare")

    listing = out(nb, "failures")
    expected = {
        "bad number": "ValueError",
        "missing column": "KeyError",
        "empty file": "EmptyDataError",
    }
    kinds = sorted(facts["broken"].values())
    assert kinds == sorted(["bad number"] * 4 + ["missing column"] * 3 + ["empty file"] * 3)
    for path, kind in facts["broken"].items():
        line = next(line for line in listing.splitlines() if line.startswith(repr(path)))
        assert expected[kind] in line, line
    assert "exactly the damaged files: True" in listing
    assert facts["failed_files"] == sorted(facts["broken"])
    traceback = out(nb, "one-traceback")
    assert "Cell In[" in traceback and "summaries.append(summarize(path))" in traceback


def test_quickstart_retry_fixes_only_the_failed_files(quickstart):
    nb, facts = quickstart
    assert re.search(r"^retried 10 files in", out(nb, "retry"), re.M)
    assert has_panel(nb, "retry")
    assert facts["status"] == "finished"
    assert facts["counts"] == {
        "total": 200,
        "done": 200,
        "failed": 0,
        "running": 0,
        "cancelled": 0,
        "restored": 0,
        "timeout": 0,
    }
    assert facts["n_summaries"] == 200 and facts["sensors_in_order"] and facts["same_as_serial"]
    empty = sorted(Path(p).stem for p, kind in facts["broken"].items() if kind == "empty file")
    assert facts["empty_files"] == empty
    assert "in file order: True" in out(nb, "result")
    # what `make demo` prints: the panel's text summaries
    summaries = headless.summaries(nb)
    assert summaries
    assert all(re.match(r"parallel_for '(run|again)' finished: 200 items", s) for s in summaries)


def test_quickstart_same_cell_again_comes_from_the_journal(quickstart):
    nb, facts = quickstart
    # summarize changed after the first run: only the 10 files retried with it are restored
    first = out(nb, "journal-first-print")
    assert first.startswith("<Run 'again' finished: 200 done, 0 failed of 200 in ")
    assert "10 restored from the journal" in first
    assert has_panel(nb, "journal-first")
    again = out(nb, "journal-again-print")
    assert "200 restored from the journal" in again and "in file order: True" in again
    assert facts["again"]["restored"] == 200 and facts["again"]["done"] == 200
    assert facts["n_summaries"] == 200 and facts["same_as_serial"]


# -- 02-big-objects ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_objects(tmp_path_factory):
    return run_notebook(
        "02-big-objects.ipynb",
        tmp_path_factory.mktemp("nb02"),
        """{
        "copies": sorted(copies), "workers": priced.cluster.workers, "priced": _counts(priced),
        "totals_ok": bool(np.allclose(totals, [prices[o].sum() for o in orders[:100]])),
        "correlations": correlations, "from_files": correlations_from_files,
        "expected": [df.corr().loc["a", "b"] for df in frames],
    }""",
    )


def test_big_object_is_sent_once_and_reused_until_changed(big_objects):
    nb, facts = big_objects
    check_tagged_cells_raised(nb)
    shown = out(nb, "show")
    assert "def dask_magic_loop(" in shown and "prices[order].sum()" in shown
    assert not has_panel(nb, "show")  # --show runs nothing
    assert facts["priced"]["done"] == 300
    pids = [pid for pid, _ in facts["copies"]]
    # one copy of `prices` per worker process that ran items, shared by all its items
    assert len(pids) == len(set(pids)) and 1 <= len(pids) <= facts["workers"]
    assert re.search(r"300 orders priced; the items saw \d copies", out(nb, "copies"))
    assert "same totals as numpy here: True" in out(nb, "copies")
    assert re.search(r"'ndarray-\w+': '200 MB'", out(nb, "held"))
    assert "re-used: True" in out(nb, "reused")
    assert "sent again: True" in out(nb, "resent") and facts["totals_ok"]


def test_dataframe_items_get_the_paths_advice(big_objects):
    nb, facts = big_objects
    advice = out(nb, "loop-frames")
    assert "dask-magic: The loop items are large" in advice and "(DataFrame)" in advice
    assert "load it inside the loop body" in advice
    assert "loop items are large" not in out(nb, "loop-paths")
    assert facts["correlations"] == facts["expected"] == facts["from_files"]


# -- 03-failures-and-debugging -----------------------------------------------------------------


@pytest.fixture(scope="module")
def failures(tmp_path_factory):
    return run_notebook(
        "03-failures-and-debugging.ipynb",
        tmp_path_factory.mktemp("nb03"),
        """{
        "orders": _counts(orders_run), "row_ids": [row["id"] for row in rows],
        "unknown": sorted(row["id"] for row in rows if row["customer"] == "unknown"),
        "no_retries": _counts(no_retries), "with_retries": _counts(with_retries),
        "rates": rates, "slow": _counts(slow), "checked": checked,
        "progress": [_counts(progress_run), [str(p) for p in paths], row_counts],
    }""",
    )


def test_failures_grouped_with_traceback_and_output(failures):
    nb, _ = failures
    check_tagged_cells_raised(nb)
    assert has_panel(nb, "parse")
    lines = out(nb, "by-cause").splitlines()
    assert lines[0].startswith("<Run 'orders_run' failed: 51 done, 9 failed of 60 in ")
    assert lines[1:] == [
        "4 \u00d7 KeyError at line 4: items [7, 19, 33, 48]",
        "3 \u00d7 ZeroDivisionError at line 4: items [12, 27, 51]",
        "2 \u00d7 ValueError at line 4: items [22, 40]",
        "51 orders parsed",
    ]
    tb = out(nb, "traceback")
    assert re.search(
        r"Cell In\[\d+\], line 4, in <loop body>\n"
        r"    rows.append\(parse_order\(rec\)\)",
        tb,
    )
    assert re.search(r"Cell In\[\d+\], line 27, in parse_order", tb)
    assert tb.rstrip().endswith("KeyError: 'customer'") and "distributed" not in tb
    assert out(nb, "stdout").startswith("\"order 7 raw: {'id': 7,")


def test_printed_progress_comes_out_in_item_order(failures):
    """The first items sleep longest, so later ones tend to end first: the lines keep item order."""
    nb, facts = failures
    counts, paths, row_counts = facts["progress"]
    assert (counts["done"], counts["failed"]) == (12, 0)
    assert row_counts == [3 * day for day in range(1, 13)]  # what the plain loop would append
    expected = [
        f"{i}: {path} -> {n} rows"
        for i, (path, n) in enumerate(zip(paths, row_counts, strict=True))
    ]
    assert expected[0] == "0: exports/orders-2026-02-01.csv -> 3 rows"
    assert stream(nb, "progress").splitlines() == expected
    assert stream(nb, "progress", "stderr") == ""
    kinds = [o.output_type for o in cell(nb, "progress").outputs]
    assert has_panel(nb, "progress") and kinds[0] == "display_data"  # the panel, then the lines


def test_serial_and_debugging_one_item_in_the_kernel(failures):
    nb, _ = failures
    assert "finished with failures: 60 items" in out(nb, "serial")
    # and printing in later cells still works after --serial
    assert "same failures: True" in out(nb, "serial-same")
    error = error_output(nb, "here")
    assert (error["ename"], error["evalue"]) == ("KeyError", "'customer'")
    session = re.sub(r"\x1b\[[0-9;]*m", "", out(nb, "debug"))
    assert "ipdb> p rec\n{'id': 7, 'date': '2026-02-08', 'quantity': 3, 'total': 29.97}" in session
    assert "['date', 'id', 'quantity', 'total']" in session
    assert '---> 27         "customer": rec["customer"],' in session


def test_retry_after_fix_retries_and_interrupt(failures):
    nb, facts = failures
    assert facts["orders"] == {
        "total": 60,
        "done": 60,
        "failed": 0,
        "running": 0,
        "cancelled": 0,
        "restored": 0,
        "timeout": 0,
    }
    assert facts["row_ids"] == list(range(60)) and facts["unknown"] == [7, 19, 33, 48]
    assert (facts["no_retries"]["done"], facts["no_retries"]["failed"]) == (20, 10)
    assert (facts["with_retries"]["done"], facts["with_retries"]["failed"]) == (30, 0)
    assert facts["rates"] == {str(day): round(1.08 + day / 1000, 4) for day in range(1, 31)}
    # the timer's SIGINT interrupted the run: finished items kept in order, the rest cancelled
    message = out(nb, "interrupted")
    found = re.search(
        r"UsageError: interrupted: (\d+) finished items kept, (\d+) cancelled", message
    )
    assert found and int(found[1]) + int(found[2]) == 30 and int(found[2]) > 0
    assert f"kept {found[1]} finished results, in item order: True" in out(nb, "kept")
    assert facts["slow"]["done"] == 30 and facts["checked"] == [n * n for n in range(30)]


# -- 04-scale-out -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scale_out(tmp_path_factory):
    return run_notebook(
        "04-scale-out.ipynb",
        tmp_path_factory.mktemp("nb04"),
        """{
        "address": address,
        "remote": [remote.cluster.scheduler, remote.cluster.workers, remote.cluster.local],
        "from_env": from_env.cluster.scheduler,
        "in_workers": pids <= worker_pids and os.getpid() not in pids,
        "after_restart": [after_restart.cluster.workers, after_restart.cluster.local],
        "lengths": [len(lengths), lengths[27], lengths[97]],
        "stopped": [p.returncode is not None for p in processes],
        "env_left": "DASK_SCHEDULER_ADDRESS" in os.environ,
    }""",
    )


def test_same_cell_on_a_command_line_cluster(scale_out):
    nb, facts = scale_out
    check_tagged_cells_raised(nb)
    assert facts["remote"] == [facts["address"], 2, False] and facts["in_workers"]
    assert facts["from_env"] == facts["address"] and not facts["env_left"]
    assert facts["lengths"] == [3000, 111, 118]
    expected = f"Dask cluster at {facts['address']} (not started by dask-magic): 2 workers"
    assert out(nb, "show-remote").startswith(expected)
    assert all(facts["stopped"]) and "demo cluster stopped: True" in out(nb, "stop-cluster")
    everything = "\n".join(headless.outputs_text(c) for c in nb.cells)
    assert "distributed.scheduler - INFO" not in everything  # the demo cluster's logs go to files


def test_dask_cluster_manages_the_local_cluster(scale_out):
    nb, facts = scale_out
    assert "(local, started by dask-magic)" in out(nb, "local")
    assert "(local, started by dask-magic): 1 worker, 1 thread" in out(nb, "scale")
    assert "1 worker, 1 thread" in out(nb, "restart")
    assert facts["after_restart"] == [1, True]
    assert "dask-magic: local cluster closed" in out(nb, "close")


# -- 05-what-can-run-in-parallel ---------------------------------------------------------------

#: refused cell -> (line and column the message names, the message's words)
REFUSALS = {
    "refused-no-loop": ("line 2, column 1", "this cell has no top-level `for` loop"),
    "refused-break": ("line 5, column 9", "`break` would stop the loop early"),
    "refused-recurrence": (
        "line 4, column 5",
        "nothing in this loop can run in parallel: every call in it needs a value an earlier "
        "item computed (`level` is read on line 4 and assigned on line 4, for the next item)",
    ),
    "refused-shell": ("line 3, column 5", "IPython magics, `!` shell commands"),
    "refused-two-loops": ("line 6, column 1", "this cell has 2 top-level `for` loops (lines 3, 6)"),
}

#: accepted cell with an ordered part -> the cell after it that runs the plain loop and compares
ORDERED = {
    "ordered-total": "ordered-total-check",
    "ordered-best": "ordered-best-check",
    "ordered-concat": "ordered-concat-check",
    "ordered-seen": "ordered-seen-check",
    "ordered-todo": "ordered-todo-check",
    "ordered-file": "ordered-file-check",
    "ordered-plot": "ordered-plot-check",
    "rewritten-recurrence-run": "rewritten-recurrence-check",
}

TEXTS = ["the quick brown fox", "", "jumps over 13 lazy dogs", "and 7 cats", "the end"] * 20


@pytest.fixture(scope="module")
def what_can_run(tmp_path_factory):
    return run_notebook(
        "05-what-can-run-in-parallel.ipynb",
        tmp_path_factory.mktemp("nb05"),
        """{
        "words_col": df.words.tolist(), "first": first,
        "line_counts": line_counts, "letters": len(letters),
        "total": parallel_total, "best": list(parallel_best[:2]),
        "unique": parallel_seen[1], "todo": parallel_todo,
        "table": [list(parallel_table.columns), len(parallel_table),
                  parallel_table.words.tolist(), parallel_table.item.tolist()],
        "log": (data / "log.txt").read_text().splitlines(), "log_closed": log.closed,
        "drawn": drawn(ax), "level": parallel_level,
    }""",
    )


def _score(text: str) -> float:  # the notebook's `score`
    words = text.split()
    return len(set(words)) + sum(len(w) for w in words) / 100


@pytest.mark.parametrize("cell_id", sorted(REFUSALS))
def test_refusal_names_the_line(what_can_run, cell_id):
    nb, _ = what_can_run
    where, words = REFUSALS[cell_id]
    refused = cell(nb, cell_id)
    assert "raises-exception" in refused.metadata["tags"]
    message = out(nb, cell_id)
    assert message.startswith("UsageError: %%parallel_for cannot run this loop in parallel:\n")
    assert f"{where}: {words}" in message
    line = int(where.split()[1].rstrip(","))
    assert refused.source.splitlines()[line - 1].strip() in message  # the quoted source line
    assert "fix: " in message and not has_panel(nb, cell_id)  # refused before anything ran


def test_only_real_refusals_are_tagged(what_can_run):
    nb, _ = what_can_run
    check_tagged_cells_raised(nb)
    tagged = {c.id for c in nb.cells if "raises-exception" in c.metadata.get("tags", [])}
    assert tagged == set(REFUSALS)


def test_accepted_loops_and_rewrites_give_the_serial_results(what_can_run):
    nb, facts = what_can_run
    assert "every text seen\n280 words, 13 different" in out(nb, "accepted")
    assert "same as the plain loop: True" in out(nb, "accepted-check")
    assert facts["words_col"] == [4.0, 0.0, 5.0, 3.0, 2.0] * 2
    assert facts["first"] == 2
    assert facts["line_counts"] == {f"texts-{k}.txt": 25 for k in range(4)}
    assert facts["letters"] == 980


def test_show_marks_parallel_and_ordered_lines(what_can_run):
    nb, _ = what_can_run
    shown = out(nb, "show-total")
    assert not has_panel(nb, "show-total")  # --show runs nothing
    assert re.search(r"^#\s+4 P\s+words = text\.split\(\)$", shown, re.M)
    assert re.search(
        r"^#\s+5 O\s+total = total \+ len\(words\)\s+<- computed on the worker: len\(words\)$",
        shown,
        re.M,
    )
    assert re.search(r"^#\s+6 O\s+print\(f\"text \{i\}: ", shown, re.M)
    assert "ordered step 0 (line 5), run in the notebook in item order" in shown


@pytest.mark.parametrize("cell_id", sorted(ORDERED))
def test_loop_with_an_ordered_part_matches_the_plain_loop(what_can_run, cell_id):
    """Each ran (a panel, no error) and the plain loop after it left the same thing."""
    nb, _ = what_can_run
    assert has_panel(nb, cell_id)
    assert stream(nb, cell_id, "stderr") == ""
    assert not any(o.output_type == "error" for o in cell(nb, cell_id).outputs)
    check = out(nb, ORDERED[cell_id])
    assert re.search(r"^same [a-z ]*as the plain loop: True\b", check, re.M), check


def test_running_total_prints_per_item_in_item_order(what_can_run):
    nb, facts = what_can_run
    expected, total = [], 0
    for i, text in enumerate(TEXTS[:8]):
        total += len(text.split())
        expected.append(f"text {i}: {len(text.split())} words, {total} so far")
    assert stream(nb, "ordered-total").splitlines() == expected
    plain = stream(nb, "ordered-total-check").splitlines()
    assert plain[:-1] == expected  # what the plain loop printed, the same lines in the same order
    assert facts["total"] == total == 23


def test_ordered_part_values_are_the_plain_loops(what_can_run):
    _, facts = what_can_run
    scores = [_score(t) for t in TEXTS]
    assert facts["best"] == [max(scores), scores.index(max(scores))] == [5.19, 2]
    assert facts["unique"] == list(dict.fromkeys(t.strip().lower() for t in TEXTS))
    assert facts["todo"] == [i for i, t in enumerate(TEXTS) if t]
    words = [len(t.split()) for t in TEXTS]
    assert facts["table"] == [["item", "words"], 100, words, list(range(100))]
    assert facts["log"] == [f"{i}: {t.upper()}" for i, t in enumerate(TEXTS)]
    assert facts["log_closed"]
    assert facts["drawn"] == [[[i, n], [i + 1, n]] for i, n in enumerate(words[:20])]
    level = 0.0
    for n in words:
        level = 0.9 * level + 0.1 * n
    assert facts["level"] == level
