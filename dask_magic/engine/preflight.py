"""Checks made before anything is sent to the cluster.

* `unpicklable_names`: which names the body reads cannot travel to a worker (open files,
  locks, sockets, generators, ...), each with a one-line reason and fix, so the user hears
  about ``fh`` by name instead of reading a pickling traceback from inside dask.
* `big_items_advice`: when the loop items themselves are large (DataFrames, arrays), the
  "iterate over paths and load inside the loop" advice, naming the sizes.
* `local_modules` / `ship_local_modules`: modules imported from the notebook's folder that
  the body uses, and uploading them to workers that cannot import them otherwise.

Nothing here changes the user's objects or decides whether a run goes ahead; the caller
turns the findings into an error, a warning or an upload.
"""

from __future__ import annotations

import functools
import io
import socket
import sys
import tempfile
import threading
import types
import weakref
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cloudpickle
from dask.sizeof import sizeof
from dask.utils import format_bytes
from distributed import Client
from distributed.diagnostics.plugin import UploadFile

__all__ = [
    "BIG_ITEM_THRESHOLD",
    "big_items_advice",
    "local_modules",
    "ship_local_modules",
    "unpicklable_names",
]

#: Loop items bigger than this (bytes, by `dask.sizeof`) get the "iterate over paths" advice.
BIG_ITEM_THRESHOLD = 10_000_000
_ITEMS_SAMPLED = 200  # sizing every one of 10^6 items would cost more than the advice is worth
_REASON_LIMIT = 200


# -- names that cannot be pickled -------------------------------------------------------------


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _known_reason(value: Any) -> str | None:
    """A friendly reason for the usual suspects, checked before pickling.

    Open files are caught here even though cloudpickle accepts some (read-mode files are
    pickled *with their whole content*, and the copy on the worker is a different file).
    """
    if isinstance(value, io.IOBase) and not isinstance(value, (io.StringIO, io.BytesIO)):
        name = getattr(value, "name", None)
        shown = f" ({name!r})" if isinstance(name, (str, bytes)) else ""
        state = "a closed" if value.closed else "an open"
        return f"{state} file{shown}; open it inside the loop body (`with open(path) as f:`)"
    if isinstance(value, _LOCK_TYPES):
        return "a thread lock; workers are other processes, so create any lock on the worker"
    if isinstance(value, socket.socket):
        return "a network socket; open the connection inside the loop body"
    if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType)):
        kind = type(value).__name__
        return f"a {kind}, which cannot be copied; make it a list first (`list(...)`)"
    return None


def _pickle_reason(value: Any) -> str | None:
    """Why cloudpickle refuses ``value``, or None if it pickles (into a null sink).

    Pickling into a sink with out-of-band buffers costs no copy of big arrays, so the check
    stays cheap for the 200 MB objects that will be scattered anyway.
    """
    try:
        cloudpickle.CloudPickler(_NullFile(), protocol=5, buffer_callback=_ignore).dump(value)
    except Exception as exc:  # pickling runs arbitrary __reduce__ code: any error is the answer
        first = (str(exc).splitlines() or [""])[0]
        reason = f"cannot be pickled: {type(exc).__name__}: {first}"
        return reason if len(reason) <= _REASON_LIMIT else reason[: _REASON_LIMIT - 3] + "..."
    return None


class _NullFile:
    def write(self, data: bytes | memoryview) -> int:
        return len(data)


def _ignore(_buffer: Any) -> None:
    return None


def unpicklable_names(env: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, reason)`` for every value in ``env`` that cannot be sent to a worker, by name."""
    found = []
    for name in sorted(env):
        value = env[name]
        reason = _known_reason(value) or _pickle_reason(value)
        if reason is not None:
            found.append((name, reason))
    return found


# -- large loop items ---------------------------------------------------------------------------


def _sample(items: list[Any]) -> list[Any]:
    if len(items) <= _ITEMS_SAMPLED:
        return list(items)
    step = len(items) / _ITEMS_SAMPLED
    return [items[int(i * step)] for i in range(_ITEMS_SAMPLED)]


def _size_of(item: Any) -> int:
    try:
        return int(sizeof(item))
    except Exception:  # a broken __sizeof__: no advice rather than a failed run
        return 0


def big_items_advice(items: list[Any], threshold: int = BIG_ITEM_THRESHOLD) -> str | None:
    """Advice when the loop items themselves are large, or None when they are not.

    Each item is pickled and sent from the kernel to a worker, so a loop over 50 loaded
    DataFrames ships every byte through the kernel; a loop over their paths ships nothing.
    """
    sample = _sample(items)
    sizes = [_size_of(item) for item in sample]
    if not sizes or max(sizes) <= threshold:
        return None
    largest = sample[sizes.index(max(sizes))]
    estimate = sum(sizes) * len(items) / len(sample)
    return (
        f"The loop items are large: the largest is {format_bytes(max(sizes))} "
        f"({type(largest).__name__}), about {format_bytes(int(estimate))} for all "
        f"{len(items)} items, and each is sent from the notebook to a worker. Iterate over "
        "something small that names the data (file paths, keys, row ranges) and load it "
        "inside the loop body, e.g. `for path in paths: df = pd.read_csv(path)`."
    )


# -- modules from the notebook's folder --------------------------------------------------------


def _module_file(module: types.ModuleType) -> Path | None:
    filename = getattr(module, "__file__", None)
    return Path(filename).resolve() if filename else None


def _is_local(module: types.ModuleType, root: Path) -> bool:
    path = _module_file(module)
    if path is None or not path.is_relative_to(root):
        return False
    # A virtual environment inside the project folder is still installed code.
    return not {"site-packages", "dist-packages"} & set(path.parts)


def _code_names(code: types.CodeType) -> Iterable[str]:
    """Global names a function reads, nested functions and comprehensions included."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


_WALK_LIMIT = 10_000  # objects visited; a notebook's reachable graph is far smaller
_CONTAINER_LIMIT = 100  # elements looked at per list/dict: enough to find the types in it


def _referenced(value: Any) -> list[Any]:
    """Objects whose modules ``value`` needs on a worker: what a function reads, and so on.

    Only notebook code (``__main__``) is looked into: an installed library's own imports
    are its business, and a local module is shipped whole.
    """
    if isinstance(value, types.MethodType):
        return [value.__func__, value.__self__]
    if isinstance(value, functools.partial):
        return [value.func, *value.args, *value.keywords.values()]
    if isinstance(value, types.FunctionType):
        if value.__module__ != "__main__":
            return []
        names = set(_code_names(value.__code__))
        found = [value.__globals__[n] for n in names if n in value.__globals__]
        cells = [c.cell_contents for c in value.__closure__ or () if _cell_is_set(c)]
        return found + cells + list(value.__defaults__ or ())
    if isinstance(value, type):
        if value.__module__ != "__main__":
            return []
        return [*vars(value).values(), *value.__bases__]
    if isinstance(value, dict):
        return list(value.values())[:_CONTAINER_LIMIT]
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)[:_CONTAINER_LIMIT]
    return [type(value)]


def _cell_is_set(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises ValueError
    except ValueError:
        return False
    return True


def _module_of(value: Any) -> types.ModuleType | None:
    if isinstance(value, types.ModuleType):
        return value
    if not isinstance(value, (type, types.FunctionType)):
        return None
    name = getattr(value, "__module__", None)
    return sys.modules.get(name) if isinstance(name, str) else None


def _top_level(module: types.ModuleType, root: Path) -> types.ModuleType:
    """The package to ship for ``pkg.sub``: the top-level one when it is local too."""
    top = sys.modules.get(module.__name__.partition(".")[0])
    return top if top is not None and _is_local(top, root) else module


def local_modules(env: dict[str, Any], root: Path) -> list[types.ModuleType]:
    """Modules under ``root`` (the notebook's folder) that the names in ``env`` use.

    Found directly (``import helpers``; ``from helpers import clean``; an instance of a
    class from ``helpers``) and through the globals of functions and classes defined in the
    notebook. Installed code (``site-packages``) never counts, even inside ``root``.
    """
    root = Path(root).resolve()
    found: dict[str, types.ModuleType] = {}
    seen: set[int] = set()
    stack = list(env.values())
    while stack and len(seen) < _WALK_LIMIT:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        module = _module_of(value)
        if module is not None and module.__name__ != "__main__" and _is_local(module, root):
            top = _top_level(module, root)
            found[top.__name__] = top
        if not isinstance(value, types.ModuleType):
            stack.extend(_referenced(value))
    return [found[name] for name in sorted(found)]


# -- shipping them --------------------------------------------------------------------------

_SHIPPED: weakref.WeakKeyDictionary[Client, dict[str, int]] = weakref.WeakKeyDictionary()
_SHIP_LOCK = threading.Lock()


def _shares_this_process(client: Client) -> bool:
    """Whether a worker of ``client``'s cluster runs inside this process (threads only).

    Uploading would then re-import the user's module in the kernel itself, giving its
    classes new identities; those workers already see the kernel's modules anyway.
    """
    from distributed import Worker  # the class attribute lists this process's workers

    address = client.scheduler.address
    return any(
        w.scheduler.address == address
        for w in list(Worker._instances)
        if w.status.name == "running"
    )


def _stamp(module: types.ModuleType) -> int:
    """Newest modification time of the module's source, so an edited file is shipped again."""
    path = _module_file(module)
    if path is None:
        return 0
    if hasattr(module, "__path__"):
        return max((p.stat().st_mtime_ns for p in path.parent.rglob("*.py")), default=0)
    return path.stat().st_mtime_ns


def _upload_plugin(module: types.ModuleType) -> UploadFile | None:
    """An `UploadFile` for a single ``.py`` module or a whole package (as a zip)."""
    path = _module_file(module)
    if path is None:
        return None
    if not hasattr(module, "__path__"):
        return UploadFile(str(path)) if path.suffix == ".py" else None  # not a compiled .so
    with tempfile.TemporaryDirectory(prefix="dask-magic-") as tmp:
        archive = Path(tmp) / f"{module.__name__}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for file in sorted(path.parent.rglob("*.py")):
                if "__pycache__" not in file.parts:
                    zf.write(file, Path(module.__name__) / file.relative_to(path.parent))
        return UploadFile(str(archive))  # reads the bytes now, so the folder may go


def ship_local_modules(client: Client, modules: Iterable[types.ModuleType]) -> list[str]:
    """Upload ``modules`` to ``client``'s workers, each once per client (again if edited).

    A worker plugin is used rather than `Client.upload_file`, which also imports the module
    in the scheduler's process: for a local cluster that is the kernel. Workers that join
    later get the modules too. Returns the names uploaded by this call.
    """
    if _shares_this_process(client):
        return []
    uploaded = []
    with _SHIP_LOCK:
        shipped = _SHIPPED.setdefault(client, {})
        for module in modules:
            stamp = _stamp(module)
            if shipped.get(module.__name__) == stamp:
                continue
            plugin = _upload_plugin(module)
            if plugin is None:
                continue
            client.register_plugin(plugin, name=f"dask-magic-upload-{module.__name__}")
            shipped[module.__name__] = stamp
            uploaded.append(module.__name__)
    return uploaded
