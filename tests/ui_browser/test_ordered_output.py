"""The ordered part in a real JupyterLab: printed lines in item order, one shared figure.

A ``%%parallel_for`` cell over 12 items prints one line per item on the workers and plots
into a figure made in an earlier cell (``ax.plot`` runs in the kernel, in item order); its
last line shows the figure, and the next cell checks that its lines were drawn in item order.
In the page, the cell's output holds the panel, then the 12 lines in item order, then the
image, and nothing else. The screenshot is saved as ``test-artifacts/ui/20-ordered-output.png``:
look at it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .pages import TIMEOUT, open_notebook, run_cell, wait_idle, write_notebook

expect = pytest.importorskip("playwright.sync_api").expect

WHERE = "import dask_magic\nprint('dask_magic from', dask_magic.__file__)"
FIGURE = """\
%matplotlib inline
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3))
ax.set_title("i² per item, drawn in item order")
plt.close(fig)  # shown after the loop, by the loop cell's last line
"""
LOOP = """\
%%parallel_for --name squares
for i in range(12):
    print(f"item {i}: {i*i}")
    ax.plot([i, i + 1], [i * i, (i + 1) ** 2])
fig
"""
DRAWN = (
    "print('drawn in item order:', [line.get_xdata()[0] for line in ax.lines] == list(range(12)))"
)
ROOT = Path(__file__).resolve().parents[2]
EXPECTED = [f"item {i}: {i * i}" for i in range(12)]
STDOUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']"


@pytest.mark.slow
def test_lines_in_item_order_and_the_figure(lab, lab_kernels, page, artifacts):
    nb = open_notebook(
        page, lab, write_notebook(lab.root, "ordered.ipynb", WHERE, FIGURE, LOOP, DRAWN)
    )
    cells = nb.locator(".jp-Cell")
    for index in range(5):
        run_cell(page, nb, index)
    loop = cells.nth(3)
    panel = loop.locator(".dm-panel").first
    status = panel.locator(".dm-status")
    expect(status).to_have_attribute("data-done", "12", timeout=TIMEOUT)
    expect(status).to_have_attribute("data-failed", "0")
    image = loop.locator(".jp-RenderedImage img")
    expect(image).to_have_count(1, timeout=TIMEOUT)
    wait_idle(page)
    expect(cells.nth(4).locator(STDOUT)).to_have_text("drawn in item order: True")

    # the kernel runs this checkout's dask_magic (PYTHONPATH from tests/conftest.py)
    expect(cells.nth(1).locator(STDOUT)).to_contain_text(f"dask_magic from {ROOT}/dask_magic/")
    printed = "".join(loop.locator(STDOUT).all_inner_texts())
    assert printed.splitlines() == EXPECTED
    kinds = loop.evaluate(
        """(cell) => [...cell.querySelectorAll('.jp-OutputArea-output')].map(o =>
            o.querySelector('.dm-panel') ? 'panel' : o.querySelector('img') ? 'image'
            : o.dataset.mimeType || o.className)"""
    )
    stdout = "application/vnd.jupyter.stdout"
    assert kinds == ["panel", *[stdout] * (len(kinds) - 2), "image"], kinds  # nothing else
    size = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size[0] > 100 and size[1] > 100, size  # a drawn PNG, not a broken image

    image.scroll_into_view_if_needed()
    loop.screenshot(path=str(artifacts / "20-ordered-output.png"))
    page.screenshot(path=str(artifacts / "20-ordered-output-page.png"))
