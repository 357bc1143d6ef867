"""Text views of a run: the one-line progress bar, the summary, and the \\r-updating printer."""

from __future__ import annotations

import io

import pytest
from helpers import SAMPLE_CLUSTER

from dask_magic.engine.results import (
    ClusterInfo,
    Counts,
    ErrorInfo,
    Failure,
    RunSnapshot,
    RunStatus,
)
from dask_magic.ui.text import (
    BAR_WIDTH,
    TextProgress,
    cluster_text,
    format_bytes,
    format_duration,
    progress_line,
    summary_text,
)


def _failure(index: int, type_name: str = "FileNotFoundError", line: int | None = 3) -> Failure:
    message = f"[Errno 2] No such file or directory: 'data/{index}.csv'"
    return Failure(
        index=index,
        item_repr=f"'data/{index}.csv'",
        error=ErrorInfo(type_name, message),
        line=line,
        traceback="...",
        full_traceback="...",
    )


def _snapshot(
    counts: Counts,
    status: RunStatus = RunStatus.RUNNING,
    failures: tuple[Failure, ...] = (),
    elapsed: float = 12.0,
    rate: float | None = 3.75,
    eta: float | None = 15.0,
    **extra: object,
) -> RunSnapshot:
    extra.setdefault("name", None)
    return RunSnapshot(
        run_id="r1",
        status=status,
        counts=counts,
        started=0.0,
        elapsed=elapsed,
        rate=rate,
        eta=eta,
        failures=failures,
        **extra,
    )


RUNNING = _snapshot(Counts(total=100, done=45, failed=3, running=2))


# -- progress_line ------------------------------------------------------------------------


def test_progress_line_has_counts_elapsed_rate_and_eta() -> None:
    line = progress_line(RUNNING)
    assert "\n" not in line and "\r" not in line
    for part in ("45/100 done", "3 failed", "2 running", "50 queued", "12s elapsed", "3.8/s"):
        assert part in line
    assert "ETA 15s" in line


def test_bar_shows_done_and_failed_proportions() -> None:
    bar = progress_line(RUNNING).split("]")[0] + "]"
    assert len(bar) == BAR_WIDTH + 2
    assert bar.count("#") == 45 * BAR_WIDTH // 100
    assert bar.count("x") == 3 * BAR_WIDTH // 100 or bar.count("x") == 1


def test_a_single_failure_among_many_is_still_visible() -> None:
    line = progress_line(_snapshot(Counts(total=10_000, done=9_999, failed=1)))
    assert "x" in line.split("]")[0]


def test_unknown_rate_and_eta_are_left_out() -> None:
    line = progress_line(_snapshot(Counts(total=4), rate=None, eta=None, elapsed=0.2))
    assert "0/4 done" in line and "0.2s elapsed" in line
    assert "/s" not in line and "ETA" not in line


def test_slow_items_are_counted_per_minute() -> None:
    assert "6.0/min" in progress_line(_snapshot(Counts(total=10, done=1), rate=0.1))


def test_zero_items_do_not_divide_by_zero() -> None:
    assert "0/0 done" in progress_line(_snapshot(Counts(total=0), rate=None, eta=None))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4s"), (12.4, "12s"), (185, "3m05s"), (3720, "1h02m"), (-1, "0.0s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# -- summary_text ---------------------------------------------------------------------------


def test_summary_groups_failures_by_type_and_line_with_first_items() -> None:
    failures = (*(_failure(i) for i in range(37)), _failure(99, "ValueError", 5))
    done = _snapshot(
        Counts(total=100, done=62, failed=38), RunStatus.FAILED, failures, elapsed=73.0
    )
    text = summary_text(done)
    lines = text.splitlines()
    assert lines[0] == (
        "parallel_for finished with failures: 100 items in 1m13s (62 done, 38 failed)"
    )
    assert (
        "  37 \u00d7 FileNotFoundError at line 3: [Errno 2] No such file or directory: 'data/0.csv'"
        in lines
    )
    assert "      items: 'data/0.csv', 'data/1.csv', 'data/2.csv', ... and 34 more" in lines
    assert (
        "  1 \u00d7 ValueError at line 5: [Errno 2] No such file or directory: 'data/99.csv'"
        in lines
    )
    assert "      item: 'data/99.csv'" in lines
    assert "%parallel_retry" in lines[-1]
    assert text.index("FileNotFoundError") < text.index("ValueError")  # biggest group first


def test_summary_of_a_clean_run_has_no_retry_advice() -> None:
    text = summary_text(_snapshot(Counts(total=3, done=3), RunStatus.FINISHED, name="feats"))
    assert text == "parallel_for 'feats' finished: 3 items in 12s (3 done, 0 failed)"


def test_summary_of_an_interrupted_run_says_why_and_what_did_not_run() -> None:
    snap = _snapshot(
        Counts(total=10, done=4, cancelled=6),
        RunStatus.INTERRUPTED,
        message="Interrupted by the user; finished items were kept.",
    )
    text = summary_text(snap)
    assert text.startswith(
        "parallel_for interrupted: 10 items in 12s (4 done, 0 failed, 6 cancelled)"
    )
    assert "Interrupted by the user" in text


def test_many_groups_are_cut_with_a_count() -> None:
    failures = tuple(_failure(i, f"Error{i}", i) for i in range(8))
    text = summary_text(_snapshot(Counts(total=8, failed=8), RunStatus.FAILED, failures))
    assert "... and 3 more in 3 other groups" in text


def test_a_long_message_is_cut_to_one_line() -> None:
    failure = Failure(
        index=0,
        item_repr="0",
        error=ErrorInfo("ValueError", "a" * 500 + "\nsecond line"),
        line=None,
        traceback="",
        full_traceback="",
    )
    text = summary_text(_snapshot(Counts(total=1, failed=1), RunStatus.FAILED, (failure,)))
    head = next(line for line in text.splitlines() if "\u00d7 ValueError" in line)
    assert "second line" not in text and len(head) < 130 and head.endswith("...")


# -- TextProgress ----------------------------------------------------------------------------


def test_updates_redraw_one_line_and_finish_prints_the_summary() -> None:
    out = io.StringIO()
    view = TextProgress(out)
    view.update(_snapshot(Counts(total=100, done=5), eta=1000.0))
    view.update(_snapshot(Counts(total=100, done=6), rate=None, eta=None))
    assert "\n" not in out.getvalue()
    assert out.getvalue().count("\r") == 2
    first, second = out.getvalue().split("\r")[1:]
    assert len(second) == len(first)  # padded: no leftovers of the longer line
    final = _snapshot(Counts(total=100, done=100), RunStatus.FINISHED)
    view.finish(final)
    view.finish(final)
    view.update(RUNNING)
    text = out.getvalue()
    assert text.endswith(summary_text(final) + "\n")
    assert text.count(summary_text(final)) == 1
    assert text.count("\r") == 3


def test_default_stream_is_stdout_at_write_time(capsys: pytest.CaptureFixture) -> None:
    view = TextProgress()
    view.update(RUNNING)
    assert "45/100 done" in capsys.readouterr().out


# -- cluster_text ---------------------------------------------------------------------------


def test_cluster_text_says_where_whose_how_big_and_the_dashboard() -> None:
    assert cluster_text(SAMPLE_CLUSTER) == (
        "Dask cluster at tcp://127.0.0.1:8786 (local, started by dask-magic): "
        "2 workers, 2 threads, 4.00 GiB memory\n"
        "Dashboard: http://127.0.0.1:8787/status"
    )


def test_cluster_text_of_someone_elses_cluster_without_a_dashboard() -> None:
    info = ClusterInfo("tcp://10.0.0.5:8786", 1, 1, 512, None, local=False)
    text = cluster_text(info)
    assert "not started by dask-magic" in text and "1 worker, 1 thread, 512 B" in text
    assert text.endswith("Dashboard: none")


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.50 KiB"), (5 * 2**40, "5.00 TiB")]
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text
