"""A task's result sent back with its completion, so the kernel needs no gather for it.

Fetching a finished task's result is a round trip of its own (client -> scheduler ->
worker and back): about 1.8 ms on a 2-core machine, a fifth of a warm ``client.submit``
round trip and most of what a 1-item cell costs beyond it. When the scheduler lives in the
kernel's process (the `LocalCluster` dask-magic starts, or one the user started there), it
gets one more stream handler (`install`): a task whose result is small sends it on its
worker's batched stream to the scheduler (`send`), which forwards it on the same stream it
tells the client that the task finished, just before that message (`_forward`). The client
receives it as an event of `TOPIC` (``Client.subscribe_topic``) and files it where the
pass's watch of that task looks for it (`expect`), so the watch finds the result already
there and skips the gather.

Nothing depends on it arriving: a result that is big, or that does not come (a scheduler
elsewhere, a worker that died between the two messages), is gathered as before. A worker
never sends to a scheduler that lacks the handler (an unknown message would close the
worker's connection): the kernel only asks for it where it saw the handler installed.
"""

from __future__ import annotations

import functools
import time
import weakref
from typing import Any

#: the message a worker sends the scheduler, and the topic it reaches the client under
OP = "dask-magic-result"
TOPIC = "dask-magic-result"
#: a bigger result takes the gather's own connection, not the streams other messages share
PUSH_MAX_BYTES = 256 * 1024

#: key -> the ``fetched`` dict of the watch waiting for that task (touched on the loop only)
_EXPECTED: dict[str, dict[Any, Any]] = {}
_SUBSCRIBED: weakref.WeakSet[Any] = weakref.WeakSet()


def target(client: Any) -> str | None:
    """Where workers should send results for ``client``: its id, or None (gather them).

    Installs the scheduler's side when the scheduler is an object of this process. Dask
    config ``dask-magic.push-results: false`` gathers every result (to compare, or to rule
    this out)."""
    import dask.config

    if not dask.config.get("dask-magic.push-results", default=True):
        return None
    scheduler = getattr(getattr(client, "cluster", None), "scheduler", None)
    handlers = getattr(scheduler, "stream_handlers", None)
    if not isinstance(handlers, dict) or not hasattr(scheduler, "client_comms"):
        return None
    if OP not in handlers:
        install(scheduler)
    if client not in _SUBSCRIBED:
        client.subscribe_topic(TOPIC, _received)
        _SUBSCRIBED.add(client)
    return str(client.id)


def install(scheduler: Any) -> None:
    """Give ``scheduler`` (a `distributed.Scheduler` of this process) the forwarding handler.

    One dict store: the scheduler's loop looks the handler up per message."""
    scheduler.stream_handlers[OP] = functools.partial(_forward, scheduler)


def _forward(scheduler: Any, worker: str = "", client: str = "", key: str = "", blob: Any = None):
    """On the scheduler: pass a worker's result on to the client that waits for it."""
    stream = scheduler.client_comms.get(client)
    if stream is not None:  # a client that left: nobody waits
        event = (time.time(), {"key": key, "blob": blob})
        _queue_quietly(stream, {"op": "event", "topic": TOPIC, "event": event})


def send(here: Any, client_id: str, blob: bytes) -> None:
    """On the worker, from the task's thread: send the running task's result ``blob``.

    Queued on the worker's loop before the task returns, so it leaves on the batched stream
    with the task's own completion message, just ahead of it."""
    if len(blob) > PUSH_MAX_BYTES:
        return
    message = {"op": OP, "client": client_id, "key": str(here.get_current_task()), "blob": blob}
    here.loop.add_callback(_queue_quietly, here.batched_stream, message)


def _queue_quietly(stream: Any, message: dict[str, Any]) -> None:
    """Put ``message`` on a `distributed.batched.BatchedSend` without waking it: it leaves with
    the next message sent, in the same batch.

    ``BatchedSend.send`` flushes at once when the stream was idle, and the message after it
    then waits out the stream's interval (2 ms): sent that way, the result would delay the
    completion right behind it by as much as the gather it saves."""
    buffer = getattr(stream, "buffer", None)
    if isinstance(buffer, list):
        buffer.append(message)
    else:
        stream.send(message)


def expect(key: str, fetched: dict[Any, Any]) -> None:
    """On the client's loop: file a pushed result of ``key`` into ``fetched``."""
    _EXPECTED[key] = fetched


def forget(key: str) -> None:
    """On the client's loop: the watch of ``key`` ended; a late push is dropped."""
    _EXPECTED.pop(key, None)


def _received(event: tuple[float, dict[str, Any]]) -> None:
    """The client's handler of `TOPIC` (on its loop)."""
    message = event[1]
    fetched = _EXPECTED.get(message["key"])
    if fetched is not None:
        blob = message["blob"]
        fetched[message["key"]] = blob if isinstance(blob, bytes) else bytes(blob)
