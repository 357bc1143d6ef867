"""The file-loop data set: CSV files of random rows, 5 % of them corrupt in four ways.

Written once under ``benchmarks/results/data/`` (git-ignored) and re-used while the shape is
the same; a ``complete`` marker makes an interrupted write start over.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Every 20th file (5 %) is corrupt; the kind rotates so that errors differ by type and line.
CORRUPT_EVERY = 20
CORRUPT_KINDS = ("garbage", "missing-column", "ragged", "empty")
KEYS = [f"k{i:02d}" for i in range(20)]


def corrupt_kind(index: int) -> str | None:
    if index % CORRUPT_EVERY != CORRUPT_EVERY // 3:
        return None
    return CORRUPT_KINDS[(index // CORRUPT_EVERY) % len(CORRUPT_KINDS)]


def write_file(args: tuple[str, int, int]) -> None:
    path, index, rows = args
    import numpy as np
    import pandas as pd

    kind = corrupt_kind(index)
    if kind == "garbage":  # not text at all: UnicodeDecodeError
        Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(index).bytes(4096))
        return
    if kind == "empty":  # zero bytes: EmptyDataError
        Path(path).write_bytes(b"")
        return
    rng = np.random.default_rng(index)
    df = pd.DataFrame(
        {
            "id": np.arange(rows) + index * rows,
            "key": rng.choice(KEYS, size=rows),
            "value": rng.normal(size=rows).round(6),
            "note": rng.choice(["a", "bb", "ccc", "dddd"], size=rows),
        }
    )
    if kind == "missing-column":  # parses, then groupby fails: KeyError 'value'
        df = df.rename(columns={"value": "amount"})
    text = df.to_csv(index=False)
    if kind == "ragged":  # a line with too many fields in the middle: ParserError
        lines = text.splitlines(keepends=True)
        middle = len(lines) // 2
        lines[middle] = lines[middle].rstrip("\n") + ",extra,fields\n"
        text = "".join(lines)
    Path(path).write_text(text)


def dataset(root: Path, n_files: int, rows: int, processes: int = 1) -> list[str]:
    """Paths of ``n_files`` CSV files of ``rows`` rows under ``root`` (written if missing)."""
    folder = root / f"csv-{n_files}x{rows}"
    paths = [str(folder / f"part-{i:04d}.csv") for i in range(n_files)]
    marker = folder / "complete"
    if marker.exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(p, i, rows) for i, p in enumerate(paths)]
    if processes > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(processes) as pool:
            pool.map(write_file, jobs, chunksize=4)
    else:
        for job in jobs:
            write_file(job)
    marker.write_text("ok")
    return paths


def n_corrupt(n_files: int) -> int:
    return sum(1 for i in range(n_files) if corrupt_kind(i))


if __name__ == "__main__":  # python benchmarks/data.py DIR N ROWS
    import sys

    print(len(dataset(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), os.cpu_count() or 1)))
