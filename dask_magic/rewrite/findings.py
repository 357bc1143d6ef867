"""The catalog of loop shapes ``%%parallel_for`` refuses or warns about, one message and one
fix each.

Modelled on pyflakes' ``messages.py``: each kind is data (a code, a message template and a
hint), so the README's table, the tests and the analysis all use the same wording. A kind
with ``warning=True`` does not stop the loop: the magic prints it and runs the loop.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from dask_magic.errors import Finding


@dataclass(frozen=True)
class Kind:
    code: str
    message: str
    hint: str
    warning: bool = False  # printed before the run instead of refusing the loop

    def at(self, node: ast.AST, line_offset: int = 0, **fields: object) -> Finding:
        """A `Finding` of this kind located at ``node`` (lines shifted to the user's view)."""
        lineno = getattr(node, "lineno", 1)
        end = getattr(node, "end_lineno", None)
        return Finding(
            code=self.code,
            message=self.message.format(**fields),
            hint=self.hint.format(**fields),
            lineno=lineno + line_offset,
            col=getattr(node, "col_offset", 0),
            end_lineno=None if end is None else end + line_offset,
            end_col=getattr(node, "end_col_offset", None),
        )


NO_LOOP = Kind(
    "DM001",
    "this cell has no top-level `for` loop to run in parallel",
    "put the `for` loop at the top level of the cell (not inside `if`, `with` or a function)",
)
SEVERAL_LOOPS = Kind(
    "DM002",
    "this cell has {count} top-level `for` loops (lines {lines}); %%parallel_for runs exactly one",
    "split the cell so that each %%parallel_for cell holds one top-level `for` loop",
)
ASYNC_FOR = Kind(
    "DM003",
    "`async for` cannot be run in parallel",
    "use a plain `for` loop over a list of items",
)
BREAK = Kind(
    "DM004",
    "`break` would stop the loop early, but every item runs at the same time",
    "choose the items before the loop (e.g. `items = items[:n]` or `itertools.takewhile`) "
    "and drop the `break`; `continue` is fine",
)
RETURN = Kind(
    "DM005",
    "`return` in the loop body has no function to return from",
    "use `continue` to skip the rest of an item",
)
YIELD_AWAIT = Kind(
    "DM006",
    "`{what}` in the loop body cannot run on a worker",
    "move the work into a regular function and call it from the loop body",
)
GLOBAL = Kind(
    "DM007",
    "`{what}` changes a notebook variable from a worker; the change would be lost",
    "collect per-item values (e.g. `results.append(value)`) and assign the notebook variable "
    "after the loop",
)
RECURRENCE = Kind(
    "DM009",
    "nothing in this loop can run in parallel: every call in it needs a value an earlier item "
    "computed ({chain})",
    "compute each item's part on its own and combine the parts after the loop, e.g. "
    "`parts.append(load(f))` in the loop and `{name} = combine(parts)` after it; a loop that "
    "is a true recurrence runs fastest as a plain loop, without %%parallel_for",
)
DEL_OUTER = Kind(
    "DM010",
    "`del {name}` deletes a notebook variable from a worker",
    "delete `{name}` after the loop",
)
IPYTHON_SYNTAX = Kind(
    "DM012",
    "IPython magics, `!` shell commands and `get_ipython()` cannot run on a worker",
    "run them before or after the loop; for a shell command use `subprocess.run([...])` in "
    "the body",
)
GLOBAL_RANDOM = Kind(
    "DM017",
    "`{text}(...)` draws from {module}'s process-wide random state: every worker process has "
    "its own, so the numbers differ from the serial loop's and from run to run",
    "draw from a generator seeded per item, e.g. `rng = np.random.default_rng([seed, i])`, "
    "or pass `--seed N`",
    warning=True,
)
