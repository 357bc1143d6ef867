"""Print the requirements a version-matrix venv installs, one per line, from pyproject.toml.

The matrix runs the fast part of the suite from the source tree (``PYTHONPATH``), so it needs
the package's dependencies and the test extra, but not the package itself: installing it
would build the JupyterLab sidebar (jlpm, a few minutes) for tests that never load it. The
browser tools (jupyterlab, notebook, playwright) are left out for the same reason, and the
lint tools, which `make lint` runs once, in the main venv.

``--lowest NAME,...`` pins the named dependencies to the lowest version pyproject allows
(``>=X`` becomes ``==X``), so the floors we declare are installed somewhere.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSER_ONLY = {"jupyterlab", "notebook", "playwright"}
LINT_ONLY = {"ruff", "mypy", "import-linter"}  # `make lint` runs in the main venv
_NAME = re.compile(r"^\s*([A-Za-z0-9_.-]+)")


def requirement_name(requirement: str) -> str:
    """The normalised distribution name: ``ipywidgets>=8`` → ``ipywidgets``."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"cannot read a package name from {requirement!r}")
    return match.group(1).lower().replace("_", "-")


def lowest(requirement: str) -> str:
    """``name>=X,<Y`` → ``name==X``: the floor the requirement declares."""
    floor = re.search(r">=\s*([^,;\s]+)", requirement)
    if floor is None:
        raise ValueError(f"{requirement!r} declares no lower bound to test")
    return f"{requirement_name(requirement)}=={floor.group(1)}"


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads((ROOT / "pyproject.toml").read_text())
    # the matrix runs this with the main venv's Python, whatever the job's Python is
    sys.exit("matrix_requirements.py needs Python >= 3.11 (tomllib)")


def matrix_requirements(lowest_names: set[str]) -> list[str]:
    """The runtime and test requirements, browser tools left out, floors pinned where asked."""
    project = _pyproject()["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    out = []
    for requirement in wanted:
        name = requirement_name(requirement)
        if name in BROWSER_ONLY | LINT_ONLY:
            continue
        out.append(lowest(requirement) if name in lowest_names else requirement)
    unknown = lowest_names - {requirement_name(r) for r in wanted}
    if unknown:
        raise SystemExit(f"--lowest names no dependency of the project: {sorted(unknown)}")
    return out


def main() -> None:
    """Command line: print the list."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lowest", default="", help="comma-separated names to pin to their floor")
    args = parser.parse_args()
    names = {n.strip().lower() for n in args.lowest.split(",") if n.strip()}
    print("\n".join(matrix_requirements(names)))


if __name__ == "__main__":
    main()
