"""The notebooks the browser test opens.

Until ``%load_ext dask_magic`` and ``%%parallel_for`` land, a setup cell registers the real
`dask_magic.bridge.Bridge` and the "loop" cells push hand-made `RunSnapshot`s through it, with
the cell id the kernel reads from the execute request (`bridge.current_cell_id`). Everything
from the comm onwards is the real thing.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

SETUP = """\
# stand-in for %load_ext dask_magic: the real bridge, fed by hand-made snapshots
import time
from dask_magic import bridge
from dask_magic.engine.results import (
    ClusterInfo, Counts, ErrorInfo, Failure, RunSnapshot, RunStatus)

actions = []
b = bridge.register(get_ipython(), lambda action, args: actions.append((action, args)))
cluster = ClusterInfo("tcp://127.0.0.1:8786", workers=2, threads=2, memory=4 * 2**30,
                      dashboard="http://127.0.0.1:8787/status", local=True)
b.set_cluster(cluster)

def snap(run_id, status, t0, done, total, failures=(), running=0, name=None, cancelled=0):
    elapsed = time.time() - t0
    finished = done + len(failures) + cancelled
    return RunSnapshot(
        run_id=run_id, name=name, status=status,
        counts=Counts(total=total, done=done, failed=len(failures), running=running,
                      cancelled=cancelled),
        started=t0, elapsed=elapsed, rate=finished / elapsed if elapsed else None,
        eta=None, cell_id=bridge.current_cell_id(get_ipython()), cluster=cluster,
        failures=tuple(failures))

def failure(i, exc, message, line, source):
    tb = (f"Traceback (most recent call last):\\n  Cell In[2], line {line}\\n"
          f"    {source}\\n{exc}: {message}")
    return Failure(index=i, item_repr=repr(f"data/2021-{i:02d}.csv"),
                   error=ErrorInfo(exc, message), line=line, traceback=tb,
                   full_traceback=tb, stdout=f"reading data/2021-{i:02d}.csv\\n")
print("bridge ready")
"""

FILES_LOOP = """\
# files loop: 10 items, 3 fail
t0 = time.time()
fails = [
    failure(3, "FileNotFoundError", "[Errno 2] No such file or directory: 'data/2021-03.csv'",
            3, "df = pd.read_csv(file)"),
    failure(7, "FileNotFoundError", "[Errno 2] No such file or directory: 'data/2021-07.csv'",
            3, "df = pd.read_csv(file)"),
    failure(9, "ValueError", "could not convert string to float: '<b>n/a</b>'",
            5, "feats = [compute_feature(df, f) for f in features]"),
]
for k in range(1, 8):
    b.update(snap("files-1", RunStatus.RUNNING, t0, done=k - 1, total=10, running=2,
                  failures=fails[: k // 3], name="files"))
    time.sleep(0.15)
b.finish(snap("files-1", RunStatus.FAILED, t0, done=7, total=10, failures=fails, name="files"))
print("files loop done")
"""

SHOW_ACTIONS = "print('actions:', actions)"

LONG_LOOP = """\
# long loop: cancelled from the sidebar
t0 = time.time()
try:
    for k in range(600):
        b.update(snap("long-1", RunStatus.RUNNING, t0, done=k, total=600, running=2,
                      name="long"))
        time.sleep(0.1)
    b.finish(snap("long-1", RunStatus.FINISHED, t0, done=600, total=600, name="long"))
except KeyboardInterrupt:
    b.finish(snap("long-1", RunStatus.INTERRUPTED, t0, done=k, total=600, cancelled=600 - k,
                  name="long"))
    print("interrupted at", k)
"""

SECOND_LOOP = """\
# features loop in the second notebook
t0 = time.time()
for k in range(1, 6):
    b.update(snap("features-1", RunStatus.RUNNING, t0, done=k - 1, total=5, running=1,
                  name="features"))
    time.sleep(0.1)
b.finish(snap("features-1", RunStatus.FINISHED, t0, done=5, total=5, name="features"))
"""

FIRST_CELL_IDS = ["setup-cell", "files-loop-cell", "show-actions-cell", "long-loop-cell"]
SECOND_CELL_IDS = ["setup-cell-2", "features-loop-cell"]


def _write(path: Path, sources: list[str], ids: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(src, id=cid) for src, cid in zip(sources, ids, strict=True)
    ]
    nbformat.write(nb, path)
    return path


def write_notebooks(root: Path) -> None:
    _write(root / "one.ipynb", [SETUP, FILES_LOOP, SHOW_ACTIONS, LONG_LOOP], FIRST_CELL_IDS)
    _write(root / "two.ipynb", [SETUP, SECOND_LOOP], SECOND_CELL_IDS)
