"""Take a tqdm progress bar off the loop's iterable before its items are listed.

``for f in tqdm(files):`` is the usual way to watch a slow loop. Under ``%%parallel_for`` the
iterable is listed once in the kernel, so the bar would race to 100 % while the items are
listed, next to dask-magic's own panel, and then say nothing about the real work. The items
of ``tqdm(x)`` are the items of ``x``, so the loop runs over ``x`` instead:

* a call of one of tqdm's own classes (``tqdm(x, desc=...)``, ``tqdm.tqdm``,
  ``tqdm.auto.tqdm``, ``tqdm.notebook.tqdm``) is not made at all: its ``iterable`` argument is
  evaluated and listed, so no bar is ever drawn;
* ``trange(*args)`` and ``tnrange(*args)`` become ``range(*args)``;
* any other value that is a tqdm bar (made before the loop, or by a subclass of the
  user's) gives its ``.iterable``, which the bar has not iterated, and the bar is closed
  without drawing its last frame.

tqdm is recognised by its runtime type (classes named ``tqdm`` from a ``tqdm`` module in the
class's MRO), so nothing here imports tqdm. Pure Python: no IPython, no dask.
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["is_bar", "list_items", "unwrap_bar"]

#: The name under which the bar's callable is handed to the rewritten call (cannot clash).
_CALLABLE = "@dm_bar_factory"
_RANGE_HELPERS = ("trange", "tnrange")


def _from_tqdm(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "tqdm" or module.startswith("tqdm.")


def _is_bar_class(obj: Any) -> bool:
    if not isinstance(obj, type):
        return False
    return any(c.__name__ == "tqdm" and _from_tqdm(c) for c in obj.__mro__)


def is_bar(value: Any) -> bool:
    """Whether ``value`` is a tqdm progress bar (of any tqdm flavour, or a subclass)."""
    return _is_bar_class(type(value))


def unwrap_bar(value: Any) -> Any:
    """``value`` itself, or for a tqdm bar the iterable it wraps (the bar closed silently)."""
    if not is_bar(value):
        return value
    inner = getattr(value, "iterable", None)
    if inner is None:  # `tqdm(total=n)` wraps nothing: the loop fails as the serial one would
        return value
    _close_silently(value)
    return inner


def _close_silently(bar: Any) -> None:
    """Close ``bar`` without drawing its final frame: text bars write it to ``bar.fp``."""
    bar.leave = False
    if hasattr(bar, "fp"):
        bar.fp = _NullFile()
    bar.close()


class _NullFile:
    """Swallows what a closing text bar writes."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _bar_factory(func: Any) -> Any:
    """What to call instead of ``func`` (tqdm's own class or range helper), else None."""
    if _is_bar_class(func) and _from_tqdm(func):
        return _iterable_argument
    if callable(func) and getattr(func, "__name__", None) in _RANGE_HELPERS and _from_tqdm(func):
        return _range_of
    return None


def _iterable_argument(iterable: Any = None, *args: Any, **kwargs: Any) -> Any:
    """The items ``tqdm(iterable, ...)`` would yield: those of ``iterable`` (positional or
    keyword); the bar's own options are evaluated, as in the serial loop, and dropped."""
    return iterable


def _range_of(*args: Any, **kwargs: Any) -> range:
    """``trange(*args, **bar_options)`` yields ``range(*args)``."""
    return range(*args)


def _is_lookup(node: ast.expr) -> bool:
    """``tqdm`` or ``tqdm.auto.tqdm``: evaluating it has no side effects to repeat."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def list_items(expression: ast.Expression, filename: str, namespace: dict[str, Any]) -> list[Any]:
    """Evaluate the loop's iterable once in ``namespace`` and list it, without a tqdm bar.

    Errors of the user's expression propagate unchanged (the caller reports them).
    """
    call = expression.body
    if isinstance(call, ast.Call) and _is_lookup(call.func):
        factory = _bar_factory(
            eval(compile(ast.Expression(call.func), filename, "eval"), namespace)
        )
        if factory is not None:
            return _list_through(factory, call, filename, namespace)
    value = eval(compile(expression, filename, "eval"), namespace)
    return list(unwrap_bar(value))


def _list_through(
    factory: Any, call: ast.Call, filename: str, namespace: dict[str, Any]
) -> list[Any]:
    """Evaluate ``call``'s arguments as written, but call ``factory`` instead of the bar."""
    swapped = ast.Call(
        func=ast.copy_location(ast.Name(_CALLABLE, ast.Load()), call.func),
        args=call.args,
        keywords=call.keywords,
    )
    code = compile(
        ast.fix_missing_locations(ast.Expression(ast.copy_location(swapped, call))),
        filename,
        "eval",
    )
    namespace[_CALLABLE] = factory
    try:
        value = eval(code, namespace)
    finally:
        namespace.pop(_CALLABLE, None)
    return list(unwrap_bar(value))
