"""The bundle on a worker: the body and the small names it reads, unpickled once per process.

`load_bundle` keeps the last few bundles by their content hash (`jobs.make_job` names them),
so a batch of 10,000 tiny items does not pay the unpickling; `body_for` binds the compiled
body to its names once per bundle (again per run when scattered names join them).
"""

from __future__ import annotations

import builtins
import threading
import types
from collections import OrderedDict
from typing import Any

import cloudpickle

from dask_magic import contract as C


def make_body(code: types.CodeType, env: dict[str, Any]) -> types.FunctionType:
    """Bind the compiled body to a namespace holding the names it reads."""
    namespace = dict(env)
    namespace["__builtins__"] = builtins
    namespace[C.LOCALS] = builtins.locals
    return types.FunctionType(code, namespace, code.co_name)


_BUNDLES: OrderedDict[str, Any] = OrderedDict()
_BUNDLES_LOCK = threading.Lock()
_BUNDLES_KEPT = 8


def load_bundle(token: str, blob: bytes) -> dict[str, Any]:
    """Unpickle a bundle once per process (a batch of 10,000 tiny items must not pay it)."""
    with _BUNDLES_LOCK:
        bundle = _BUNDLES.get(token)
        if bundle is not None:
            _BUNDLES.move_to_end(token)
            return bundle
    bundle = cloudpickle.loads(blob)
    register_bundle(token, bundle)
    return bundle


def register_bundle(token: str, bundle: dict[str, Any]) -> None:
    """Put an unpickled bundle in this process's cache (``--serial`` runs in the kernel)."""
    with _BUNDLES_LOCK:
        _BUNDLES[token] = bundle
        while len(_BUNDLES) > _BUNDLES_KEPT:
            _BUNDLES.popitem(last=False)


def body_for(token: str, blob: bytes, big_env: dict[str, Any]) -> tuple[Any, str]:
    bundle = load_bundle(token, blob)
    if bundle["kind"] != "loop":
        return bundle["fn"], bundle["kind"]
    if big_env:  # scattered values differ per run: bind them afresh (cheap)
        return make_body(bundle["code"], {**bundle["env"], **big_env}), "loop"
    body = bundle.get("_fn")
    if body is None:
        body = bundle["_fn"] = make_body(bundle["code"], bundle["env"])
    return body, "loop"
