"""Actions that act while a cell runs, in a real ipykernel driven over ZMQ by jupyter_client.

As JupyterLab does: a subshell made with ``create_subshell_request`` on the control channel,
the control comm (``dask_magic_control``) opened and spoken to on it. A front end without
subshells sends the same messages on the main shell: they wait for the cell, and the run
goes on as before.
"""

from __future__ import annotations

import os
import queue
import signal
import time
import uuid

import pytest
from helpers import running_kernel

CONTROL = "dask_magic_control"


@pytest.fixture
def kc(tmp_path):
    with running_kernel() as client:
        _stacks_on_signal(client, tmp_path / "kernel-stacks.txt")
        yield client


def _stacks_on_signal(kc, path) -> None:
    """Make the kernel write every thread's stack to ``path`` on SIGUSR1: a cell that never
    ends is then reported with where the kernel waits, not only with a timeout."""
    code = (
        "import faulthandler, os, signal\n"
        f"_dm_stacks = open({str(path)!r}, 'w')\n"
        "faulthandler.register(signal.SIGUSR1, file=_dm_stacks, all_threads=True)\n"
        "print(os.getpid())"
    )
    kc.stacks = (int(_printed(kc, code)), path)


def _kernel_stacks(kc) -> str:
    """Where each of the kernel's threads is now ("" before `_stacks_on_signal`)."""
    if not hasattr(kc, "stacks"):
        return ""
    pid, path = kc.stacks
    os.kill(pid, signal.SIGUSR1)
    time.sleep(2)
    return f"\nthe kernel's threads:\n{path.read_text()}"


def _send(kc, msg_type: str, content: dict, subshell: str | None = None) -> dict:
    msg = kc.session.msg(msg_type, content)
    if subshell is not None:
        msg["header"]["subshell_id"] = subshell
    kc.shell_channel.send(msg)
    return msg


def _subshell(kc) -> str:
    """A new subshell's id; the test is skipped where the kernel has no subshells."""
    reply = _reply_to(kc, _send(kc, "kernel_info_request", {}), timeout=60)
    if "kernel subshells" not in reply["content"].get("supported_features", []):
        pytest.skip("this ipykernel has no subshells (7.0 added them; ipykernel 6 on Python 3.10)")
    msg = kc.session.msg("create_subshell_request", {})
    kc.control_channel.send(msg)
    while True:
        reply = kc.get_control_msg(timeout=30)
        if _parent_id(reply) == msg["header"]["msg_id"]:
            return reply["content"]["subshell_id"]


def _iopub_until(kc, predicate, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        if predicate(m):
            return m
        seen.append((m["msg_type"], str(m["content"])[:200]))
    raise AssertionError(
        f"the expected message did not come; last seen: {seen[-5:]}{_kernel_stacks(kc)}"
    )


def _comm_data(m: dict, comm_id: str | None = None) -> dict:
    if m["msg_type"] != "comm_msg":
        return {}
    if comm_id is not None and m["content"]["comm_id"] != comm_id:
        return {}
    return m["content"]["data"]


def _execute(kc, code: str, wait: bool = True) -> dict:
    msg = _send(kc, "execute_request", {"code": code, "silent": False})
    return _reply_to(kc, msg) if wait else msg


def _reply_to(kc, msg: dict, timeout: float = 120) -> dict:
    """The shell reply to ``msg`` (replies to other requests are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            what = msg["content"].get("code", msg["header"]["msg_type"])
            raise AssertionError(f"no reply to {what!r}{_kernel_stacks(kc)}") from None
        if _parent_id(reply) == msg["header"]["msg_id"]:
            return reply


def _printed(kc, code: str) -> str:
    """Run ``code``; what it printed. A marker printed last tells the end: with subshells,
    ipykernel may send the cell's output after its idle status."""
    marker = f"end-{uuid.uuid4().hex}"
    msg = _execute(kc, f"{code}\nprint({marker!r})", wait=False)
    out = ""
    kinds: list[str] = []
    while marker not in out:
        try:  # a cell may start a new cluster: minutes on a loaded CI machine
            m = _iopub_until(kc, lambda m: _parent_id(m) == msg["header"]["msg_id"], 180)
        except AssertionError as exc:
            said = f"the cell printed {out!r} in the messages {kinds}"
            raise AssertionError(f"{said}; then: {exc}") from None
        kinds.append(m["msg_type"])
        if m["msg_type"] == "stream":
            out += m["content"]["text"]
        assert m["msg_type"] != "error", m["content"]
        assert "UsageError" not in out, out  # the magic refused or stopped: say why at once
    return out.split(marker)[0]


def _parent_id(m: dict) -> str | None:
    return m["parent_header"].get("msg_id")


def _control_comm(kc, subshell: str | None) -> tuple[str, bool]:
    """Open the control comm and say hello (on ``subshell``, or the main shell)."""
    comm_id = uuid.uuid4().hex
    _send(kc, "comm_open", {"comm_id": comm_id, "target_name": CONTROL, "data": {}}, subshell)
    _send(kc, "comm_msg", {"comm_id": comm_id, "data": {"version": 1, "action": "hello"}}, subshell)
    m = _iopub_until(kc, lambda m: _comm_data(m, comm_id).get("type") == "live")
    return comm_id, m["content"]["data"]["live"]


_SEEN_RUNS: set[str] = set()


def _start_long_run(kc, items: int) -> tuple[dict, str]:
    """Start ``items`` items of 0.1 s; return the execute request and the run's id (messages
    of earlier runs may still be queued: they are skipped)."""
    msg = _execute(
        kc,
        f"%%parallel_for --name r --fresh\nfor i in range({items}):\n"
        "    import time; time.sleep(0.1)\n    out.append(i)\n",
        wait=False,
    )

    def running(m: dict) -> bool:
        run = _comm_data(m).get("run") or {}
        fresh = run.get("run_id") not in _SEEN_RUNS
        return fresh and run.get("status") == "running" and run["counts"]["done"] >= 10

    run_id = _comm_data(_iopub_until(kc, running, timeout=120))["run"]["run_id"]
    _SEEN_RUNS.add(run_id)
    return msg, run_id


def _wait_reply(kc, msg: dict) -> dict:
    reply = _reply_to(kc, msg)
    if reply["content"]["status"] == "error":
        _until_requests_run(kc)
    return reply


def _until_requests_run(kc) -> None:
    """After a cell that failed, ipykernel aborts the execute requests that reach it before
    it has handled its own "stop aborting" message, which it queues *after* sending the
    failed cell's reply: a request sent at once may be aborted. Wait until one runs."""
    for _ in range(50):
        if _execute(kc, "pass")["content"]["status"] != "aborted":
            return
        time.sleep(0.1)
    raise AssertionError("the kernel still aborts every request after the failed cell")


def test_cancel_on_a_subshell_ends_the_run_while_it_runs(kc):
    _execute(kc, "%load_ext dask_magic\nout = []")
    sub = _subshell(kc)
    comm_id, live = _control_comm(kc, sub)
    assert live
    request, run_id = _start_long_run(kc, 400)
    cancel = {"version": 1, "action": "cancel", "run_id": run_id}
    _send(kc, "comm_msg", {"comm_id": comm_id, "data": cancel}, sub)
    reply = _wait_reply(kc, request)
    assert reply["content"]["status"] == "error"  # the cell stops, as after Ctrl-C
    printed = _printed(kc, "print(r.status, r.counts.done, r.counts.cancelled, out == sorted(out))")
    status, done, cancelled, in_order = printed.split()
    assert status == "interrupted" and in_order == "True"
    assert 10 <= int(done) < 400 and int(done) + int(cancelled) == 400
    # the next cell runs on the same cluster
    assert _printed(kc, "%%parallel_for --fresh\nfor i in range(3):\n    out.append(-i)\n") == ""
    assert _printed(kc, "print(out[-3:])").strip() == "[0, -1, -2]"


def test_without_a_subshell_the_action_waits_and_the_run_goes_on(kc):
    _execute(kc, "%load_ext dask_magic\nout = []")
    comm_id, live = _control_comm(kc, None)
    assert not live
    request, run_id = _start_long_run(kc, 40)
    cancel = {"version": 1, "action": "cancel", "run_id": run_id}
    _send(kc, "comm_msg", {"comm_id": comm_id, "data": cancel})
    assert _wait_reply(kc, request)["content"]["status"] == "ok"
    error = _iopub_until(kc, lambda m: _comm_data(m, comm_id).get("type") == "error")
    assert "not running" in error["content"]["data"]["message"]
    assert _printed(kc, "print(r.status, r.counts.done)").split() == ["finished", "40"]


RESOURCES = """\
import json, psutil, threading
_me = psutil.Process()
print(json.dumps({"threads": threading.active_count(),
                  "children": len(_me.children(recursive=True)),
                  "sockets": len(_me.net_connections(kind="inet")),
                  "listening": sum(c.status == "LISTEN" for c in _me.net_connections("inet"))}))
"""


def _resources(kc) -> dict:
    import json

    return json.loads(_printed(kc, RESOURCES).strip().splitlines()[-1])


def test_twenty_cancels_in_a_row_leak_nothing(kc):
    _execute(kc, "%load_ext dask_magic\nout = []")
    sub = _subshell(kc)
    comm_id, live = _control_comm(kc, sub)
    assert live
    for _ in range(3):  # the first run starts the cluster; the client's pools fill up
        request, run_id = _start_long_run(kc, 400)
        _send(kc, "comm_msg", {"comm_id": comm_id, "data": _cancel(run_id)}, sub)
        _wait_reply(kc, request)
    before = wait_until_settled(kc, {})
    seconds = []
    for _ in range(20):
        request, run_id = _start_long_run(kc, 400)
        sent = time.monotonic()
        _send(kc, "comm_msg", {"comm_id": comm_id, "data": _cancel(run_id)}, sub)
        assert _wait_reply(kc, request)["content"]["status"] == "error"  # interrupted
        seconds.append(time.monotonic() - sent)
    print(f"cancel to cell end: median {sorted(seconds)[10]:.2f} s, max {max(seconds):.2f} s")
    assert _printed(kc, "print(r.status)").strip() == "interrupted"
    after = wait_until_settled(kc, before)
    print(f"before {before}, after {after}")
    # Nothing left behind: no child process or listening socket more than before. The
    # client's connection pool and thread pools may grow by a few under load (they are
    # bounded); one thread or socket leaked per cancel would add 20.
    assert after["children"] <= before["children"], (before, after)
    assert after["listening"] <= before["listening"], (before, after)
    assert after["threads"] <= before["threads"] + 4, (before, after)
    assert after["sockets"] <= before["sockets"] + 4, (before, after)


def _cancel(run_id: str) -> dict:
    return {"version": 1, "action": "cancel", "run_id": run_id}


def wait_until_settled(kc, before: dict) -> dict:
    """The kernel's threads, child processes and sockets once they are back to ``before``
    (a worker's connections close a moment after the run ends), or the last reading."""
    deadline = time.monotonic() + 30
    last: dict = {}
    while True:
        now = _resources(kc)
        settled = all(now[k] <= before[k] for k in before) if before else now == last
        if settled or time.monotonic() > deadline:
            return now
        last = now
        time.sleep(1.0)


def test_retry_on_a_subshell_reruns_the_failed_items_during_the_run(kc, tmp_path):
    flag = tmp_path / "ok"
    _execute(kc, f"%load_ext dask_magic\nout = []\nflag = {str(flag)!r}")
    sub = _subshell(kc)
    comm_id, live = _control_comm(kc, sub)
    assert live
    request = _execute(
        kc,
        "%%parallel_for --name r --fresh\nfor i in range(120):\n"
        "    import os, time; time.sleep(0.1)\n"
        "    if i in (4, 9) and not os.path.exists(flag):\n        raise ValueError(i)\n"
        "    out.append(i)\n",
        wait=False,
    )

    def two_failed(m: dict) -> bool:
        run = _comm_data(m).get("run") or {}
        return run.get("status") == "running" and run["counts"]["failed"] == 2

    run = _comm_data(_iopub_until(kc, two_failed, timeout=120))["run"]
    assert run["counts"]["done"] < 100, "the run was nearly over: the retry would come late"
    flag.touch()  # the fix
    retry = {"version": 1, "action": "retry", "run_id": run["run_id"]}
    _send(kc, "comm_msg", {"comm_id": comm_id, "data": retry}, sub)
    assert _wait_reply(kc, request)["content"]["status"] == "ok"
    printed = _printed(
        kc, "print(r.status, r.counts.done, r.counts.failed, out == list(range(120)))"
    )
    assert printed.split() == ["finished", "120", "0", "True"]


def test_cancel_item_on_a_subshell_ends_that_item_and_the_run_goes_on(kc):
    _execute(kc, "%load_ext dask_magic\nout = []")
    sub = _subshell(kc)
    comm_id, live = _control_comm(kc, sub)
    assert live
    request = _execute(
        kc,
        "%%parallel_for --name r --fresh\nfor i in range(12):\n"
        "    import time; time.sleep(600 if i == 5 else 0.5)\n    out.append(i)\n",
        wait=False,
    )

    def five_runs(m: dict) -> bool:
        run = _comm_data(m).get("run") or {}
        rows = {r["index"]: r for r in run.get("running", [])}
        return run.get("status") == "running" and (rows.get(5) or {}).get("elapsed", 0) >= 1

    run = _comm_data(_iopub_until(kc, five_runs, timeout=120))["run"]
    assert run["running"][0]["item"] == "5"  # the longest-running item comes first
    sent = time.monotonic()
    cancel_item = {"version": 1, "action": "cancel_item", "run_id": run["run_id"], "index": 5}
    _send(kc, "comm_msg", {"comm_id": comm_id, "data": cancel_item}, sub)

    def cancelled(m: dict) -> bool:
        counts = (_comm_data(m).get("run") or {}).get("counts") or {}
        return counts.get("cancelled") == 1

    _iopub_until(kc, cancelled, timeout=60)
    print(f"cancel_item to the item ending cancelled: {time.monotonic() - sent:.2f} s")
    assert _wait_reply(kc, request)["content"]["status"] == "ok"  # the rest ran to the end
    printed = _printed(
        kc,
        "print(r.status, r.counts.done, r.counts.cancelled, r.counts.failed)\n"
        "print(out == [i for i in range(12) if i != 5])\nprint(r.message)",
    )
    counts, in_order, message = printed.strip().splitlines()
    assert counts.split() == ["failed", "11", "1", "0"] and in_order == "True"
    assert "1 item was cancelled during the run" in message
    assert "without it" in message
