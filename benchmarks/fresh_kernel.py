"""One fresh process, as a fresh kernel is: prints one JSON line of timings (workload 5).

``python fresh_kernel.py magic N``: ``%load_ext dask_magic`` (timed apart: it imports the
engine and `distributed`), then the first ``%%parallel_for`` cell of the kernel, 1 item, which
starts the local cluster of N workers. The cell runs with ``--fresh``: without it the journal
(``./.dask-magic``, kept between processes) restores the item of an earlier round, and the
cell would start no cluster at all.

``python fresh_kernel.py cluster N``: ``import distributed`` (timed apart), then the
`LocalCluster` + `Client` start that dask-magic does (same arguments), and a first
``client.submit(...).result()`` on it.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time


def magic(workers: int) -> dict[str, float]:
    start = time.perf_counter()
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython()
    ip.run_cell("from bench_work import inc\nout = []")
    kernel_ready = time.perf_counter()  # what a fresh kernel has before the user's first cell
    ip.run_line_magic("load_ext", "dask_magic")
    loaded = time.perf_counter()
    cell = (
        f"%%parallel_for --fresh --progress none --workers {workers}\n"
        "for x in [1]:\n    out.append(inc(x))\n"
    )
    from dask_magic.engine import cluster

    # The cell's first `get_client` (public) is the one that starts the local cluster: timing
    # it tells the cluster's start apart from what the cell itself costs.
    started: list[float] = []
    get_client = cluster.get_client

    def timed_get_client(**kwargs: object) -> object:
        t0 = time.perf_counter()
        try:
            return get_client(**kwargs)  # type: ignore[arg-type]
        finally:
            started.append(time.perf_counter() - t0)

    cluster.get_client = timed_get_client  # type: ignore[assignment]
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        result = ip.run_cell(cell)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        ip.run_cell(cell)
        second = time.perf_counter() - t0
    ok = result.success and ip.user_ns["out"] == [2, 2]
    cluster.close_cluster()
    return {
        "load_s": loaded - start,
        "kernel_start_s": kernel_ready - start,
        "load_ext_s": loaded - kernel_ready,
        "first_cell_s": first,
        "load_ext_and_first_cell_s": loaded - kernel_ready + first,
        "cluster_start_in_cell_s": started[0] if started else 0.0,
        "second_cell_s": second,
        "ok": ok,
    }


def cluster(workers: int) -> dict[str, float]:
    start = time.perf_counter()
    from bench_work import inc
    from distributed import Client

    from dask_magic.engine import cluster as dm_cluster  # the same sizing dask-magic uses

    imported = time.perf_counter()
    t0 = time.perf_counter()
    local = dm_cluster.new_local_cluster(workers)  # exactly what dask-magic starts
    client = Client(local, set_as_default=False)
    started = time.perf_counter() - t0
    t0 = time.perf_counter()
    ok = client.submit(inc, 1, pure=False).result() == 2
    first_submit = time.perf_counter() - t0
    client.close()
    local.close()
    return {
        "import_s": imported - start,
        "cluster_start_s": started,
        "first_submit_s": first_submit,
        "ok": ok,
    }


if __name__ == "__main__":
    mode, n = sys.argv[1], int(sys.argv[2])
    print(json.dumps(magic(n) if mode == "magic" else cluster(n)))
