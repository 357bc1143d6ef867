"""The panel in a real kernel: a notebook executed by nbclient, as papermill and CI do.

Checks what a saved notebook keeps: the widget state nbclient stores (counts in the panel's
status widget) and the ``text/plain`` / ``text/html`` summaries beside the widget view,
which nbconvert and GitHub show. The kernel finds this checkout through ``PYTHONPATH``
(set in ``tests/conftest.py``) and uses the ``python3`` kernelspec of the running venv
(``python -m ipykernel install --sys-prefix``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import notebook
from nbclient import NotebookClient

SETUP = """\
items = list(range(40))
def parse(x):
    if x % 10 == 3:
        raise ValueError(f"bad <img src=x onerror=alert(1)> {x}")
    if x == 39:
        raise KeyError("</details><script>alert(2)</script>")
    return x
"""

LOOP = """\
%%parallel_for
results = []
for x in items:
    print("reading", x)
    results.append(parse(x))
"""

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook after nbclient ran it in a fresh python3 kernel."""
    folder = tmp_path_factory.mktemp("nb")
    nb = notebook(("%load_ext dask_magic", SETUP, LOOP, "len(results)"))
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    with pytest.MonkeyPatch.context() as patch:
        # The venv's python3 kernelspec before any in ~/.local/share/jupyter; the kernel
        # finds this checkout through PYTHONPATH, set in tests/conftest.py.
        jupyter_path = [str(Path(sys.prefix) / "share" / "jupyter"), os.environ.get("JUPYTER_PATH")]
        patch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, jupyter_path)))
        client.execute()
    nbformat.write(nb, folder / "executed.ipynb")
    return nb


def _panel_output(nb) -> dict:
    outputs = [o for o in nb.cells[2].outputs if WIDGET_VIEW in o.get("data", {})]
    assert len(outputs) == 1, nb.cells[2].outputs
    return outputs[0]


def _widget_state(nb) -> dict:
    return nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]


def test_stored_widget_state_holds_the_final_counts(executed):
    state = _widget_state(executed)
    root = state[_panel_output(executed)["data"][WIDGET_VIEW]["model_id"]]
    assert "dm-panel" in root["state"]["_dom_classes"]
    children = [ref.removeprefix("IPY_MODEL_") for ref in root["state"]["children"]]
    status = next(
        state[c]["state"]
        for c in children
        if "dm-status-w" in state[c]["state"].get("_dom_classes", [])
    )
    counts = dict(re.findall(r'data-(\w+)="(\d+)"', status["value"]))
    assert (counts["total"], counts["done"], counts["failed"], counts["queued"]) == (
        "40",
        "35",
        "5",
        "0",
    )
    headers = [
        s["state"]["value"]
        for s in state.values()
        if 'class="dm-group"' in s["state"].get("value", "")
    ]
    assert any("4 \u00d7 ValueError at line 5" in h for h in headers)
    assert any("1 \u00d7 KeyError at line 5" in h for h in headers)
    assert executed.cells[3].outputs[0]["data"]["text/plain"] == "35"


def test_text_fallbacks_hold_the_final_summary(executed):
    data = _panel_output(executed)["data"]
    page = data["text/html"]
    assert 'data-done="35"' in page and 'data-failed="5"' in page
    assert "4 \u00d7 ValueError at line 5" in page and "1 \u00d7 KeyError at line 5" in page
    assert (
        "results.append(parse(x))" in page and "reading 3" in page
    )  # traceback and captured stdout
    assert "<img" not in page and "<script" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;/details&gt;&lt;script&gt;" in page
    assert data["text/plain"].startswith("parallel_for finished with failures: 40 items")
    assert "4 \u00d7 ValueError at line 5" in data["text/plain"]


def test_traceback_names_the_cell_as_its_prompt_does(executed):
    assert executed.cells[2].execution_count == 3
    assert (
        "Cell In[3], line 5, in &lt;loop body&gt;" in _panel_output(executed)["data"]["text/html"]
    )
