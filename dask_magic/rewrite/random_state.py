"""Find draws from a process-wide random state in the loop body: a warning, not a refusal.

``np.random.rand()``, ``random.choice(xs)`` or ``torch.randn(3)`` draw from state that every
worker process holds on its own. The serial loop draws item after item from one stream, the
parallel run from as many streams as there are workers, seeded however each process began:
the numbers differ from the serial loop's and from run to run. No rewrite can restore the
serial stream, so the loop still runs; the magic prints the warning with its fix (a generator
seeded per item, or ``--seed N``, which seeds each item's draws).

A call is a draw when its callee's dotted path is one of the drawing functions of
`DRAWING_FUNCTIONS` (``numpy.random.rand``, ``random.choice``, ``torch.rand``, ...). The
path's first name is resolved through ``origins`` when the magic describes the notebook's
names (`NamespaceOrigins`: ``np`` is the module ``numpy``, ``choice`` is the global
``random.choice``, ``rng`` is a plain object whose methods are a generator's); a name it does
not know keeps its conventional meaning (``np`` and ``numpy`` for numpy, ``random``,
``torch``). Not flagged: generator objects (``rng.random()``), constructors such as
``np.random.default_rng(seed)``, torch draws given ``generator=``, a library whose global
state the body seeds itself (``np.random.seed(i)`` in the body), and names the body binds.

Pure stdlib; nothing is imported to recognise these libraries.
"""

from __future__ import annotations

import ast
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

from dask_magic.errors import Finding

from .findings import GLOBAL_RANDOM

__all__ = ["DRAWING_FUNCTIONS", "NamespaceOrigins", "find_global_random"]

_NUMPY_DRAWS = """rand randn randint random random_sample ranf sample choice shuffle
permutation bytes uniform normal standard_normal binomial poisson beta exponential gamma
multivariate_normal lognormal laplace logistic geometric hypergeometric multinomial dirichlet
chisquare f gumbel negative_binomial noncentral_chisquare noncentral_f pareto power rayleigh
standard_cauchy standard_exponential standard_gamma standard_t triangular vonmises wald
weibull zipf random_integers logseries"""
_RANDOM_DRAWS = """random randint randrange choice choices shuffle sample uniform gauss
normalvariate lognormvariate expovariate vonmisesvariate gammavariate betavariate
paretovariate weibullvariate triangular getrandbits randbytes binomialvariate"""
_TORCH_DRAWS = """rand randn randint randperm rand_like randn_like randint_like normal
bernoulli multinomial poisson"""

#: Module -> its functions that draw from the module's process-wide random state.
DRAWING_FUNCTIONS: dict[str, frozenset[str]] = {
    "numpy.random": frozenset(_NUMPY_DRAWS.split()),
    "random": frozenset(_RANDOM_DRAWS.split()),
    "torch": frozenset(_TORCH_DRAWS.split()),
}
#: Module -> the call that seeds its global state (a body that calls it seeds per item).
_SEEDING = {"numpy.random": "seed", "random": "seed", "torch": "manual_seed"}
#: What a first name means when the notebook's names are not described.
_CONVENTIONAL = {"np": "numpy", "numpy": "numpy", "random": "random", "torch": "torch"}


def find_global_random(
    body: ast.AST, bound: frozenset[str] | set[str] = frozenset(), origins: Any = None
) -> tuple[Finding, ...]:
    """One warning per draw from a process-wide random state in ``body``, in source order.

    Parameters
    ----------
    body:
        The loop body (any node; line numbers are already the user's).
    bound:
        Names the body binds itself: a local ``random = ...`` is not the module.
    origins:
        ``name -> dotted origin`` (``"numpy"``, ``"random.choice"``), None for a plain
        object; a name it lacks keeps its conventional meaning.
    """
    calls = list(_dotted_calls(body, bound, origins or {}))
    seeded = {module for module, name, _ in calls if _SEEDING.get(module) == name}
    found = [
        GLOBAL_RANDOM.at(node, text=ast.unparse(node.func), module=module)
        for module, name, node in calls
        if module not in seeded
        and name in DRAWING_FUNCTIONS.get(module, ())
        and not any(k.arg == "generator" for k in node.keywords)
    ]
    return tuple(sorted(found, key=lambda f: (f.lineno, f.col)))


def _dotted_calls(
    body: ast.AST, bound: frozenset[str] | set[str], origins: Mapping[str, str | None]
) -> Iterator[tuple[str, str, ast.Call]]:
    """``(module, function, call)`` for every call whose callee resolves to a dotted path."""
    for node in ast.walk(body):
        if not isinstance(node, ast.Call):
            continue
        parts = _attribute_chain(node.func)
        if parts is None or parts[0] in bound:
            continue
        root = _resolve(parts[0], origins)
        if root is None:
            continue
        module, _, name = ".".join([root, *parts[1:]]).rpartition(".")
        if module:
            yield module, name, node


def _attribute_chain(node: ast.expr) -> list[str] | None:
    """``np.random.rand`` -> ``["np", "random", "rand"]``; None if it is not a plain chain."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def _resolve(name: str, origins: Mapping[str, str | None]) -> str | None:
    if name in origins:
        return origins[name]
    return _CONVENTIONAL.get(name)


class NamespaceOrigins(Mapping):
    """The notebook's names as `find_global_random` needs them, read from runtime types.

    ``origins[name]`` is a module's name for a module, ``"random.choice"`` for a function
    bound to the process-wide state of `random` or `numpy.random` (``from random import
    choice``), ``"torch.rand"`` for torch's drawing functions, and None for anything else
    (a generator object, a user's function). Looked up lazily: only the first names of the
    body's calls are ever asked for.
    """

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self._namespace = namespace

    def __getitem__(self, name: str) -> str | None:
        return describe(self._namespace[name])

    def __contains__(self, name: object) -> bool:
        return name in self._namespace

    def __iter__(self) -> Iterator[str]:
        return iter(self._namespace)

    def __len__(self) -> int:
        return len(self._namespace)


def describe(value: Any) -> str | None:
    """Where ``value`` comes from, as far as global random state is concerned."""
    if isinstance(value, types.ModuleType):
        return value.__name__
    name = getattr(value, "__name__", None)
    if not isinstance(name, str):
        return None
    owner = getattr(value, "__self__", None)
    for module, attribute in (("random", "_inst"), ("numpy.random.mtrand", "_rand")):
        state = getattr(sys.modules.get(module), attribute, None)
        if state is not None and owner is state:
            return f"{module.removesuffix('.mtrand')}.{name}"
    if getattr(value, "__module__", None) == "torch" and name in DRAWING_FUNCTIONS["torch"]:
        return f"torch.{name}"
    return None
