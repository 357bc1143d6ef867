"""``--timeout``: an item that runs too long ends as ``timeout``, its worker process is
restarted through its nanny, and the run goes on; and `Run.partial` while a run goes on.

Real LocalCluster worker processes and real ``dask scheduler`` / ``dask worker`` processes;
the cells end in bounded time because pytest's timeout would fail them otherwise.
"""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest
from conftest import run_ok
from helpers import command_line_cluster, own_local_cluster, settled_workers
from IPython.core.error import UsageError

from dask_magic.engine.results import RunStatus

SLOW_CELL = """%%parallel_for {where} --timeout 2s --progress none{extra}
out = []
for i in range(41):
    if i == 7:
        note_attempt(i)
        time.sleep(60)
    out.append(i)
"""
SLOW_LINE = 6  # the %%parallel_for line is line 1


@pytest.fixture
def two_workers(two_worker_cluster):
    """The module's cluster with both workers in place and settled: an earlier test's restart
    may still be bringing one back on a loaded machine, and each test counts the workers it
    ends with."""
    settled_workers(two_worker_cluster, 2)
    return two_worker_cluster


@pytest.fixture(scope="module")
def two_worker_cluster():
    """Two single-threaded worker processes under nannies, on loopback, and a Client."""
    yield from _own_client(n_workers=2)


def _own_client(n_workers: int):
    """A Client of the test's own cluster of single-threaded worker processes (nannies)."""
    from distributed import Client

    with own_local_cluster(n_workers=n_workers, threads_per_worker=1, processes=True) as made:
        client = Client(made, set_as_default=False)
        yield client
        client.close()


def worker_pids(client) -> dict[str, int]:
    return dict(client.run(os.getpid))


def attempts_setup(ip, path) -> None:
    run_ok(
        ip,
        "import time\n"
        "def note_attempt(i):\n"
        f"    with open({str(path)!r}, 'a') as f:\n"
        "        f.write(f'{i}\\n')\n",
    )


def usage_error(ip, cell: str) -> str:
    result = ip.run_cell(cell)
    assert isinstance(result.error_in_exec, UsageError), (
        result.error_in_exec or result.error_before_exec
    )
    return str(result.error_in_exec)


def check_timed_out_run(run, ip) -> None:
    assert run.status is RunStatus.FAILED
    assert (run.counts.done, run.counts.timeout, run.counts.failed) == (40, 1, 0)
    assert ip.user_ns["out"] == [i for i in range(41) if i != 7]
    [failure] = run.failures
    assert failure.index == 7 and failure.error.type_name == "Timeout"
    assert failure.line == SLOW_LINE
    assert "time.sleep(60)" in failure.traceback
    assert "--timeout 2s" in failure.error.message
    assert run.outcomes[7].status == "timeout" and run.outcomes[7].duration >= 2


@pytest.mark.timeout(150)
def test_an_item_past_its_timeout_is_stopped_and_its_worker_replaced(fresh, two_workers, tmp_path):
    attempts = tmp_path / "attempts.txt"
    attempts_setup(fresh, attempts)
    fresh.user_ns["c"] = two_workers
    before = worker_pids(two_workers)
    run = run_ok(fresh, SLOW_CELL.format(where="--client c", extra=""))
    check_timed_out_run(run, fresh)
    assert attempts.read_text().split() == ["7"]
    after = worker_pids(two_workers)
    assert len(after) == 2  # replaced, not added
    replaced = set(before.values()) - set(after.values())
    assert len(replaced) == 1 and not psutil.pid_exists(replaced.pop())
    assert "1 timed out" in repr(run)


@pytest.mark.timeout(200)
def test_retries_try_a_timed_out_item_again(fresh, two_workers, tmp_path):
    attempts = tmp_path / "attempts.txt"
    attempts_setup(fresh, attempts)
    fresh.user_ns["c"] = two_workers
    run = run_ok(fresh, SLOW_CELL.format(where="--client c", extra=" --retries 1"))
    check_timed_out_run(run, fresh)
    assert attempts.read_text().split() == ["7", "7"]
    assert len(worker_pids(two_workers)) == 2


@pytest.mark.timeout(150)
def test_a_restarted_worker_the_local_cluster_drops_is_started_again(fresh, two_workers, tmp_path):
    """A LocalCluster closes for good a worker whose name is not registered again
    ``lost-worker-timeout`` after its removal: a restart slower than that (on a loaded machine,
    or a worker restarted twice in a row) would leave it a worker short. Here the check is made
    shorter than any process start, so the cluster drops the restarted worker every time."""
    import dask

    attempts_setup(fresh, tmp_path / "attempts.txt")
    fresh.user_ns["c"] = two_workers
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "0.1s"}):
        run = run_ok(fresh, SLOW_CELL.format(where="--client c", extra=""))
    check_timed_out_run(run, fresh)
    assert len(worker_pids(two_workers)) == 2
    assert sorted(two_workers.cluster.workers) == sorted(two_workers.cluster.worker_spec)


@pytest.mark.timeout(150)
def test_a_restart_begun_while_another_worker_comes_back_waits_for_both(two_workers):
    """The second restart begins while the first worker is gone and not yet back: the pass
    still ends with as many workers as it had, not as many as the second restart first saw."""
    from dask_magic.engine.restarts import WorkerRestarts

    before = worker_pids(two_workers)
    first, second = sorted(before)
    restarts = WorkerRestarts(two_workers)
    assert restarts.start(first)
    assert not restarts.start(first)  # a worker is restarted once at a time
    deadline = time.monotonic() + 60
    while first in two_workers.nthreads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert restarts.start(second)
    restarts.settle()
    assert len(two_workers.nthreads()) == 2 and not set(two_workers.nthreads()) & set(before)
    after = settled_workers(two_workers, 2)  # asks each worker: once no restart is under way
    assert not set(after.values()) & set(before.values())


LAST_HANGS = """%%parallel_for --client c --timeout 2s --progress none
out = []
for i in range(8):
    time.sleep(0.3)  # items this long are sent one per task
    y = i * 2
    if i == 7:
        time.sleep(60)
    out.append(y)
"""


@pytest.fixture(scope="module")
def one_worker_cluster():
    """One single-threaded worker process under a nanny: whatever a run leaves on a worker
    is on the one that a timeout restarts."""
    yield from _own_client(n_workers=1)


@pytest.fixture
def one_worker(one_worker_cluster):
    settled_workers(one_worker_cluster, 1)
    return one_worker_cluster


@pytest.mark.timeout(150)
def test_the_names_an_item_left_on_a_restarted_worker_reach_the_notebook(fresh, one_worker):
    """The last bindings stay on the worker that made them until the run ends; a restart for
    a timeout ends that process, so they are taken from it first."""
    run_ok(fresh, "import time")
    fresh.user_ns["c"] = one_worker
    before = worker_pids(one_worker)
    run = run_ok(fresh, LAST_HANGS)
    assert (run.counts.done, run.counts.timeout) == (7, 1)
    assert set(before.values()).isdisjoint(worker_pids(one_worker).values())  # restarted
    assert run.outcomes[6].worker in before  # the last done item ran on the first process
    # the serial loop over the done items: the last of them bound these
    assert (fresh.user_ns["y"], fresh.user_ns["i"]) == (12, 6)
    assert fresh.user_ns["out"] == [0, 2, 4, 6, 8, 10, 12]


@pytest.mark.timeout(150)
def test_a_big_input_that_only_a_restarted_worker_held_is_sent_again(fresh, one_worker):
    """A big value the body reads is scattered once; its only copy ends with the restart,
    and the tasks that need it are sent again with a fresh copy, not cancelled."""
    run_ok(fresh, "import time\nimport numpy as np\nbig = np.arange(2_000_000.0)")  # 16 MB
    fresh.user_ns["c"] = one_worker
    run = run_ok(
        fresh,
        "%%parallel_for --client c --timeout 2s --retries 1 --progress none\n"
        "out = []\n"
        "for i in range(8):\n"
        "    time.sleep(0.3)\n"
        "    if i == 3:\n"
        "        time.sleep(60)\n"
        "    out.append(big[i] * 10)\n",
    )
    assert (run.counts.done, run.counts.timeout, run.counts.cancelled) == (7, 1, 0)
    assert fresh.user_ns["out"] == [i * 10.0 for i in range(8) if i != 3]


@pytest.mark.timeout(200)
def test_timeout_on_a_command_line_cluster_with_nannies(fresh, tmp_path):
    attempts = tmp_path / "attempts.txt"
    attempts_setup(fresh, attempts)
    from distributed import Client

    with command_line_cluster(tmp_path, workers=2, nanny=True) as (address, _, _):
        with Client(address, set_as_default=False) as probe:
            before = worker_pids(probe)
            run = run_ok(fresh, SLOW_CELL.format(where=f"--scheduler {address}", extra=""))
            check_timed_out_run(run, fresh)
            after = worker_pids(probe)
    assert len(after) == 2 and len(set(before.values()) - set(after.values())) == 1


@pytest.mark.timeout(120)
def test_a_worker_without_a_nanny_gets_a_clear_message(fresh, tmp_path):
    with command_line_cluster(tmp_path, workers=1, nanny=False) as (address, _, _):
        message = usage_error(
            fresh,
            f"%%parallel_for --scheduler {address} --timeout 5s --progress none\n"
            "out = []\nfor i in range(3):\n    out.append(i)\n",
        )
    assert "--timeout needs workers that run under a nanny" in message
    assert "--no-nanny" in message and "tcp://127.0.0.1:" in message
    assert "out" not in fresh.user_ns or fresh.user_ns["out"] == []


@pytest.mark.parametrize("value", ["soon", "0", "-3s", "5days", "1.5x"])
def test_a_bad_timeout_names_the_accepted_forms(fresh, value):
    message = usage_error(
        fresh, f"%%parallel_for --timeout={value} --serial\nfor i in range(2):\n    pass\n"
    )
    assert message.startswith(f"--timeout {value}: give a number of seconds (90, 1.5)")
    assert "30s, 1.5s, 5m, 1h" in message


def test_timeout_and_serial_do_not_go_together(fresh):
    message = usage_error(
        fresh, "%%parallel_for --timeout 5m --serial\nfor i in range(2):\n    pass\n"
    )
    assert "--serial" in message and "cannot be restarted" in message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1.5s", 1.5), ("90", 90), (".5", 0.5)],
)
def test_durations(text, seconds):
    from dask_magic.engine.timeouts import format_duration, parse_duration

    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.timeout(120)
def test_partial_from_another_thread_while_the_run_goes_on(two_workers):
    from dask_magic.engine import execute
    from dask_magic.engine.loop import drive
    from dask_magic.engine.run import Run

    def slow_square(x):
        import time

        time.sleep(0.1)
        return x * x

    run = Run(list(range(30)))
    job = execute.make_job({"kind": "function", "fn": slow_square}, batch=1)
    seen: list[list] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(run.partial())
            time.sleep(0.01)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        drive(run, job, list(range(30)), two_workers, lambda _key: None)
    finally:
        stop.set()
        reader.join()
    assert all(len(p) == 30 and [r.index for r in p] == list(range(30)) for p in seen)
    done_counts = [sum(r.status == "done" for r in p) for p in seen]
    assert done_counts == sorted(done_counts)  # never goes back
    assert any(0 < n < 30 for n in done_counts)  # read while the run went on
    for snapshot in seen:
        for r in snapshot:
            assert r.status in ("done", "pending")
            assert r.value == (r.item * r.item if r.status == "done" else None)
    final = run.partial()
    assert [r.value for r in final] == run.results == [x * x for x in range(30)]


@pytest.mark.timeout(120)
def test_a_named_run_can_be_watched_from_another_thread_while_the_cell_runs(fresh, two_workers):
    fresh.user_ns["c"] = two_workers
    run_ok(fresh, "import time")
    fresh.user_ns.pop("watched", None)
    seen: list[list] = []
    stop = threading.Event()

    def read() -> None:  # what a second console on the kernel would do
        while not stop.is_set():
            run = fresh.user_ns.get("watched")
            if run is not None:
                seen.append(run.partial())
            time.sleep(0.01)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        run_ok(
            fresh,
            "%%parallel_for --client c --name watched --batch 1 --progress none\nout = []\n"
            "for i in range(20):\n    time.sleep(0.1)\n    out.append(i)\n",
        )
    finally:
        stop.set()
        reader.join()
    seen.append(fresh.user_ns["watched"].partial())
    done_counts = [sum(r.status == "done" for r in p) for p in seen]
    assert any(0 < n < 20 for n in done_counts)  # read while the cell ran
    assert done_counts == sorted(done_counts) and done_counts[-1] == 20
    assert all([r.item for r in p] == list(range(20)) for p in seen)


@pytest.mark.timeout(240)
def test_an_item_that_blocks_its_worker_in_c_code_is_stopped_by_the_backstop(fresh, two_workers):
    """A regular expression that backtracks for ages holds the GIL: the worker can neither
    report nor answer; the kernel restarts it once it has been silent for long."""
    fresh.user_ns["c"] = two_workers
    run_ok(fresh, "import re, time")
    before = worker_pids(two_workers)
    run = run_ok(
        fresh,
        "%%parallel_for --client c --timeout 1s --progress none\nout = []\n"
        "for i in range(12):\n    if i == 3:\n        re.match(r'(a+)+$', 'a' * 60 + 'b')\n"
        "    time.sleep(0.05)\n    out.append(i)\n",
    )
    assert (run.counts.done, run.counts.timeout) == (11, 1)
    [failure] = run.failures
    assert failure.index == 3 and "stopped answering" in failure.error.message
    assert fresh.user_ns["out"] == [i for i in range(12) if i != 3]
    after = worker_pids(two_workers)
    assert len(after) == 2
    assert not any(psutil.pid_exists(pid) for pid in set(before.values()) - set(after.values()))


def test_views_count_timed_out_items_apart():
    from dask_magic.engine.results import Counts, RunSnapshot
    from dask_magic.ui import html, text

    counts = Counts(10, done=8, failed=1, timeout=1)
    assert counts.finished == 10 and counts.queued == 0
    snapshot = RunSnapshot("r", None, RunStatus.FAILED, counts, 0.0, 3.0, None, None)
    assert "(8 done, 1 failed, 1 timed out)" in text.summary_text(snapshot)
    assert "1 timed out" in text.progress_line(snapshot)
    status = html.status_html(snapshot)
    assert 'data-timeout="1"' in status and "1</b> timed out" in status
    assert 'class="dm-bar-timeout"' in html.bar_html(counts)
