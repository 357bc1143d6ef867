"""The bridge in a real ipykernel, driven over ZMQ by jupyter_client as a frontend would.

Checks what the fakes in test_bridge.py cannot: how ipykernel delivers ``metadata.cellId``,
that a comm to an unregistered target is closed (the sidebar's "not loaded" hint), and the
messages on the wire after ``Bridge`` is registered.
"""

from __future__ import annotations

import queue
import time
import uuid

import pytest
from helpers import running_kernel, wait_until


@pytest.fixture(scope="module")
def kernel():
    with running_kernel() as client:
        yield client


def execute(kc, code: str, metadata: dict | None = None) -> str:
    """Run code; return its stdout (fails on an error)."""
    return execute_all(kc, code, metadata)[0]


def execute_all(kc, code: str, metadata: dict | None = None) -> tuple[str, list[dict]]:
    """Run code; return its stdout and every iopub message seen meanwhile."""
    msg = kc.session.msg(
        "execute_request", {"code": code, "silent": False}, metadata=metadata or {}
    )
    kc.shell_channel.send(msg)
    reply = _reply_to(kc, msg)
    assert reply["content"]["status"] == "ok", reply["content"]
    out = []
    msgs = drain(kc)
    for m in msgs:
        if (
            m["msg_type"] == "stream"
            and m["parent_header"].get("msg_id") == msg["header"]["msg_id"]
        ):
            out.append(m["content"]["text"])
    return "".join(out), msgs


def _reply_to(kc, msg: dict, timeout: float = 30) -> dict:
    """The shell reply to ``msg``, past any stale one: jupyter_client's wait_for_ready resends
    kernel_info_request while a slow kernel starts, and the extra replies stay queued."""
    deadline = time.monotonic() + timeout
    while True:
        reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply
        assert reply["msg_type"] == "kernel_info_reply", reply  # nothing else may be stray


def drain(kc, wait: float = 0.5) -> list[dict]:
    """All iopub messages until none arrives for `wait` seconds."""
    msgs = []
    while True:
        try:
            msgs.append(kc.get_iopub_msg(timeout=wait))
        except queue.Empty:
            return msgs


def wait_for(kc, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        if predicate(m):
            return m
    raise AssertionError("message not seen")


def comm_send(kc, msg_type: str, content: dict) -> None:
    kc.shell_channel.send(kc.session.msg(msg_type, content))


def test_cell_id_arrives_in_execute_request_metadata(kernel):
    code = "from dask_magic.bridge import current_cell_id; print(current_cell_id(get_ipython()))"
    assert execute(kernel, code, {"cellId": "cell-abc-123"}).strip() == "cell-abc-123"
    assert execute(kernel, code).strip() == "None"


def test_comm_lifecycle_on_the_wire(kernel):
    # Not loaded yet: the kernel closes a comm opened to the target (sidebar shows the hint).
    probe = uuid.uuid4().hex
    comm_send(kernel, "comm_open", {"comm_id": probe, "target_name": "dask_magic", "data": {}})
    closed = wait_for(kernel, lambda m: m["msg_type"] == "comm_close")
    assert closed["content"]["comm_id"] == probe

    # Loading opens a comm to the frontend, carrying the state.
    _, msgs = execute_all(
        kernel,
        "from dask_magic import bridge\n"
        "acts = []\n"
        "b = bridge.register(get_ipython(), lambda a, k: acts.append((a, k)))\n",
    )
    (opened,) = [m for m in msgs if m["msg_type"] == "comm_open"]
    assert opened["content"]["target_name"] == "dask_magic"
    assert opened["content"]["data"]["type"] == "state"

    # A frontend (after a reload) opens its comm: it gets the state at once.
    late = uuid.uuid4().hex
    comm_send(kernel, "comm_open", {"comm_id": late, "target_name": "dask_magic", "data": {}})
    state = wait_for(kernel, lambda m: m["msg_type"] == "comm_msg")
    assert state["content"]["comm_id"] == late
    assert state["content"]["data"] == {
        "version": 1,
        "type": "state",
        "runs": [],
        "cluster": None,
        "limit": 20,
        "live": False,  # nothing came on the control comm's subshell yet
    }

    # A bad action is refused on the same comm; a good one reaches on_action.
    comm_send(kernel, "comm_msg", {"comm_id": late, "data": {"version": 1, "action": "rm"}})
    error = wait_for(kernel, lambda m: m["msg_type"] == "comm_msg")
    assert error["content"]["data"]["type"] == "error"
    assert error["content"]["data"]["message"] == "unknown action 'rm'"
    comm_send(
        kernel, "comm_msg", {"comm_id": late, "data": {"version": 1, "action": "close_cluster"}}
    )
    # the kernel handles the comm message in its own time: ask until it has
    wait_until(
        lambda: execute(kernel, "print(acts)").strip() == "[('close_cluster', {})]",
        timeout=30,
        what="the close_cluster action in the kernel",
    )

    # A run's final state goes to the comm.
    execute(
        kernel,
        "from dask_magic.engine.results import Counts, RunSnapshot, RunStatus\n"
        "b.finish(RunSnapshot('r1', None, RunStatus.FINISHED, Counts(total=3, done=3), 0.0, 1.0,"
        " 3.0, None, cell_id=bridge.current_cell_id(get_ipython())))\n",
        {"cellId": "the-cell"},
    )
    comm_send(kernel, "comm_msg", {"comm_id": late, "data": {"version": 1, "action": "refresh"}})
    refreshed = wait_for(kernel, lambda m: m["msg_type"] == "comm_msg")
    (run,) = refreshed["content"]["data"]["runs"]
    assert (run["run_id"], run["status"], run["cell_id"]) == ("r1", "finished", "the-cell")

    # Unloading closes the comms (the sidebar goes back to the hint).
    _, msgs = execute_all(kernel, "bridge.unregister(get_ipython())")
    closed = {m["content"]["comm_id"] for m in msgs if m["msg_type"] == "comm_close"}
    assert closed == {late, opened["content"]["comm_id"]}
