"""What kind of thing each notebook name is, told by its runtime type (for the rewrite).

The rewrite is pure stdlib and cannot look at objects; the magic describes the names the loop
body reads with the plain strings of `dask_magic.contract`: ``np`` is a module (``np.append``
is a function call, not a change of ``np``), ``plt`` and an ``Axes`` are plotting state, an
open file or a ``csv.writer`` is a sink, ``display`` is IPython's display. Types are
recognised by their module and name, so nothing here imports matplotlib, tqdm or IPython.
"""

from __future__ import annotations

import builtins
import collections
import io
import logging
import numbers
import types
from collections.abc import Iterable, Mapping
from typing import Any

from . import contract as C

_PLOTTING_MODULES = ("matplotlib", "seaborn", "mpl_toolkits")
_SINK_MODULES = (
    "tqdm",
    "sqlite3",
    "_csv",
    "csv",
    "socket",
    "_thread",
    "threading",
    "multiprocessing",
)
_SINK_TYPES = (io.IOBase, logging.Logger, logging.LoggerAdapter)
_VALUES = (numbers.Number, str, bytes, bool, type(None), frozenset, range)
_DATA = (list, dict, set, tuple, bytearray, collections.deque, collections.Counter)
_DATA_MODULES = ("numpy", "pandas", "polars", "pyarrow", "xarray", "scipy")


def kind_of(value: Any) -> str:
    """The contract kind of one object."""
    if isinstance(value, types.ModuleType):
        return C.KIND_PLOTTING if _module_in(value.__name__, _PLOTTING_MODULES) else C.KIND_MODULE
    if (
        (getattr(value, "__module__", None) or "").startswith("IPython")  # None: a builtin's
        and getattr(value, "__name__", "") == "display"
    ):
        return C.KIND_DISPLAY
    module = type(value).__module__ or ""
    if _module_in(module, _PLOTTING_MODULES) or _holds_plots(value):
        return C.KIND_PLOTTING
    if isinstance(value, _SINK_TYPES) or _module_in(module, _SINK_MODULES):
        return C.KIND_SINK
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return C.KIND_CALLABLE
    if isinstance(value, _VALUES):
        return C.KIND_VALUE
    if isinstance(value, _DATA) or _module_in(module, _DATA_MODULES):
        return C.KIND_DATA
    return C.KIND_OBJECT


def kinds_of(names: Iterable[str], ns: Mapping[str, Any]) -> dict[str, str]:
    """Kinds of the ``names`` bound in ``ns`` (or builtins, where IPython puts ``display``)."""
    found = {}
    for name in names:
        if name in ns:
            found[name] = kind_of(ns[name])
        elif hasattr(builtins, name):
            kind = kind_of(getattr(builtins, name))
            if kind == C.KIND_DISPLAY:
                found[name] = kind
    return found


def _module_in(module: str, roots: tuple[str, ...]) -> bool:
    return module.split(".", 1)[0] in roots


def _holds_plots(value: Any) -> bool:
    """An array or list of matplotlib Axes (``fig, axes = plt.subplots(2, 2)``)."""
    flat = getattr(value, "flat", None)
    if flat is not None and getattr(getattr(value, "dtype", None), "kind", "") == "O":
        first = next(iter(flat), None)
        return first is not None and _module_in(type(first).__module__ or "", _PLOTTING_MODULES)
    if isinstance(value, (list, tuple)) and value and len(value) <= 1000:
        return all(_module_in(type(v).__module__ or "", _PLOTTING_MODULES) for v in value[:3])
    return False


def cell_kinds(source: str, ns: Mapping[str, Any]) -> dict[str, str]:
    """Kinds of every name the cell mentions that the namespace (or builtins) holds."""
    return kinds_of(cell_names(source), ns)


def cell_names(source: str) -> frozenset[str]:
    """Every name the cell mentions (none for a cell that does not parse: the rewrite says
    why). Parsed once per cell: its kinds are read again after the statements before the
    loop ran."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return frozenset()
    return frozenset(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))


def target_kinds(target: Any, first_item: Any) -> dict[str, str]:
    """Loop-target names whose value must stay in the notebook (``for ax in axes.flat``)."""
    import ast

    scratch: dict[str, Any] = {"@item": first_item}
    assign = ast.Module([ast.Assign([target], ast.Name("@item", ast.Load()))], type_ignores=[])
    ast.fix_missing_locations(assign)
    try:
        exec(compile(assign, "<target>", "exec"), scratch)
    except Exception:
        return {}
    names = [n for n in scratch if n not in ("@item", "__builtins__")]
    return {n: k for n, k in kinds_of(names, scratch).items() if k in C.KERNEL_KINDS}


class PlanInputs:
    """What the first rewrite of a cell read: the kinds, and the very values of those names
    (the random-state origins it looked up are read from them)."""

    def __init__(
        self, kinds: dict[str, str], ns: Mapping[str, Any], names: frozenset[str] = frozenset()
    ) -> None:
        self.names = names  # every name the cell mentions (`cell_names`)
        self.kinds = dict(kinds)
        self.values = {name: ns[name] for name in kinds if name in ns}

    def same(self, kinds: dict[str, str], ns: Mapping[str, Any]) -> bool:
        if kinds != self.kinds:
            return False
        values = self.values
        return all(name in ns and ns[name] is value for name, value in values.items())
