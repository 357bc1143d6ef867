"""The versioned comm channel between the kernel and the JupyterLab sidebar.

The kernel side of the sidebar (``labextension/src/protocol.ts`` is the other side). A `Bridge`
registers the comm target ``dask_magic`` (so a frontend that connects or reloads later can open
a comm and get the current state) and opens one comm to the frontend when it is created. It
keeps the JSON of the last runs and pushes, to every open comm:

* ``{"version": 1, "type": "state", "runs": [...], "cluster": {...} | None, "limit": N}`` when a
  comm opens and on ``refresh``;
* ``{"version": 1, "type": "run", "run": {...}}`` when a run changes, at most about 5 times a
  second per run; the final state of a run always goes out;
* ``{"version": 1, "type": "cluster", "cluster": {...} | None}`` when the cluster changes;
* ``{"version": 1, "type": "error", "message": str, "action": str | None}`` for a refused action.

The frontend sends ``{"version": 1, "action": "retry", "run_id": str}``,
``{"version": 1, "action": "close_cluster"}``, ``{"version": 1, "action": "refresh"}``,
``{"version": 1, "action": "cancel", "run_id": str}`` and
``{"version": 1, "action": "cancel_item", "run_id": str, "index": int}``.
Anything else is refused with an error message. Valid actions go to ``on_action``, except
those for a live run: they go to the run's loop through `dask_magic.engine.controls`.

*Live mode.* The front end also opens a control comm (`dask_magic._control_comm`), whose
messages the kernel reads on a subshell while a cell runs; once it has, the bridge is
``live`` (its ``state`` messages say ``"live": true``) and ``cancel``, ``retry`` and
``cancel_item`` for the running run act at once. Without it, they are refused while a run
is live (the kernel's interrupt cancels), as before.

A ``run`` message whose failures did not change since the last one sent for that run carries
``"failures": null`` (the sidebar keeps what it has), so a long run with many failures does
not resend them five times a second.

Only stdlib, `comm` and `dask_magic.engine.results` are imported here (the JSON builders live
in `dask_magic._bridge_json`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import comm

from ._bridge_json import cluster_to_json, run_to_json
from ._control_comm import LIVE_ACTIONS, BusyStatus, ControlChannel, post_live
from .engine.results import ClusterInfo, RunSnapshot, RunStatus

__all__ = [
    "PROTOCOL_VERSION",
    "TARGET_NAME",
    "ActionError",
    "Bridge",
    "current_cell_id",
    "parse_action",
    "register",
    "run_to_json",
    "unregister",
]

PROTOCOL_VERSION = 1
TARGET_NAME = "dask_magic"
MAX_RUNS = 20  # runs kept (and sent on open) per kernel
MIN_INTERVAL = 0.2  # seconds between two "run" messages of one run (final state excepted)
ACTIONS = ("retry", "close_cluster", "refresh", "cancel", "cancel_item")

ActionHandler = Callable[[str, dict], None]
_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- incoming actions


class ActionError(ValueError):
    """A message from the frontend that the kernel refuses (the text goes back as an error)."""

    def __init__(self, message: str, action: str | None = None) -> None:
        super().__init__(message)
        self.action = action


def parse_action(data: Any) -> tuple[str, dict]:
    """Validate a frontend message: ``(action, args)`` or `ActionError`."""
    if not isinstance(data, dict):
        raise ActionError("a message must be a JSON object")
    version = data.get("version")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ActionError(
            f"protocol version {version!r} is not supported (the kernel speaks version "
            f"{PROTOCOL_VERSION}); reinstall dask-magic so the kernel and JupyterLab match"
        )
    action = data.get("action")
    if action not in ACTIONS:
        raise ActionError(f"unknown action {action!r}", None)
    if action in LIVE_ACTIONS:
        run_id = data.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise ActionError(f"{action} needs a run_id string", action)
        if action != "cancel_item":
            return action, {"run_id": run_id}
        index = data.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ActionError("cancel_item needs an item index", action)
        return action, {"run_id": run_id, "index": index}
    return action, {}


# --------------------------------------------------------------------------- the bridge


def _comm_manager(ip: Any) -> Any:
    kernel = getattr(ip, "kernel", None)
    manager = getattr(kernel, "comm_manager", None)
    return manager if manager is not None else comm.get_comm_manager()


class Bridge:
    """Pushes run snapshots to the sidebar and hands its actions to ``on_action``.

    Implements the run observer protocol (`update`, `finish`) plus `set_cluster`. Safe to call
    from any thread: the sidebar's comm messages may arrive on a kernel subshell thread
    (JupyterLab 4.6 sends comm traffic to subshells), so ``on_action`` may run off the main
    thread while a cell is executing; ``retry`` and ``close_cluster`` are refused while a run
    is live.
    """

    def __init__(
        self,
        ip: Any,
        *,
        on_action: ActionHandler,
        max_runs: int = MAX_RUNS,
        min_interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[float, Callable[[], None]], threading.Timer] = threading.Timer,
    ) -> None:
        self.on_action = on_action
        self._max_runs = max_runs
        self._interval = min_interval
        self._clock = clock
        self._timer_factory = timer
        self._lock = threading.RLock()
        self._comms: dict[str, Any] = {}
        self._runs: OrderedDict[str, dict] = OrderedDict()  # oldest first
        self._cluster: dict | None = None
        self._sent_at: dict[str, float] = {}
        self._sent_failures: dict[str, dict] = {}  # the failures JSON last sent, per run
        self._dirty: set[str] = set()
        self._timers: dict[str, threading.Timer] = {}
        self._closed = False
        self._manager = _comm_manager(ip)
        self.control = ControlChannel(self._manager, parse_action, PROTOCOL_VERSION)
        self._busy = BusyStatus(getattr(ip, "kernel", None))
        self._manager.register_target(TARGET_NAME, self._on_comm_open)
        opened = comm.create_comm(target_name=TARGET_NAME, data=self.state_message())
        self._attach(opened)

    # -- observer protocol -------------------------------------------------------------

    def update(self, snapshot: RunSnapshot) -> None:
        """A run changed; sent at once, or within `min_interval` if one was sent just now."""
        data = run_to_json(snapshot)
        if self.control.live and snapshot.status is RunStatus.RUNNING:
            self._busy.during_run(self.control.message_at)
        with self._lock:
            run_id = snapshot.run_id
            new = run_id not in self._runs
            self._store(data, snapshot.cluster)
            last = self._sent_at.get(run_id)
            wait = 0.0 if new or last is None else self._interval - (self._clock() - last)
            if wait <= 0:
                self._send_run(run_id)
            elif run_id not in self._timers:
                timer = self._timer_factory(wait, lambda: self._flush(run_id))
                timer.daemon = True
                self._timers[run_id] = timer
                timer.start()

    def finish(self, snapshot: RunSnapshot) -> None:
        """The run ended: its final state goes out now, whatever the throttle says."""
        data = run_to_json(snapshot)
        with self._lock:
            self._store(data, snapshot.cluster)
            self._send_run(snapshot.run_id)

    def set_cluster(self, info: ClusterInfo | None) -> None:
        """The cluster changed (started, scaled, closed: ``None``)."""
        with self._lock:
            self._set_cluster_json(cluster_to_json(info))

    # -- state -------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether clicks reach the kernel while a cell runs (see the control comm)."""
        return self.control.live

    @property
    def runs(self) -> list[dict]:
        """The kept runs' JSON, newest first."""
        with self._lock:
            return list(reversed(self._runs.values()))

    def state_message(self) -> dict:
        with self._lock:
            return {
                "version": PROTOCOL_VERSION,
                "type": "state",
                "runs": self.runs,
                "cluster": self._cluster,
                "limit": self._max_runs,
                "live": self.live,
            }

    def close(self) -> None:
        """Stop: close every comm, unregister the target, cancel pending sends."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            comms = list(self._comms.values())
            self._comms.clear()
        for c in comms:
            c.close()
        self._manager.unregister_target(TARGET_NAME, self._on_comm_open)
        self.control.close()

    # -- internals ---------------------------------------------------------------------

    def _store(self, data: dict, cluster: ClusterInfo | None) -> None:
        run_id = data["run_id"]
        self._runs[run_id] = data
        self._dirty.add(run_id)
        while len(self._runs) > self._max_runs:
            old, _ = self._runs.popitem(last=False)
            self._forget(old)
        if cluster is not None:
            self._set_cluster_json(cluster_to_json(cluster))

    def _forget(self, run_id: str) -> None:
        timer = self._timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
        self._sent_at.pop(run_id, None)
        self._sent_failures.pop(run_id, None)
        self._dirty.discard(run_id)

    def _set_cluster_json(self, cluster: dict | None) -> None:
        if cluster != self._cluster:
            self._cluster = cluster
            self._broadcast({"version": PROTOCOL_VERSION, "type": "cluster", "cluster": cluster})

    def _flush(self, run_id: str) -> None:
        with self._lock:
            self._timers.pop(run_id, None)
            if run_id in self._dirty and run_id in self._runs:
                self._send_run(run_id)

    def _send_run(self, run_id: str) -> None:
        timer = self._timers.pop(run_id, None)
        if timer is not None:
            timer.cancel()
        self._dirty.discard(run_id)
        self._sent_at[run_id] = self._clock()
        run = self._runs[run_id]
        if self._sent_failures.get(run_id) == run["failures"]:
            run = {**run, "failures": None}  # unchanged: the sidebar keeps what it has
        else:
            self._sent_failures[run_id] = run["failures"]
        self._broadcast({"version": PROTOCOL_VERSION, "type": "run", "run": run})

    def _broadcast(self, message: dict) -> None:
        if self._closed:
            return
        for c in list(self._comms.values()):
            c.send(message)

    def _attach(self, c: Any) -> None:
        with self._lock:
            self._comms[c.comm_id] = c
        c.on_msg(lambda msg: self._on_msg(c, msg))
        c.on_close(lambda _msg: self._detach(c))

    def _detach(self, c: Any) -> None:
        with self._lock:
            self._comms.pop(c.comm_id, None)

    def _on_comm_open(self, c: Any, _open_msg: dict) -> None:
        """A frontend (new page, reload) opened a comm: give it the whole state."""
        self._attach(c)
        c.send(self.state_message())

    def _on_msg(self, c: Any, msg: dict) -> None:
        data = msg.get("content", {}).get("data") if isinstance(msg, dict) else None
        try:
            action, args = parse_action(data)
            if post_live(action, args):
                return
            self._check_allowed(action, args)
        except ActionError as error:
            c.send(_error_message(str(error), error.action))
            return
        if action == "refresh":
            c.send(self.state_message())
        try:
            self.on_action(action, args)
        except Exception as error:  # the kernel must keep serving the sidebar; report it
            _log.exception("dask_magic sidebar action %s failed", action)
            c.send(_error_message(f"{action} failed: {type(error).__name__}: {error}", action))

    def _check_allowed(self, action: str, args: dict) -> None:
        if action in ("cancel", "cancel_item"):
            raise ActionError("this run has ended: there is nothing to cancel", action)
        with self._lock:
            live = [r for r in self._runs.values() if r["status"] in _LIVE]
            known = args.get("run_id") in self._runs
        if action == "retry" and not known:
            raise ActionError(f"unknown run {args['run_id']!r}", action)
        if action in ("retry", "close_cluster") and live:
            raise ActionError(
                "a run is still in progress: cancel it (interrupt the kernel) or wait for it",
                action,
            )


_LIVE = (str(RunStatus.PENDING), str(RunStatus.RUNNING))


def _error_message(message: str, action: str | None) -> dict:
    return {"version": PROTOCOL_VERSION, "type": "error", "message": message, "action": action}


# --------------------------------------------------------------------------- kernel helpers


def current_cell_id(ip: Any) -> str | None:
    """The id of the notebook cell being executed, from the execute request's metadata.

    JupyterLab and Notebook 7 send ``metadata.cellId`` with each execute request. None outside
    a kernel, or when the frontend sent no id.
    """
    kernel = getattr(ip, "kernel", None)
    get_parent = getattr(kernel, "get_parent", None)
    if not callable(get_parent):
        return None
    parent = get_parent()
    metadata = parent.get("metadata") if isinstance(parent, dict) else None
    cell_id = metadata.get("cellId") if isinstance(metadata, dict) else None
    return cell_id if isinstance(cell_id, str) and cell_id else None


_bridges: dict[int, Bridge] = {}


def register(ip: Any, on_action: ActionHandler) -> Bridge:
    """The bridge for this shell, created on first call (``load_ipython_extension``)."""
    bridge = _bridges.get(id(ip))
    if bridge is None:
        bridge = _bridges[id(ip)] = Bridge(ip, on_action=on_action)
    else:
        bridge.on_action = on_action
    return bridge


def unregister(ip: Any) -> None:
    """Close this shell's bridge, if any (``unload_ipython_extension``)."""
    bridge = _bridges.pop(id(ip), None)
    if bridge is not None:
        bridge.close()
