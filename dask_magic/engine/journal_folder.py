"""Where the journal can live: a folder this process can write (and git ignores)."""

from __future__ import annotations

import os
from pathlib import Path


def usable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def pick_folder(configured: Path | None = None, cwd: Path | None = None) -> Path | None:
    """Where the journal lives: ``configured``, else ``./.dask-magic``, else the user cache."""
    candidates = (
        [configured]
        if configured
        else [
            (cwd or Path.cwd()) / ".dask-magic",
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dask-magic",
        ]
    )
    return next((folder for folder in candidates if usable(folder)), None)
