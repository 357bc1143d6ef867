"""The notebooks the browser tests open: the real ``%load_ext dask_magic`` and
``%%parallel_for`` on a LocalCluster that the kernel starts."""

from __future__ import annotations

from pathlib import Path

from helpers import write_notebook

SETUP = """\
%load_ext dask_magic
import time
bad = {3, 7, 9}
print("loaded")
"""

# Cell lines as the user sees them: %%parallel_for is line 1, so the two errors are raised at
# lines 7 and 9; the sidebar groups them as "FileNotFoundError at line 7" and "ValueError ...".
FILES_LOOP = """\
%%parallel_for --name files
# files loop: 10 items, 3 fail
results = []
for i in range(10):
    print(f"reading data/2021-{i:02d}.csv")
    if i in bad and i != 9:
        raise FileNotFoundError(f"No such file or directory: 'data/2021-{i:02d}.csv'")
    if i in bad:
        float("<b>n/a</b>")
    results.append(i * i)
"""

FIX = """\
bad = set()  # the fix
print("fixed")
"""

SHOW = "print('results:', sorted(results))"

LONG_LOOP = """\
%%parallel_for --name long
# long loop: cancelled from the sidebar
for i in range(200):
    time.sleep(0.5)
"""

SECOND_SETUP = """\
%load_ext dask_magic
print("loaded")
"""

SECOND_LOOP = """\
%%parallel_for --name features
# features loop in the second notebook
total = 0
for x in range(5):
    total += x
"""

FIRST_CELL_IDS = ["setup-cell", "files-loop-cell", "fix-cell", "show-cell", "long-loop-cell"]
SECOND_CELL_IDS = ["setup-cell-2", "features-loop-cell"]


def write_notebooks(root: Path) -> None:
    write_notebook(root / "one.ipynb", [SETUP, FILES_LOOP, FIX, SHOW, LONG_LOOP], FIRST_CELL_IDS)
    write_notebook(root / "two.ipynb", [SECOND_SETUP, SECOND_LOOP], SECOND_CELL_IDS)
