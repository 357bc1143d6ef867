"""The plan of a ``%%parallel_for`` cell: rewritten, or the one made for it last time.

A cell run again unchanged (the same text and options, its names of the same kinds, the
same answers to where their random state comes from) gets the plan made last time, under
the new cell's filename (its tracebacks name the new cell): the rewrite, 1.5-2 ms of a warm
1-item cell, runs once per distinct cell instead of once per run. The key holds no
notebook object, only kinds and short descriptions, so a value the notebook deletes is not
kept alive. A plan is never changed once made (`LoopPlan`'s trees are only read, compiled
and copied), so runs may share them.

Refusals and syntax errors are not kept: they are raised again, as the `UsageError` the
magic shows, each time.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError

from .errors import UnsupportedLoopError
from .rewrite import LoopPlan, rewrite_loop
from .rewrite.random_state import NamespaceOrigins, describe

#: distinct cells whose plans are kept (a plan is a few small syntax trees)
PLANS_KEPT = 32


class PlanCache:
    """The plans of the last `PLANS_KEPT` distinct cells, by what their rewrite read."""

    def __init__(self, size: int = PLANS_KEPT) -> None:
        self.size = size
        self._plans: OrderedDict[tuple[Any, ...], LoopPlan] = OrderedDict()

    def plan(
        self,
        transformed: str,
        filename: str,
        raw: str,
        kinds: Mapping[str, str],
        ns: Mapping[str, Any],
        own_keys: bool = True,
    ) -> LoopPlan:
        """The cell's plan (see the module docstring); raises `UsageError` for a refusal."""
        origins = tuple((name, describe(ns[name])) for name in sorted(kinds) if name in ns)
        key = (transformed, raw, tuple(sorted(kinds.items())), own_keys, origins)
        made = self._plans.get(key)
        if made is not None:
            self._plans.move_to_end(key)
            if made.filename == filename:
                return made
            return dataclasses.replace(made, filename=filename, _code=None, _step_codes=None)
        plan = _rewrite(transformed, filename, raw, kinds, ns, own_keys)
        self._plans[key] = plan
        while len(self._plans) > self.size:
            self._plans.popitem(last=False)
        return plan


def _rewrite(
    transformed: str,
    filename: str,
    raw: str,
    kinds: Mapping[str, str],
    ns: Mapping[str, Any],
    own_keys: bool,
) -> LoopPlan:
    try:
        return rewrite_loop(
            transformed,
            filename=filename,
            line_offset=1,
            display_source=raw,
            kinds=kinds,
            own_keys=own_keys,
            origins=NamespaceOrigins(ns),
        )
    except UnsupportedLoopError as exc:
        message = f"%%parallel_for cannot run this loop in parallel:\n{exc.render()}"
        raise UsageError(message) from None
    except SyntaxError as exc:
        caret = " " * max(0, (exc.offset or 1) - 1) + "^"
        raise UsageError(
            f"line {exc.lineno}: {exc.msg}\n    {(exc.text or '').rstrip()}\n    {caret}"
        ) from None
