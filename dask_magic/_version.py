"""Single source of the package version (read by hatch and the labextension test)."""

__version__ = "0.1.0"
