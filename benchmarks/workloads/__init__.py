"""One module per workload; each has ``run(bench) -> result`` (rows, metrics, kind, title)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import big, cpu, files, fixed, panel, tiny

#: Workload name (``--only``) -> its function, in report order.
WORKLOADS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "tiny": tiny.run,
    "cpu": cpu.run,
    "files": files.run,
    "clean": files.run_clean,
    "big": big.run,
    "fixed": fixed.run,
    "panel": panel.run,
}
