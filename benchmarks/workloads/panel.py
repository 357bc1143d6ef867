"""Workload 6: the panel's updates and comm messages while a run is live."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from harness import RESULTS, Bench, log


class _Counting:
    """Counts comm messages (the widget traffic to the browser) and observer updates."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, str]] = []
        self.updates: list[float] = []


def run(b: Bench) -> dict[str, Any]:
    import comm
    from comm.base_comm import BaseComm

    counting = _Counting()

    class CountingComm(BaseComm):
        def publish_msg(
            self,
            msg_type: str,
            data: Any = None,
            metadata: Any = None,
            buffers: Any = None,
            **keys: Any,
        ) -> None:
            counting.messages.append((time.perf_counter(), msg_type))

    original_create = comm.create_comm
    comm.create_comm = lambda *a, **kw: CountingComm(*a, **kw)
    how = "ProgressPanel (ipywidgets) with a counting comm"
    from dask_magic.ui import panel as panel_module

    target = panel_module.ProgressPanel
    original_update = target.update

    def update(self: Any, snapshot: Any) -> None:
        counting.updates.append(time.perf_counter())
        return original_update(self, snapshot)

    target.update = update

    import data

    data_paths = data.dataset(
        RESULTS / "data", b.cfg.files, b.cfg.rows, processes=os.cpu_count() or 1
    )
    cases = [
        (
            "tiny",
            f"{b.cfg.tiny_items:,} tiny items",
            list(range(b.cfg.tiny_items)),
            "for x in items:\n    out.append(x + 1)\n",
        ),
        (
            "tiny-many",
            f"{b.cfg.panel_big_items:,} tiny items",
            list(range(b.cfg.panel_big_items)),
            "for x in items:\n    out.append(x + 1)\n",
        ),
    ]
    if data_paths:
        cases.append(
            (
                "files",
                f"{len(data_paths)} files",
                data_paths,
                "for path in items:\n    df = pd.read_csv(path)\n"
                "    out.append(df.groupby('key')['value'].sum())\n",
            )
        )
    results = []
    try:
        for case, label, items, body in cases:
            b.ip.push({"items": items, "out": []})
            counting.messages.clear()
            counting.updates.clear()
            start = time.perf_counter()
            b.cell("%%parallel_for --progress widget\n" + body)
            duration = time.perf_counter() - start
            msgs = [t for t, kind in counting.messages if kind == "comm_msg"]
            gaps = [later - earlier for earlier, later in itertools.pairwise(counting.updates)]
            results.append(
                {
                    "case": case,
                    "label": label,
                    "duration_s": duration,
                    "updates": len(counting.updates),
                    "comm_messages": len(msgs),
                    "comm_opens": sum(1 for _, k in counting.messages if k == "comm_open"),
                    "updates_per_s": len(counting.updates) / duration,
                    "messages_per_s": len(msgs) / duration,
                    "min_gap_s": min(gaps) if gaps else None,
                }
            )
            log(f"    panel {case}: {results[-1]}")
    finally:
        comm.create_comm = original_create
        target.update = original_update
    return {
        "name": "panel",
        "title": "6. panel: messages sent while a run is live",
        "items": 0,
        "rows": {},
        "metrics": {"how": how, "cases": results},
        "kind": "panel",
    }
