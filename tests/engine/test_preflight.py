"""Pre-flight checks: unpicklable names, large items, and modules from the notebook folder."""

from __future__ import annotations

import functools
import importlib
import json
import os
import socket
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from dask_magic.engine.preflight import (
    big_items_advice,
    local_modules,
    ship_local_modules,
    unpicklable_names,
)

# -- unpicklable names ---------------------------------------------------------------------


class _HoldsALock:
    def __init__(self) -> None:
        self.lock = threading.Lock()


def test_open_files_locks_sockets_and_generators_are_named(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    with open(path) as reading, open(tmp_path / "out.txt", "w") as writing, socket.socket() as sock:
        env = {
            "reading": reading,
            "writing": writing,
            "lock": threading.Lock(),
            "rlock": threading.RLock(),
            "sock": sock,
            "gen": (x for x in range(3)),
            "holder": _HoldsALock(),
            "fine": [1, 2, 3],
            "arr": np.zeros(10),
            "fn": lambda x: x + 1,
        }
        found = dict(unpicklable_names(env))
    assert set(found) == {"reading", "writing", "lock", "rlock", "sock", "gen", "holder"}
    assert "open file" in found["reading"] and "data.csv" in found["reading"]
    assert "inside the loop" in found["writing"]
    assert "lock" in found["lock"] and "lock" in found["rlock"]
    assert "socket" in found["sock"]
    assert "generator" in found["gen"] and "list(" in found["gen"]
    assert "cannot be pickled" in found["holder"] and "lock" in found["holder"]
    assert all("\n" not in reason and len(reason) <= 200 for reason in found.values())


def test_a_closed_file_is_called_closed(tmp_path: Path) -> None:
    with open(tmp_path / "x.txt", "w") as handle:
        pass
    [(name, reason)] = unpicklable_names({"handle": handle})
    assert name == "handle" and reason.startswith("a closed file")


def test_names_come_back_sorted_for_a_stable_message() -> None:
    env = {"b": threading.Lock(), "a": threading.Lock()}
    assert [name for name, _ in unpicklable_names(env)] == ["a", "b"]


def test_a_big_array_is_checked_without_copying_it() -> None:
    big = np.zeros(50_000_000)  # 400 MB: a pickled copy would double the memory
    assert unpicklable_names({"big": big}) == []


# -- large loop items -----------------------------------------------------------------------


def test_small_items_get_no_advice() -> None:
    assert big_items_advice([f"data/{i}.csv" for i in range(10_000)]) is None
    assert big_items_advice([]) is None


def test_large_dataframes_get_the_paths_advice_with_sizes() -> None:
    frames = [pd.DataFrame({"x": np.zeros(2_000_000)}) for _ in range(3)]  # 16 MB each
    advice = big_items_advice(frames)
    assert advice is not None
    assert "DataFrame" in advice and "MiB" in advice and "3 items" in advice
    assert "inside the loop" in advice and "paths" in advice


def test_threshold_is_the_callers() -> None:
    items = [b"x" * 5_000, b"y" * 10]
    assert big_items_advice(items, threshold=1_000) is not None
    assert big_items_advice(items, threshold=100_000) is None


# -- modules from the notebook's folder ------------------------------------------------------


@pytest.fixture
def notebook_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A notebook folder with a module, a package and a fake venv, importable by name."""
    tag = uuid.uuid4().hex[:8]
    names = {"helpers": f"helpers_{tag}", "pkg": f"pkg_{tag}", "installed": f"installed_{tag}"}
    (tmp_path / f"{names['helpers']}.py").write_text(
        "VALUE = 1\nclass Thing:\n    pass\ndef clean(x):\n    return x * 2\n"
    )
    package = tmp_path / names["pkg"]
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sub.py").write_text("def twice(x):\n    return 2 * x\n")
    site = tmp_path / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / f"{names['installed']}.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path, names
    for name in list(sys.modules):
        if name.split(".")[0] in names.values():
            del sys.modules[name]


def _notebook_function(source: str, namespace: dict) -> object:
    """A function defined "in the notebook": its module is ``__main__``."""
    namespace = {"__name__": "__main__", **namespace}
    exec(textwrap.dedent(source), namespace)
    return namespace["f"]


def test_imported_module_functions_and_instances_are_found(notebook_dir) -> None:
    root, names = notebook_dir
    helpers = importlib.import_module(names["helpers"])
    assert local_modules({"helpers": helpers}, root) == [helpers]
    assert local_modules({"clean": helpers.clean}, root) == [helpers]
    assert local_modules({"thing": helpers.Thing()}, root) == [helpers]
    assert local_modules({"things": [helpers.Thing()]}, root) == [helpers]
    assert local_modules({"p": functools.partial(helpers.clean, 2)}, root) == [helpers]


def test_modules_used_through_notebook_functions_are_found(notebook_dir) -> None:
    root, names = notebook_dir
    helpers = importlib.import_module(names["helpers"])
    f = _notebook_function(
        "def f(x):\n    return [h.clean(v) for v in x]\n", {"h": helpers, "unused": json}
    )
    g = _notebook_function("def f(x):\n    return inner(x)\n", {"inner": f})
    assert local_modules({"g": g}, root) == [helpers]


def test_a_submodule_ships_its_top_level_package(notebook_dir) -> None:
    root, names = notebook_dir
    sub = importlib.import_module(f"{names['pkg']}.sub")
    found = local_modules({"twice": sub.twice}, root)
    assert [m.__name__ for m in found] == [names["pkg"]]


def test_installed_and_stdlib_modules_are_not_local(notebook_dir) -> None:
    root, names = notebook_dir
    installed = importlib.import_module(names["installed"])
    env = {"json": json, "np": np, "pd": pd, "df": pd.DataFrame(), "installed": installed}
    assert local_modules(env, root) == []


# -- shipping them to workers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def process_cluster(one_worker_cluster):
    """Worker processes started before any notebook folder is on ``sys.path``."""
    return one_worker_cluster


def _import_on_worker(client: Client, name: str, attribute: str) -> object:
    # A lambda travels by value: the worker needs nothing from the tests to run it.
    return client.submit(
        lambda n, a: getattr(importlib.import_module(n), a), name, attribute, pure=False
    ).result(timeout=60)


def test_modules_are_uploaded_once_and_again_when_edited(notebook_dir, process_cluster) -> None:
    root, names = notebook_dir
    helpers = importlib.import_module(names["helpers"])
    with Client(process_cluster, set_as_default=False) as client:
        with pytest.raises(ModuleNotFoundError):
            _import_on_worker(client, names["helpers"], "VALUE")
        assert ship_local_modules(client, [helpers]) == [names["helpers"]]
        assert _import_on_worker(client, names["helpers"], "VALUE") == 1
        assert ship_local_modules(client, [helpers]) == []

        path = root / f"{names['helpers']}.py"
        path.write_text("VALUE = 2\n")
        later = time.time() + 5  # a coarse file system clock must still see a change
        os.utime(path, (later, later))
        assert ship_local_modules(client, [helpers]) == [names["helpers"]]
        assert _import_on_worker(client, names["helpers"], "VALUE") == 2


def test_packages_are_uploaded_whole(notebook_dir, process_cluster) -> None:
    _root, names = notebook_dir
    package = importlib.import_module(names["pkg"])
    with Client(process_cluster, set_as_default=False) as client:
        assert ship_local_modules(client, [package]) == [names["pkg"]]
        twice = _import_on_worker(client, f"{names['pkg']}.sub", "__name__")
        assert twice == f"{names['pkg']}.sub"


def test_nothing_is_uploaded_to_workers_inside_this_process(notebook_dir) -> None:
    _root, names = notebook_dir
    helpers = importlib.import_module(names["helpers"])
    with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as threads:
        with Client(threads, set_as_default=False) as client:
            assert ship_local_modules(client, [helpers]) == []
    assert sys.modules[names["helpers"]] is helpers  # not re-imported under the kernel
