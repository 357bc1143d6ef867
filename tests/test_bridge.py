"""The kernel side of the sidebar channel: JSON shape, throttle, actions, comm lifecycle."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import SAMPLE_CLUSTER, FakeClock, wait_until

from dask_magic import bridge
from dask_magic._bridge_json import MAX_ITEMS_PER_GROUP, MAX_ITEMS_TOTAL
from dask_magic.bridge import (
    PROTOCOL_VERSION,
    TARGET_NAME,
    ActionError,
    Bridge,
    current_cell_id,
    parse_action,
    run_to_json,
)
from dask_magic.engine.results import (
    Counts,
    ErrorInfo,
    Failure,
    RunSnapshot,
    RunStatus,
)

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_TS = ROOT / "labextension" / "src" / "protocol.ts"
FIXTURE = ROOT / "labextension" / "src" / "__tests__" / "fixtures" / "messages.json"

# --------------------------------------------------------------------------- fakes


class FakeComm:
    """Records what the bridge sends; JSON round-trip proves every message is valid JSON."""

    def __init__(self, target_name: str = "", data: Any = None, comm_id: str | None = None, **_):
        self.comm_id = comm_id or uuid.uuid4().hex
        self.target_name = target_name
        self.open_data = _json(data) if data is not None else None
        self.sent: list[dict] = []
        self.closed = False
        self._on_msg = None
        self._on_close = None

    def send(self, data: Any) -> None:
        self.sent.append(_json(data))

    def on_msg(self, callback) -> None:
        self._on_msg = callback

    def on_close(self, callback) -> None:
        self._on_close = callback

    def close(self) -> None:
        self.closed = True

    # driven by the test, as the frontend would
    def receive(self, data: Any) -> None:
        self._on_msg({"content": {"comm_id": self.comm_id, "data": data}})

    def close_from_frontend(self) -> None:
        self._on_close({"content": {"comm_id": self.comm_id, "data": {}}})

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.sent if m["type"] == kind]


class FakeManager:
    def __init__(self) -> None:
        self.targets: dict[str, Any] = {}
        self.created: list[FakeComm] = []

    def register_target(self, name: str, callback) -> None:
        self.targets[name] = callback

    def unregister_target(self, name: str, callback) -> None:
        assert self.targets.get(name) == callback
        del self.targets[name]

    def open_from_frontend(self, name: str = TARGET_NAME) -> FakeComm:
        c = FakeComm(target_name=name)
        self.targets[name](c, {"content": {"comm_id": c.comm_id, "target_name": name, "data": {}}})
        return c


class FakeTimer:
    """Stands in for threading.Timer: the test fires it."""

    def __init__(self, interval: float, fn) -> None:
        self.interval = interval
        self.fn = fn
        self.daemon = False
        self.started = self.cancelled = False
        self.due = 0.0

    def start(self) -> None:
        self.started = True

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.fn()


def _json(data: Any) -> Any:
    return json.loads(json.dumps(data, allow_nan=False))


@pytest.fixture
def manager(monkeypatch) -> FakeManager:
    m = FakeManager()
    monkeypatch.setattr(bridge.comm, "get_comm_manager", lambda: m)

    def create_comm(**kwargs):
        c = FakeComm(**kwargs)
        m.created.append(c)
        return c

    monkeypatch.setattr(bridge.comm, "create_comm", create_comm)
    return m


class Shell:
    """A shell without a kernel (like plain IPython)."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timers() -> list[FakeTimer]:
    return []


@pytest.fixture
def actions() -> list[tuple[str, dict]]:
    return []


@pytest.fixture
def make_bridge(manager, clock, timers, actions):
    made: list[Bridge] = []

    def timer(interval, fn):
        t = FakeTimer(interval, fn)
        t.due = clock.now + interval
        timers.append(t)
        return t

    def make(**kwargs) -> Bridge:
        kwargs.setdefault("on_action", lambda action, args: actions.append((action, args)))
        b = Bridge(Shell(), clock=clock, timer=timer, **kwargs)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


# --------------------------------------------------------------------------- snapshots


def failure(index: int, type_name: str = "ValueError", line: int | None = 3, **kw) -> Failure:
    return Failure(
        index=index,
        item_repr=kw.pop("item", f"'data/{index}.csv'"),
        error=ErrorInfo(type_name=type_name, message=kw.pop("message", f"bad {index}")),
        line=line,
        traceback=kw.pop("traceback", f"  Cell line {line}\n{type_name}: bad {index}"),
        full_traceback="(full)",
        **kw,
    )


def snapshot(
    run_id: str = "r1",
    status: RunStatus = RunStatus.RUNNING,
    done: int = 0,
    failed: tuple[Failure, ...] = (),
    **kw,
) -> RunSnapshot:
    total = kw.pop("total", 10)
    running = kw.pop("running", 0 if status is not RunStatus.RUNNING else 2)
    return RunSnapshot(
        run_id=run_id,
        name=kw.pop("name", None),
        status=status,
        counts=Counts(total=total, done=done, failed=len(failed), running=running),
        started=kw.pop("started", 1_700_000_000.0),
        elapsed=kw.pop("elapsed", 1.5),
        rate=kw.pop("rate", 2.0),
        eta=kw.pop("eta", 4.0),
        cell_id=kw.pop("cell_id", "cell-1"),
        failures=failed,
        **kw,
    )


def example_final() -> RunSnapshot:
    """The run the shared fixture (and the jest tests) describe."""
    fails = (
        failure(3, "FileNotFoundError", 4, item="'data/2021-03.csv'", stdout="reading 3\n"),
        failure(7, "FileNotFoundError", 4, item="'data/2021-07.csv'"),
        failure(5, "ValueError", 6, item="'<b>html</b>'", message="<img src=x onerror=alert(1)>"),
    )
    return snapshot(
        "run-final",
        RunStatus.FAILED,
        done=7,
        failed=fails,
        running=0,
        elapsed=12.25,
        rate=0.8,
        eta=None,
        cell_id="9d1f6c0e-cell",
        cluster=SAMPLE_CLUSTER,
        name="loads",
    )


# --------------------------------------------------------------------------- JSON shape


def test_run_to_json_shape():
    data = run_to_json(example_final())
    assert data["run_id"] == "run-final"
    assert data["status"] == "failed"
    assert data["counts"] == {
        "total": 10,
        "done": 7,
        "failed": 3,
        "running": 0,
        "queued": 0,
        "cancelled": 0,
        "timeout": 0,
    }
    assert data["cell_id"] == "9d1f6c0e-cell"
    assert data["cluster"]["dashboard"] == "http://127.0.0.1:8787/status"
    groups = data["failures"]["groups"]
    assert [(g["label"], g["count"]) for g in groups] == [
        ("FileNotFoundError at line 4", 2),
        ("ValueError at line 6", 1),
    ]
    item = groups[0]["items"][0]
    assert item == {
        "index": 3,
        "item": "'data/2021-03.csv'",
        "type": "FileNotFoundError",
        "message": "bad 3",
        "line": 4,
        "kind": "user",
        "hint": "",
        "traceback": "  Cell line 4\nFileNotFoundError: bad 3",
        "stdout": "reading 3\n",
        "stderr": "",
    }
    assert _json(data) == data


def test_non_finite_numbers_become_null():
    data = run_to_json(snapshot(elapsed=float("nan"), rate=float("inf"), eta=None))
    assert (data["elapsed"], data["rate"], data["eta"]) == (None, None, None)
    json.dumps(data, allow_nan=False)


def test_groups_cap_items_but_keep_count():
    fails = tuple(failure(i) for i in range(MAX_ITEMS_PER_GROUP + 25))
    data = run_to_json(snapshot(failed=fails, total=200))
    (group,) = data["failures"]["groups"]
    assert group["count"] == MAX_ITEMS_PER_GROUP + 25
    assert len(group["items"]) == MAX_ITEMS_PER_GROUP
    assert data["failures"]["total"] == MAX_ITEMS_PER_GROUP + 25


def test_groups_share_a_total_budget():
    fails = tuple(failure(i, f"E{i % 10}", line=i % 10) for i in range(1000))
    data = run_to_json(snapshot(failed=fails, total=1000))
    groups = data["failures"]["groups"]
    assert [g["count"] for g in groups] == [100] * 10
    assert sum(len(g["items"]) for g in groups) == MAX_ITEMS_TOTAL
    assert len(json.dumps(data)) < 200_000


def test_long_text_is_cut():
    long_output = "".join(f"line {i}\n" for i in range(5_000))
    data = run_to_json(snapshot(failed=(failure(0, traceback="x" * 50_000, stdout=long_output),)))
    item = data["failures"]["groups"][0]["items"][0]
    assert len(item["traceback"]) < 8_100
    assert item["traceback"].endswith("more characters not shown)")
    assert len(item["stdout"]) < 4_100
    assert item["stdout"].endswith("line 4999\n")  # the end of an output is kept


def test_traceback_falls_back_to_summary():
    f = failure(0, traceback="")
    f = Failure(f.index, f.item_repr, f.error, f.line, "", "", "")
    data = run_to_json(snapshot(failed=(f,)))
    assert data["failures"]["groups"][0]["items"][0]["traceback"] == "ValueError: bad 0"


# --------------------------------------------------------------------------- versions + fixture


def test_protocol_version_matches_typescript():
    match = re.search(r"export const PROTOCOL_VERSION = (\d+);", PROTOCOL_TS.read_text())
    assert match, "PROTOCOL_VERSION not found in protocol.ts"
    assert int(match.group(1)) == PROTOCOL_VERSION


def test_target_name_matches_typescript():
    assert f"export const TARGET_NAME = '{TARGET_NAME}';" in PROTOCOL_TS.read_text()


def test_shared_fixture_matches_python(manager, make_bridge):
    """jest parses the same file with protocol.ts, so both sides agree on the shape."""
    b = make_bridge()
    b.set_cluster(SAMPLE_CLUSTER)
    b.finish(snapshot("run-old", RunStatus.FINISHED, done=10, running=0, started=1_699_999_000.0))
    b.finish(example_final())
    messages = {
        "state": b.state_message(),
        "run": {"version": PROTOCOL_VERSION, "type": "run", "run": run_to_json(example_final())},
        "run_same_failures": {
            "version": PROTOCOL_VERSION,
            "type": "run",
            "run": {**run_to_json(example_final()), "status": "running", "failures": None},
        },
        "cluster": {"version": PROTOCOL_VERSION, "type": "cluster", "cluster": None},
        "error": bridge._error_message("unknown run 'x'", "retry"),
    }
    text = json.dumps(messages, indent=2, sort_keys=True) + "\n"
    if os.environ.get("DASK_MAGIC_UPDATE_FIXTURES"):
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(text)
    assert FIXTURE.read_text() == text, "regenerate with DASK_MAGIC_UPDATE_FIXTURES=1"


def test_package_json_version_matches_python():
    from dask_magic import __version__

    package = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert package["version"] == __version__
    assert package["name"] == "dask-magic"
    assert package["jupyterlab"]["outputDir"] == "../dask_magic/labextension"


# --------------------------------------------------------------------------- comm lifecycle


def test_opens_comm_with_state_and_registers_target(manager, make_bridge):
    make_bridge()
    assert TARGET_NAME in manager.targets
    (opened,) = manager.created
    assert opened.target_name == TARGET_NAME
    assert opened.open_data == {
        "version": PROTOCOL_VERSION,
        "type": "state",
        "runs": [],
        "cluster": None,
        "limit": 20,
        "live": False,
    }


def test_frontend_open_gets_current_state(manager, make_bridge):
    b = make_bridge()
    b.finish(snapshot("a", RunStatus.FINISHED, done=10, running=0, started=1.0))
    b.finish(snapshot("b", RunStatus.FINISHED, done=10, running=0, started=2.0))
    late = manager.open_from_frontend()
    (state,) = late.sent
    assert state["type"] == "state"
    assert [r["run_id"] for r in state["runs"]] == ["b", "a"]  # newest first


def test_updates_go_to_every_open_comm_until_closed(manager, make_bridge):
    b = make_bridge()
    (first,) = manager.created
    second = manager.open_from_frontend()
    b.update(snapshot("r1"))
    assert len(first.of_type("run")) == len(second.of_type("run")) == 1
    second.close_from_frontend()
    b.finish(snapshot("r1", RunStatus.FINISHED, done=10, running=0))
    assert len(first.of_type("run")) == 2
    assert len(second.of_type("run")) == 1


def test_close_closes_comms_and_unregisters(manager, make_bridge):
    b = make_bridge()
    other = manager.open_from_frontend()
    b.close()
    assert all(c.closed for c in manager.created) and other.closed
    assert TARGET_NAME not in manager.targets
    b.update(snapshot())  # harmless after close
    assert other.of_type("run") == []


def test_keeps_last_runs_only(manager, make_bridge):
    b = make_bridge(max_runs=3)
    for i in range(5):
        b.finish(snapshot(f"r{i}", RunStatus.FINISHED, done=10, running=0))
    assert [r["run_id"] for r in b.runs] == ["r4", "r3", "r2"]
    assert b.state_message()["limit"] == 3


# --------------------------------------------------------------------------- throttle


def test_throttle_sends_first_and_then_trailing_update(manager, make_bridge, clock, timers):
    b = make_bridge()
    (c,) = manager.created
    b.update(snapshot(done=1))  # new run: sent at once
    clock.now += 0.05
    b.update(snapshot(done=2))  # too soon: held, timer armed
    clock.now += 0.05
    b.update(snapshot(done=3))  # still held; same timer
    assert [m["run"]["counts"]["done"] for m in c.of_type("run")] == [1]
    assert len(timers) == 1 and timers[0].started and timers[0].daemon
    assert timers[0].interval == pytest.approx(0.15)
    clock.now += 0.1
    timers[0].fire()  # trailing edge: the latest state goes out
    assert [m["run"]["counts"]["done"] for m in c.of_type("run")] == [1, 3]
    clock.now += 0.3
    b.update(snapshot(done=4))  # interval passed: sent at once
    assert [m["run"]["counts"]["done"] for m in c.of_type("run")] == [1, 3, 4]


def test_throttle_at_most_five_per_second(manager, make_bridge, clock, timers):
    b = make_bridge()
    (c,) = manager.created
    start = clock.now
    for i in range(100):  # 100 updates in one second, 10 ms apart; due timers fire
        b.update(snapshot(done=i, total=100))
        clock.now += 0.01
        for t in timers:
            if t.started and not t.cancelled and clock.now >= t.due:
                t.fire()
                t.cancel()
    assert clock.now - start == pytest.approx(1.0)
    sent = [m["run"]["counts"]["done"] for m in c.of_type("run")]
    assert 4 <= len(sent) <= 6
    b.finish(snapshot(status=RunStatus.FINISHED, done=100, total=100, running=0))
    assert c.of_type("run")[-1]["run"]["counts"]["done"] == 100


def test_final_state_always_goes_out(manager, make_bridge, clock, timers):
    b = make_bridge()
    (c,) = manager.created
    b.update(snapshot(done=1))
    clock.now += 0.01
    b.update(snapshot(done=5))
    clock.now += 0.01
    b.finish(snapshot(status=RunStatus.FINISHED, done=10, running=0))
    runs = [m["run"] for m in c.of_type("run")]
    assert [(r["status"], r["counts"]["done"]) for r in runs] == [("running", 1), ("finished", 10)]
    assert timers[0].cancelled
    timers[0].fire()  # a timer that fires late sends nothing more
    assert len(c.of_type("run")) == 2


def test_unchanged_failures_are_not_resent(manager, make_bridge, clock):
    b = make_bridge()
    (c,) = manager.created
    fails = (failure(1),)
    b.update(snapshot(done=1, failed=fails))
    clock.now += 1
    b.update(snapshot(done=2, failed=fails))
    clock.now += 1
    b.finish(snapshot(status=RunStatus.FAILED, done=9, failed=(*fails, failure(2)), running=0))
    sent = [m["run"]["failures"] for m in c.of_type("run")]
    assert sent[0]["total"] == 1
    assert sent[1] is None  # the sidebar keeps the failures it has
    assert sent[2]["total"] == 2
    late = manager.open_from_frontend()  # a new comm gets everything
    assert late.sent[0]["runs"][0]["failures"]["total"] == 2


def test_throttle_is_per_run(manager, make_bridge, clock):
    b = make_bridge()
    (c,) = manager.created
    b.update(snapshot("a"))
    b.update(snapshot("b"))
    assert [m["run"]["run_id"] for m in c.of_type("run")] == ["a", "b"]


def test_real_timer_flushes(manager, actions):
    """With threading.Timer, the held update arrives by itself."""
    b = Bridge(Shell(), on_action=lambda *a: None, min_interval=0.05)
    try:
        (c,) = manager.created
        b.update(snapshot(done=1))
        b.update(snapshot(done=2))
        wait_until(lambda: len(c.of_type("run")) >= 2, timeout=5, what="the held update")
        assert [m["run"]["counts"]["done"] for m in c.of_type("run")] == [1, 2]
    finally:
        b.close()


# --------------------------------------------------------------------------- cluster


def test_set_cluster_pushes_once_per_change(manager, make_bridge):
    b = make_bridge()
    (c,) = manager.created
    b.set_cluster(SAMPLE_CLUSTER)
    b.set_cluster(SAMPLE_CLUSTER)
    b.update(snapshot(cluster=SAMPLE_CLUSTER))
    b.set_cluster(None)
    assert [m["cluster"] for m in c.of_type("cluster")] == [
        {
            "scheduler": "tcp://127.0.0.1:8786",
            "workers": 2,
            "threads": 2,
            "memory": 4 * 2**30,
            "dashboard": "http://127.0.0.1:8787/status",
            "local": True,
        },
        None,
    ]
    assert b.state_message()["cluster"] is None


# --------------------------------------------------------------------------- actions


@pytest.mark.parametrize(
    "data, error",
    [
        (None, "must be a JSON object"),
        ([], "must be a JSON object"),
        ({"action": "refresh"}, "protocol version None"),
        ({"version": 2, "action": "refresh"}, "protocol version 2"),
        ({"version": True, "action": "refresh"}, "protocol version True"),
        ({"version": "1", "action": "refresh"}, "protocol version '1'"),
        ({"version": 1, "action": "rm -rf"}, "unknown action 'rm -rf'"),
        ({"version": 1}, "unknown action None"),
        ({"version": 1, "action": "retry"}, "retry needs a run_id"),
        ({"version": 1, "action": "retry", "run_id": 3}, "retry needs a run_id"),
        ({"version": 1, "action": "retry", "run_id": ""}, "retry needs a run_id"),
        ({"version": 1, "action": "cancel"}, "cancel needs a run_id"),
        ({"version": 1, "action": "cancel_item", "run_id": "r"}, "needs an item index"),
        ({"version": 1, "action": "cancel_item", "run_id": "r", "index": -1}, "item index"),
        ({"version": 1, "action": "cancel_item", "run_id": "r", "index": True}, "item index"),
    ],
)
def test_parse_action_refuses(data, error):
    with pytest.raises(ActionError, match=re.escape(error)):
        parse_action(data)


def test_parse_action_accepts():
    assert parse_action({"version": 1, "action": "retry", "run_id": "r1", "x": 1}) == (
        "retry",
        {"run_id": "r1"},
    )
    assert parse_action({"version": 1, "action": "close_cluster"}) == ("close_cluster", {})
    assert parse_action({"version": 1, "action": "refresh"}) == ("refresh", {})


def test_bad_message_gets_error_reply_and_no_action(manager, make_bridge, actions):
    make_bridge()
    c = manager.open_from_frontend()
    c.receive({"version": 1, "action": "shutdown"})
    c.receive({"version": 9, "action": "retry", "run_id": "r1"})
    assert actions == []
    errors = c.of_type("error")
    assert errors[0]["message"] == "unknown action 'shutdown'"
    assert "protocol version 9" in errors[1]["message"]


def test_retry_dispatches_for_a_known_finished_run(manager, make_bridge, actions):
    b = make_bridge()
    c = manager.open_from_frontend()
    b.finish(snapshot("r1", RunStatus.FAILED, done=9, failed=(failure(1),), running=0))
    c.receive({"version": 1, "action": "retry", "run_id": "r1"})
    c.receive({"version": 1, "action": "retry", "run_id": "nope"})
    assert actions == [("retry", {"run_id": "r1"})]
    assert c.of_type("error")[0] == {
        "version": 1,
        "type": "error",
        "message": "unknown run 'nope'",
        "action": "retry",
    }


def test_retry_and_close_refused_while_a_run_is_live(manager, make_bridge, actions):
    b = make_bridge()
    c = manager.open_from_frontend()
    b.finish(snapshot("old", RunStatus.FAILED, failed=(failure(1),), running=0))
    b.update(snapshot("live"))
    c.receive({"version": 1, "action": "retry", "run_id": "old"})
    c.receive({"version": 1, "action": "close_cluster"})
    assert actions == []
    assert all("still in progress" in e["message"] for e in c.of_type("error"))
    b.finish(snapshot("live", RunStatus.INTERRUPTED, running=0))
    c.receive({"version": 1, "action": "close_cluster"})
    assert actions == [("close_cluster", {})]


def test_refresh_replies_with_state_and_dispatches(manager, make_bridge, actions):
    b = make_bridge()
    c = manager.open_from_frontend()
    b.finish(snapshot("r1", RunStatus.FINISHED, running=0, done=10))
    c.sent.clear()
    c.receive({"version": 1, "action": "refresh"})
    assert [m["type"] for m in c.sent] == ["state"]
    assert actions == [("refresh", {})]


def test_failing_action_is_reported_not_raised(manager, make_bridge):
    def boom(action, args):
        raise RuntimeError("no cluster to close")

    make_bridge(on_action=boom)
    c = manager.open_from_frontend()
    c.receive({"version": 1, "action": "close_cluster"})
    assert c.of_type("error")[0]["message"] == (
        "close_cluster failed: RuntimeError: no cluster to close"
    )


# --------------------------------------------------------------------------- kernel helpers


class FakeKernel:
    def __init__(self, parent: Any) -> None:
        self._parent = parent

    def get_parent(self) -> Any:
        return self._parent


class KernelShell:
    def __init__(self, parent: Any) -> None:
        self.kernel = FakeKernel(parent)


@pytest.mark.parametrize(
    "shell, expected",
    [
        (Shell(), None),
        (KernelShell({}), None),
        (KernelShell({"metadata": {}}), None),
        (KernelShell({"metadata": {"cellId": 5}}), None),
        (KernelShell({"metadata": {"cellId": ""}}), None),
        (KernelShell({"metadata": {"cellId": "abc-123"}}), "abc-123"),
    ],
)
def test_current_cell_id(shell, expected):
    assert current_cell_id(shell) == expected


def test_register_is_idempotent_and_unregister_closes(manager):
    ip = Shell()
    calls = []
    first = bridge.register(ip, lambda a, k: calls.append(1))
    second = bridge.register(ip, lambda a, k: calls.append(2))
    try:
        assert first is second
        assert len(manager.created) == 1
        c = manager.open_from_frontend()
        c.receive({"version": 1, "action": "close_cluster"})
        assert calls == [2]
    finally:
        bridge.unregister(ip)
    assert TARGET_NAME not in manager.targets
    bridge.unregister(ip)  # twice is fine


def test_bridge_imports_only_what_it_may():
    source = (ROOT / "dask_magic" / "bridge.py").read_text()
    imports = re.findall(r"^(?:from|import) ([\w.]+)", source, flags=re.M)
    allowed_stdlib = {
        "__future__",
        "logging",
        "math",
        "threading",
        "time",
        "collections",
        "collections.abc",
        "typing",
    }
    assert set(imports) <= allowed_stdlib | {
        "comm",
        ".engine.results",
        "._control_comm",
        "._bridge_json",
    }
    helper = (ROOT / "dask_magic" / "_bridge_json.py").read_text()
    imports = re.findall(r"^(?:from|import) ([\w.]+)", helper, flags=re.M)
    assert set(imports) <= {"__future__", "math", ".engine.results"}


# --------------------------------------------------------------------------- live mode


def _receive_on_a_thread(c, data) -> None:
    """As a kernel subshell delivers a comm message: on a thread that is not the main one."""
    import threading

    thread = threading.Thread(target=c.receive, args=(data,))
    thread.start()
    thread.join(10)


def test_a_hello_on_the_control_comm_from_another_thread_turns_live_mode_on(
    manager, make_bridge, actions
):
    from dask_magic._control_comm import CONTROL_TARGET

    b = make_bridge()
    control = manager.open_from_frontend(CONTROL_TARGET)
    assert control.sent == []  # nothing on open: a reply would pin the comm to the main shell
    control.receive({"version": 1, "action": "hello"})
    assert not b.live and control.of_type("live")[-1]["live"] is False
    _receive_on_a_thread(control, {"version": 1, "action": "hello"})
    assert b.live and control.of_type("live")[-1]["live"] is True
    c = manager.open_from_frontend()
    assert c.of_type("state")[-1]["live"] is True


def test_actions_for_the_live_run_go_to_its_queue(manager, make_bridge, actions):
    from dask_magic._control_comm import CONTROL_TARGET
    from dask_magic.engine import controls

    b = make_bridge()
    control = manager.open_from_frontend(CONTROL_TARGET)
    b.update(snapshot("live"))
    controls.default.open("live")
    try:
        for data in (
            {"version": 1, "action": "retry", "run_id": "live"},
            {"version": 1, "action": "cancel_item", "run_id": "live", "index": 4},
            {"version": 1, "action": "cancel", "run_id": "live"},
        ):
            _receive_on_a_thread(control, data)
        taken = controls.default.take("live")
    finally:
        controls.default.close("live")
    assert [(t.kind, t.index) for t in taken] == [
        ("retry", None),
        ("cancel_item", 4),
        ("cancel", None),
    ]
    assert actions == [] and control.of_type("error") == []
    control.receive({"version": 1, "action": "cancel", "run_id": "live"})
    control.receive({"version": 1, "action": "shutdown"})
    errors = [e["message"] for e in control.of_type("error")]
    assert errors == ["cancel: that run is not running", "unknown action 'shutdown'"]


def test_cancel_of_a_run_that_has_ended_is_refused(manager, make_bridge, actions):
    b = make_bridge()
    c = manager.open_from_frontend()
    b.finish(snapshot("old", RunStatus.FAILED, failed=(failure(1),), running=0))
    _receive_on_a_thread(c, {"version": 1, "action": "cancel", "run_id": "old"})
    assert actions == []
    assert "has ended" in c.of_type("error")[0]["message"]
