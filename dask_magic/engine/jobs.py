"""What every task of a run shares (`Job`), how it is pickled, and the ``--serial`` runner.

`make_job` pickles the bundle (the compiled body and the small names it reads) once, named by
its content hash so that workers unpickle it once; `run_in_kernel` runs the same body item by
item in the kernel. Outcomes go to a `Sink`; nothing here knows about IPython or Dask.
"""

from __future__ import annotations

import hashlib
import io
import marshal
import pickle
import types
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cloudpickle

from . import worker
from .loaded_batch import LoadedBatch
from .results import ItemOutcome


@dataclass
class Job:
    """What every task of a run shares."""

    token: str
    blob: bytes
    big_env: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    batch: int | str = "auto"
    key_prefix: str = "parallel_for"
    timeout: float | None = None  # --timeout, seconds per item
    #: the notebook's objects behind ``big_env``, to scatter again if their data is lost
    big_values: dict[str, Any] = field(default_factory=dict, repr=False)


class Sink(Protocol):
    """Receives outcomes as they arrive (implemented by `dask_magic.engine.run.Run`)."""

    def add(
        self,
        outcomes: Sequence[ItemOutcome] = (),
        sent: Sequence[tuple[LoadedBatch, bytes]] = (),
    ) -> None:
        """``outcomes``, and the batches in ``sent`` with the bytes each came as."""

    def tick(self, running: int, running_now: Sequence[tuple[int, float]] = ()) -> None: ...

    def should_stop(self) -> bool: ...


def make_job(bundle: dict[str, Any], *, pickle: bool = True, **options: Any) -> Job:
    """Pickle ``bundle`` once; its content hash names it, so workers unpickle it once.

    With ``pickle=False`` (``--serial``) the bundle is handed to this process's worker-side
    cache as it is: nothing travels, so names that cannot be pickled are fine.
    """
    if not pickle:
        token = f"local-{uuid.uuid4().hex}"
        worker.register_bundle(token, bundle)
        return Job(token=token, blob=b"", **options)
    blob = dumps_keeping_filenames(bundle)
    token = hashlib.blake2b(blob, digest_size=16).hexdigest()
    return Job(token=token, blob=blob, **options)


class _FilenameKeepingPickler(cloudpickle.Pickler):
    """cloudpickle, except that code objects keep their filename.

    cloudpickle >= 3.1 renames every pickled code object's file to ``<dynamic-code>`` (for
    deterministic payloads). Tracebacks from the workers then no longer point at the
    notebook's cells; marshal keeps ``co_filename`` and line numbers intact.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.CodeType):
            return marshal.loads, (marshal.dumps(obj),)
        return super().reducer_override(obj)


def dumps_keeping_filenames(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _FilenameKeepingPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


# -- in the kernel (--serial) -------------------------------------------------------------------


def run_in_kernel(job: Job, pairs: Sequence[tuple[int, Any]], sink: Sink) -> str:
    """Run the same body item by item in this process; returns how the run ended."""
    big_env = dict(job.big_env)
    for position, pair in enumerate(pairs):
        try:
            outcomes = worker.run_batch(
                job.token,
                job.blob,
                big_env,
                [pair],
                -1,
                None,
                worker="kernel",
                retries=job.retries,
                serialize=False,
            )
        except KeyboardInterrupt:
            sink.add([ItemOutcome(index=i, status="cancelled") for i, _ in pairs[position:]])
            return "interrupted"
        sink.add(outcomes)  # type: ignore[arg-type]
        sink.tick(0)
        if sink.should_stop():
            sink.add([ItemOutcome(index=i, status="cancelled") for i, _ in pairs[position + 1 :]])
            return "stopped"
    return "completed"
