"""Where the journal can live: a folder this process can write (and git ignores)."""

from __future__ import annotations

import os
from pathlib import Path

#: folders this process made (or found) and wrote a probe into: every cell asks again
_PROBED: set[Path] = set()


def usable(folder: Path) -> bool:
    """Whether the journal can live in ``folder`` (made, with its ``.gitignore``, if need be).

    The first look writes a probe file; later ones (one per cell) only check that the folder
    and its ``.gitignore`` are still there and writable, and probe again where not."""
    if folder in _PROBED:
        if (folder / ".gitignore").is_file() and os.access(folder, os.W_OK | os.X_OK):
            return True
        _PROBED.discard(folder)
    if _probe(folder):
        _PROBED.add(folder)
        return True
    return False


def _probe(folder: Path) -> bool:
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
