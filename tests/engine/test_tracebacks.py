"""Errors captured on a worker, rendered in the kernel against the cell's source."""

from __future__ import annotations

import json
import linecache
from collections.abc import Iterator

import pytest
from dask.utils import apply

from dask_magic.engine.results import ErrorInfo, Frame, ItemOutcome
from dask_magic.engine.tracebacks import (
    failure_line,
    make_failure,
    render_traceback,
    short_repr,
)
from dask_magic.engine.worker import error_info

CELL = "<ipython-input-dm-test-5>"
LABELS = {CELL: "Cell In[5]"}
# Line 1 is the %%parallel_for line, as in a notebook. BODY is what the rewrite would compile
# under the cell's filename: other code, same line numbers.
SOURCE = """\
%%parallel_for
def check(value):
    if value < 0:
        raise ValueError(f"negative: {value}") from KeyError("sign")
    return value
for text in texts:
    parsed = json.loads(text)
    checked = check(parsed)
"""
BODY = """\

def check(value):
    if value < 0:
        raise ValueError(f"negative: {value}") from KeyError("sign")
    return value
def body(text):
    parsed = json.loads(text)
    checked = check(parsed)
"""


@pytest.fixture(autouse=True)
def _cell_in_linecache() -> Iterator[None]:
    """What IPython's CachingCompiler does for every cell it compiles."""
    linecache.cache[CELL] = (len(SOURCE), None, SOURCE.splitlines(True), CELL)
    yield
    linecache.cache.pop(CELL, None)


def _failing(text: str) -> ErrorInfo:
    """Run the "cell" through two dask frames, as a worker would, and capture its error."""
    namespace: dict = {"json": json}
    exec(compile(BODY, CELL, "exec"), namespace)
    body = namespace["body"]
    body.__code__ = body.__code__.replace(co_name="<loop body>")
    try:
        apply(apply, (body, (text,)))
    except Exception as exc:
        return error_info(exc)
    raise AssertionError("the body did not fail")


def test_cell_frames_are_labelled_with_their_source_line_and_marked() -> None:
    text = render_traceback(_failing("{"), labels=LABELS)
    lines = text.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    at = lines.index("  Cell In[5], line 7, in <loop body>")
    assert lines[at + 1] == "    parsed = json.loads(text)"
    assert lines[at + 2] == "    " + "^" * len("parsed = json.loads(text)")
    assert lines[-1].startswith("json.decoder.JSONDecodeError: Expecting property name")
    assert any('json/decoder.py", line' in line for line in lines)  # a library frame stays


def test_internal_frames_are_folded_into_one_note() -> None:
    info = _failing("{")
    assert sum(f.internal for f in info.frames) == 2  # the two dask.utils.apply frames
    text = render_traceback(info, labels=LABELS)
    assert "  (2 frames of dask hidden)" in text.splitlines()
    assert "dask/utils.py" not in text


def test_the_note_names_each_library_once_in_a_fixed_order() -> None:
    frames = (
        Frame("/env/site-packages/distributed/worker.py", 10, "execute", internal=True),
        Frame("/env/site-packages/dask_magic/engine/worker.py", 20, "run_batch", internal=True),
        Frame("/env/site-packages/distributed/utils.py", 30, "wrapper", internal=True),
        Frame(CELL, 7, "<loop body>"),
    )
    lines = render_traceback(ErrorInfo("KeyError", "'x'", frames), labels=LABELS).splitlines()
    assert lines[1] == "  (3 frames of dask_magic/distributed hidden)"
    assert lines[2] == "  Cell In[5], line 7, in <loop body>"


def test_show_internal_shows_every_frame() -> None:
    text = render_traceback(_failing("{"), labels=LABELS, show_internal=True)
    assert text.count("dask/utils.py") == 2
    assert "hidden" not in text


def test_only_the_deepest_cell_frame_is_marked_and_chains_are_shown() -> None:
    info = _failing("-1")
    text = render_traceback(info, labels=LABELS)
    lines = text.splitlines()
    assert "  Cell In[5], line 8, in <loop body>" in lines
    assert "    checked = check(parsed)" in lines
    assert sum(set(line.strip()) == {"^"} for line in lines) == 1
    assert "  Cell In[5], line 4, in check" in lines
    assert "ValueError: negative: -1" in lines
    assert lines[-1] == "  KeyError: 'sign'"


def test_failure_line_is_the_deepest_frame_in_the_cell() -> None:
    assert failure_line(_failing("-1"), CELL) == 4
    assert failure_line(_failing("{"), CELL) == 7
    assert failure_line(_failing("{"), None) is None
    assert failure_line(_failing("{"), "<another cell>") is None


def test_an_error_without_frames_is_its_type_message_and_hint() -> None:
    info = ErrorInfo(
        "distributed.scheduler.KilledWorker",
        "Attempted to run task on 3 different workers",
        kind="infrastructure",
        hint="A worker died, usually of memory: use fewer workers or smaller items.",
    )
    assert render_traceback(info, labels=LABELS) == (
        "distributed.scheduler.KilledWorker: Attempted to run task on 3 different workers\n"
        "hint: A worker died, usually of memory: use fewer workers or smaller items."
    )


def test_source_that_is_nowhere_is_left_out() -> None:
    info = ErrorInfo("ValueError", "x", frames=(Frame("<gone>", 2, "f"),))
    assert render_traceback(info, labels={}).splitlines() == [
        "Traceback (most recent call last):",
        '  File "<gone>", line 2, in f',
        "ValueError: x",
    ]


def test_make_failure_carries_everything_the_views_show() -> None:
    info = _failing("-1")
    outcome = ItemOutcome(
        index=7,
        status="failed",
        error=info,
        stdout="out",
        stderr="err",
        warnings=("w",),
        duration=0.5,
        worker="tcp://127.0.0.1:1",
    )
    failure = make_failure(outcome, "data/2021-03.csv", cell_filename=CELL, labels=LABELS)
    assert failure.index == 7
    assert failure.item_repr == "'data/2021-03.csv'"
    assert failure.line == 4
    assert failure.group_label == "ValueError at line 4"
    assert "hidden" in failure.traceback and "dask/utils.py" in failure.full_traceback
    assert (failure.stdout, failure.stderr, failure.warnings) == ("out", "err", ("w",))
    assert (failure.duration, failure.worker) == (0.5, "tcp://127.0.0.1:1")


def test_a_failure_renders_its_traceback_when_first_read(monkeypatch) -> None:
    import pickle

    from dask_magic.engine import tracebacks

    outcome = ItemOutcome(index=2, status="failed", error=_failing("-1"))
    calls = []
    real = tracebacks.render_traceback
    monkeypatch.setattr(
        tracebacks, "render_traceback", lambda *a, **kw: calls.append(kw) or real(*a, **kw)
    )
    failure = make_failure(outcome, "x", cell_filename=CELL, labels=LABELS)
    copy = pickle.loads(pickle.dumps(failure))
    assert calls == [] and failure.line == 4  # counting and grouping render nothing
    assert failure.traceback == copy.traceback == real(outcome.error, labels=LABELS)
    assert failure.traceback is failure.traceback and len(calls) == 2  # rendered once each
    assert "dask/utils.py" in failure.full_traceback


def test_make_failure_refuses_an_item_that_did_not_fail() -> None:
    with pytest.raises(ValueError, match="no error"):
        make_failure(ItemOutcome(index=0, status="done"), 1, cell_filename=CELL, labels=LABELS)


# -- short_repr ---------------------------------------------------------------------------


class _Broken:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class _Multiline:
    def __repr__(self) -> str:
        return "first\n  second"


def test_short_repr_never_raises() -> None:
    assert short_repr(_Broken()) == "<unreprable _Broken>"
    assert short_repr([_Broken(), 1]) == "[<unreprable _Broken>, 1]"


def test_short_repr_is_bounded_even_for_ten_megabytes() -> None:
    huge = "x" * 10_000_000
    text = short_repr(huge)
    assert len(text) <= 120 and text.startswith("'xxx")
    assert len(short_repr(huge, limit=30)) <= 30
    assert len(short_repr(list(range(100_000)))) <= 120
    assert len(short_repr(b"y" * 10_000_000)) <= 120


def test_short_repr_keeps_small_values_exact_and_on_one_line() -> None:
    assert short_repr("data/2021-03.csv") == "'data/2021-03.csv'"
    assert short_repr((1, "a")) == "(1, 'a')"
    assert short_repr(_Multiline()) == "first second"


def test_short_repr_of_a_frame_is_its_shape() -> None:
    pd = pytest.importorskip("pandas")
    assert short_repr(pd.DataFrame({"a": range(100)})) == "<DataFrame shape=(100, 1)>"
