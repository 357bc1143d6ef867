"""IPython's magic decorators, typed as what they are when given a name.

``IPython.core.magic.line_magic`` and ``cell_magic`` are annotated as returning
``_F | Callable[[_F], _F]`` (one signature for both the bare and the named use, no overloads),
so a type checker cannot call what ``cell_magic("parallel_for")`` returns. Named, they always
return the decorator; these are the same objects with that type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from IPython.core import magic

_Method = TypeVar("_Method", bound=Callable[..., Any])

line_magic = cast("Callable[[str], Callable[[_Method], _Method]]", magic.line_magic)
cell_magic = cast("Callable[[str], Callable[[_Method], _Method]]", magic.cell_magic)
