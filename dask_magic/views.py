"""Which views watch a run: the cell's own (``--progress``) and the JupyterLab sidebar.

``auto`` picks the widget panel inside a Jupyter kernel (ipykernel: a front end that has
comms, as JupyterLab, VS Code, nbclient and papermill do) and the one-line text progress in a
terminal IPython; ``widget``, ``text`` and ``none`` are taken as named. The panel's buttons
call back into the magics (`DaskMagics.retry_run`), found through the magics object passed in.
This module does not import `dask_magic.magics` (which imports it): `Magics` states what it
uses of that object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from IPython.core.error import UsageError

from .engine import controls
from .engine.results import RunObserver
from .ui import text

if TYPE_CHECKING:
    from .engine.run import Run
    from .ui.panel import ProgressPanel

#: How many runs the magics keep for ``%parallel_retry`` and the views' buttons (oldest
#: dropped first). Here rather than in `dask_magic.magics` because both name it.
RUNS_KEPT = 20


class Magics(Protocol):
    """What the views use of `dask_magic.magics.DaskMagics`."""

    @property
    def shell(self) -> Any: ...

    @property
    def bridge(self) -> Any: ...  # the sidebar's `Bridge`, or None outside a kernel

    @property
    def runs(self) -> Mapping[str, Run]: ...

    def retry_run(self, run: Run, *, here: int | None = None, progress: str = "auto") -> Any: ...


def observers(magics: Magics, progress: str) -> list[RunObserver]:
    """The views of one run: the cell's view and, in a kernel, the sidebar bridge."""
    sidebar: list[RunObserver] = [magics.bridge] if magics.bridge is not None else []
    return cell_views(magics, progress) + sidebar


def cell_views(magics: Magics, progress: str) -> list[RunObserver]:
    """The cell's view of a run, chosen by ``--progress``."""
    if progress == "auto":
        progress = "widget" if in_kernel(magics.shell) else "text"
    if progress == "none":
        return []
    if progress == "text":
        return [text.TextProgress()]
    return [panel(magics)]


def in_kernel(shell: Any) -> bool:
    """Whether ``shell`` runs in a Jupyter kernel."""
    # Only ipykernel's shell has a kernel, and with it a comm channel for widgets.
    return getattr(shell, "kernel", None) is not None


def panel(magics: Magics) -> ProgressPanel:
    """A `ProgressPanel` whose buttons call `DaskMagics.retry_run` on the panel's run."""
    from .ui.panel import ProgressPanel  # ipywidgets is imported only when a panel is shown

    view = ProgressPanel(
        on_retry=lambda: _retry(magics, view),
        on_rerun=lambda index: magics.retry_run(panel_run(magics, view), here=index),
        on_cancel=lambda: _post_live(view, controls.CANCEL),
        live_mode=lambda: bool(getattr(magics.bridge, "live", False)),
    )
    return view


def _post_live(view: ProgressPanel, kind: str) -> bool:
    """Hand a click to the panel's run while it runs (the click came on a subshell)."""
    run_id = view.snapshot.run_id if view.snapshot is not None else None
    if run_id is None or not controls.default.post(controls.Control(kind, run_id)):
        if kind == controls.CANCEL:
            print("dask-magic: the run has ended; there is nothing to cancel")
        return False
    return True


def _retry(magics: Magics, view: ProgressPanel) -> None:
    """Retry failed: at once into the live run, or as `%parallel_retry` once it has ended."""
    if not _post_live(view, controls.RETRY):
        magics.retry_run(panel_run(magics, view), progress="none")


def panel_run(magics: Magics, view: ProgressPanel) -> Run:
    """The run a panel shows, found by the run id of its last snapshot.

    The panel stays an observer of its run through retries (``persistent``), so
    ``progress="none"`` above still updates it in place.
    """
    run_id = view.snapshot.run_id if view.snapshot is not None else None
    run = magics.runs.get(run_id) if run_id else None
    if run is None:
        raise UsageError(
            f"this run is no longer kept (dask-magic keeps the last {RUNS_KEPT} runs); "
            "run its cell again"
        )
    return run
