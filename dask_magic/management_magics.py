"""The management magics: ``%dask_cluster``, ``%parallel_journal`` and the sidebar's buttons.

They look after what ``%%parallel_for`` leaves behind (its cluster, its journal, its runs)
and run no loop themselves; `dask_magic.magics.load` registers them with `DaskMagics`, whose
runs, retries and sidebar bridge they use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .engine import cluster, resume
from .errors import ClusterError
from .magic_decorators import line_magic
from .magic_options import parse
from .ui import text
from .views import RUNS_KEPT

if TYPE_CHECKING:
    from .magics import DaskMagics


@magics_class
class ManagementMagics(Magics):
    """``%dask_cluster`` and ``%parallel_journal``; one instance per shell, next to ``loop``."""

    def __init__(self, shell: Any, loop: DaskMagics) -> None:
        super().__init__(shell)
        self.loop = loop  # the %%parallel_for magics: the runs kept and the sidebar bridge

    # -- %parallel_journal ---------------------------------------------------------------------
    @magic_arguments()
    @argument("--clear", action="store_true", help="Forget every journaled item.")
    @line_magic("parallel_journal")
    def parallel_journal(self, line: str) -> None:
        """List the loops the journal keeps, with their sizes; ``--clear`` forgets them."""
        args = parse(self.parallel_journal, line)
        print(resume.journal_text(clear=args.clear))

    # -- %dask_cluster -------------------------------------------------------------------------
    @magic_arguments()
    @argument("--close", action="store_true", help="Close the local cluster dask-magic started.")
    @argument("--restart", action="store_true", help="Restart the workers (frees their memory).")
    @argument("--scale", type=int, metavar="N", help="Scale the local cluster to N workers.")
    @argument("--scheduler", metavar="ADDRESS", help="Connect to this scheduler and show it.")
    @line_magic("dask_cluster")
    def dask_cluster(self, line: str) -> None:
        """Show the cluster ``%%parallel_for`` uses; close, restart or scale it."""
        args = parse(self.dask_cluster, line)
        try:
            if args.close:
                closed = cluster.close_cluster()
                self._sidebar_cluster(None)
                print(
                    "dask-magic: local cluster closed"
                    if closed
                    else "dask-magic: no local cluster of dask-magic's is running"
                )
                return
            if args.restart:
                cluster.restart_cluster()
            if args.scale is not None:
                cluster.scale_cluster(args.scale)
            client = cluster.get_client(scheduler=args.scheduler)
        except ClusterError as exc:
            raise UsageError(str(exc)) from None
        info = cluster.cluster_info(client)
        self._sidebar_cluster(info)
        print(text.cluster_text(info))

    # -- the JupyterLab sidebar ---------------------------------------------------------------
    def sidebar_action(self, action: str, args: dict[str, Any]) -> None:
        """Do what a sidebar button asked (already validated by `dask_magic.bridge`).

        The kernel reads these between cells, like any comm message; an exception here goes
        back to the sidebar as an error message.
        """
        if action == "retry":
            run = self.loop.runs.get(args["run_id"])
            if run is None:
                raise UsageError(
                    f"this run is no longer kept (dask-magic keeps the last {RUNS_KEPT} runs)"
                )
            self.loop.retry_run(run, progress="none")  # the sidebar shows its progress
        elif action == "close_cluster":
            cluster.close_cluster()
            self._sidebar_cluster(None)

    def _sidebar_cluster(self, info: Any) -> None:
        if self.loop.bridge is not None:
            self.loop.bridge.set_cluster(info)
