"""The control comm: how the front end's clicks reach the kernel while a cell runs.

ipykernel 7 hands each comm message to the subshell the comm last *sent* from. The sidebar's
``dask_magic`` comm sends run updates from the cell's thread, so its incoming messages go to
the main shell, behind the running cell (as widget clicks do). This second comm, target
``dask_magic_control``, is opened by the front end and never sends anything but its
replies, from the thread that handles the request: once the front end sends on its own
subshell (JupyterLab >= 4.4 with ``commsOverSubshells`` on), every message stays there.

The front end opens it and, once its subshell exists, says ``hello``; the reply
``{"version": 1, "type": "live", "live": bool}`` says whether the hello was handled off the
main thread, that is, whether actions act during a run. Then it sends ``cancel``, ``retry``
and ``cancel_item`` for a running run here; they are posted to the run's loop
(`dask_magic.engine.controls`). Anything else is answered with an ``error``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .engine.controls import CANCEL, CANCEL_ITEM, RETRY, Control
from .engine.controls import default as live_controls

CONTROL_TARGET = "dask_magic_control"
LIVE_ACTIONS = {"cancel": CANCEL, "retry": RETRY, "cancel_item": CANCEL_ITEM}


def post_live(action: str, args: dict) -> bool:
    """Hand an action for a running run to its loop; False when that run is not running."""
    if action not in LIVE_ACTIONS or not live_controls.is_live(args.get("run_id", "")):
        return False
    return live_controls.post(Control(LIVE_ACTIONS[action], args["run_id"], args.get("index")))


#: While a live-mode run runs, the kernel says "busy" again at least this often (seconds) ...
BUSY_EVERY = 1.0
#: ... and this long after a message on the control comm (its own idle has gone out by then).
BUSY_AFTER_MESSAGE = 0.15


class BusyStatus:
    """Says "busy" again on IOPub while a cell runs in live mode.

    JupyterLab shows the kernel's status from every status message on IOPub, whatever request
    it ends: the "idle" that closes a request handled on a subshell (a click sent on the
    control comm, a subshell made for a comm) makes the status bar read "Idle" while the cell
    runs on. Called from the run's loop on the main thread only: whatever the main thread
    runs ends with its own "idle", published after this "busy", so the status never stays busy.
    """

    def __init__(self, kernel: Any) -> None:
        self._publish = getattr(kernel, "_publish_status", None)
        self._last = 0.0

    def during_run(self, message_at: float) -> None:
        """``message_at``: when the control comm last handled a message (monotonic)."""
        if self._publish is None or threading.current_thread() is not threading.main_thread():
            return
        now = time.monotonic()
        after_message = message_at > self._last and now - message_at >= BUSY_AFTER_MESSAGE
        if not after_message and now - self._last < BUSY_EVERY:
            return
        self._last = now
        try:
            self._publish("busy", "shell")
        except Exception:  # a kernel without that private helper's signature: no status
            self._publish = None


class ControlChannel:
    """Registers the control target; ``live`` once a hello came on a subshell thread."""

    def __init__(self, manager: Any, parse: Any, version: int) -> None:
        self.live = False
        self.message_at = 0.0  # when a message was last handled (monotonic)
        self._manager = manager
        self._parse = parse  # `bridge.parse_action`, which knows the protocol
        self._version = version
        self._comms: dict[str, Any] = {}
        self._lock = threading.Lock()
        manager.register_target(CONTROL_TARGET, self._on_open)

    def close(self) -> None:
        with self._lock:
            comms, self._comms = list(self._comms.values()), {}
        for c in comms:
            c.close()
        self._manager.unregister_target(CONTROL_TARGET, self._on_open)

    def _on_open(self, c: Any, _msg: dict) -> None:
        # no reply here: the open may come on the main shell, and a reply sent from there
        # would route this comm's later messages to the main shell too
        with self._lock:
            self._comms[c.comm_id] = c
        c.on_msg(lambda msg: self._on_msg(c, msg))
        c.on_close(lambda _msg: self._forget(c))

    def _forget(self, c: Any) -> None:
        with self._lock:
            self._comms.pop(c.comm_id, None)

    def _on_msg(self, c: Any, msg: dict) -> None:
        self.message_at = time.monotonic()
        data = msg.get("content", {}).get("data") if isinstance(msg, dict) else None
        if isinstance(data, dict) and data.get("action") == "hello":
            on_subshell = threading.current_thread() is not threading.main_thread()
            self.live = self.live or on_subshell
            c.send({"version": self._version, "type": "live", "live": on_subshell})
            return
        try:
            action, args = self._parse(data)
        except ValueError as error:
            c.send(self._error(str(error), getattr(error, "action", None)))
            return
        if not post_live(action, args):
            c.send(self._error(f"{action}: that run is not running", action))

    def _error(self, message: str, action: str | None) -> dict:
        return {"version": self._version, "type": "error", "message": message, "action": action}
