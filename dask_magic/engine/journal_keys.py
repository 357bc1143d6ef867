"""Journal keys: what an item's result depends on, as short stable strings.

An item's key joins four parts; a hit means the serial loop would compute the same thing:

* the **run key**: the loop's normalised code (`ast.dump` of the prelude, the iterable, the
  target, the body and the ordered part: comments and layout do not count) and ``--seed``;
* the **env key**: a token of each value the body reads from the notebook. Big values
  (those sent to the cluster once, `scatter.should_scatter`) count by the same content
  fingerprint the scatter cache uses (`scatter.fingerprint`: XXH3 over the pickle, far
  cheaper than tokenising a big dict or list). Notebook functions and classes count by their
  code, followed through the names they use into the namespace (a notebook function calling
  another one changes when the callee does); *local modules* (imported from the notebook's
  folder, `preflight.local_modules`) by the bytes of their source files: editing a helper
  there runs the items again;
* the **item key**: the item's own token, and
* the **file key**: for an item that names an existing file (a ``str`` or ``Path``, alone or
  in a tuple), its size and modification time.

Beside the env key, `env_parts` lists the same things flat, one token each (what ``--why``
compares to name the module, notebook function or value that changed).

The namespace is any mapping; nothing here knows about IPython.
"""

from __future__ import annotations

import ast
import hashlib
import os
import types
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

from . import preflight, scatter

#: names whose value does not reach the parallel part (accumulators, the ordered part's state)
_NOT_READ_ATTRS = ("accumulators", "state_names")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _tokenize(value: Any) -> str:
    from dask.base import tokenize

    return tokenize(value)


def run_key(plan: Any, seed: int | None = None) -> str:
    """The loop's normalised code (see the module docstring)."""
    parts = [
        ast.dump(plan.prelude),
        ast.dump(plan.iterable),
        ast.dump(plan.target),
        ast.dump(plan.body),
        *(ast.dump(step.module) for step in plan.steps),
        repr(seed),
    ]
    return _digest(*parts)


def _notebook_code(value: Any) -> bool:
    """A function or class defined in the notebook (not importable from a module file)."""
    module = getattr(value, "__module__", None)
    return module in ("__main__", "builtins", None) or module.startswith("__ipython")


def _code_token(code: types.CodeType) -> list[str]:
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames)]
    for const in code.co_consts:
        parts.extend(_code_token(const) if isinstance(const, types.CodeType) else [repr(const)])
    return parts


def _names_used(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def value_token(value: Any, ns: Mapping[str, Any], seen: set[int] | None = None) -> str:
    """A token of ``value``; notebook functions and classes by their code, transitively."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return "cycle"
    if isinstance(value, types.FunctionType) and _notebook_code(value):
        seen.add(id(value))
        return _function_token(value, ns, seen)
    if isinstance(value, type) and _notebook_code(value) and value.__module__ != "builtins":
        seen.add(id(value))
        return _class_token(value, ns, seen)
    return _safe_token(value)


def _function_token(value: types.FunctionType, ns: Mapping[str, Any], seen: set[int]) -> str:
    """Its code, defaults, closure and the notebook names it reads or calls."""
    code = value.__code__
    parts = _code_token(code)
    parts.append(_safe_token((value.__defaults__, value.__kwdefaults__)))
    for cell in value.__closure__ or ():
        parts.append(value_token(_cell_value(cell), ns, seen))
    for name in sorted(_names_used(code)):
        if name in ns and name != code.co_name:  # a global it reads, or a name it calls
            parts.append(f"{name}={value_token(ns[name], ns, seen)}")
    return _digest(*parts)


def _class_token(value: type, ns: Mapping[str, Any], seen: set[int]) -> str:
    """Its name, bases, methods (by their code) and other class attributes."""
    parts = [value.__qualname__, *(value_token(b, ns, seen) for b in value.__bases__)]
    for name, member in sorted(vars(value).items()):
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        if isinstance(member, types.FunctionType):
            parts.append(f"{name}={value_token(member, ns, seen)}")
        elif not name.startswith("__"):
            parts.append(f"{name}={_safe_token(member)}")
    return _digest(*parts)


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _safe_token(value: Any) -> str:
    """A token of ``value``; a random one (never a hit) when it cannot be computed."""
    try:
        if scatter.should_scatter(value):
            return "f:" + (scatter.fingerprint(value) or os.urandom(8).hex())
        return _tokenize(value)
    except Exception:
        return os.urandom(8).hex()


def module_digests(env: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(name, file, digest)``: the source files of each local module the values in ``env``
    use (``file``: ``helpers.py``, or a package's folder ``tools/``).

    Once per pass for the same values (`env_key` and `env_parts` both ask; no notebook code
    runs between them)."""
    memo = scatter.pass_memo()
    if memo is None:
        return _module_digests(env)
    key = ("module digests", str(Path.cwd()), tuple((n, id(v)) for n, v in env.items()))
    if key not in memo:
        memo[key] = (dict(env), _module_digests(env))  # the values held: their ids stay theirs
    return list(memo[key][1])


def _module_digests(env: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    parts = []
    for module in preflight.local_modules(dict(env), Path.cwd()):
        path = Path(getattr(module, "__file__", "") or "")
        package = hasattr(module, "__path__")
        files = sorted(path.parent.rglob("*.py")) if package else [path]
        digest = hashlib.sha256()
        for file in files:
            try:
                digest.update(file.read_bytes())
            except OSError:
                digest.update(os.urandom(8))  # unreadable: never a hit
        shown = f"{path.parent.name}/" if package else path.name
        parts.append((module.__name__, shown, digest.hexdigest()[:32]))
    return parts


def _module_sources(env: Mapping[str, Any]) -> list[str]:
    return [f"module {name}={digest}" for name, _, digest in module_digests(env)]


def env_key(plan: Any, ns: Mapping[str, Any]) -> str:
    """A token of every notebook value the body reads (see the module docstring)."""
    skip: set[str] = set()
    for attr in _NOT_READ_ATTRS:
        skip.update(getattr(plan, attr, ()))
    parts = []
    read = {}
    for name in plan.free_names():
        if name in skip:
            continue
        if name in ns:
            read[name] = ns[name]
        parts.append(f"{name}={value_token(ns[name], ns) if name in ns else '<unbound>'}")
    return _digest(*parts, *_module_sources(read))


#: ``(kind, name, token)``: one thing an env key counted (see `env_parts`)
Part = tuple[str, str, str]


def env_parts(plan: Any, ns: Mapping[str, Any]) -> list[Part]:
    """What `env_key` counts, flat, one part per thing (what ``--why`` compares).

    ``("function", "g", ...)`` and ``("class", "C", ...)`` by their own code only (what they
    call and the notebook values they read are parts of their own, so the part that differs
    is the one edited), ``("value", "scale", ...)``, ``("module", "helpers.py", ...)``.
    """
    skip: set[str] = set()
    for attr in _NOT_READ_ATTRS:
        skip.update(getattr(plan, attr, ()))
    parts: dict[tuple[str, str], str] = {}
    read = {}
    seen: set[int] = set()
    for name in plan.free_names():
        if name in skip:
            continue
        if name not in ns:
            parts[("value", name)] = "<unbound>"
            continue
        read[name] = ns[name]
        _add_part(name, ns[name], ns, parts, seen)
    for _, shown, digest in module_digests(read):
        parts[("module", shown)] = digest
    return sorted((kind, name, token) for (kind, name), token in parts.items())


def _add_part(
    name: str, value: Any, ns: Mapping[str, Any], parts: dict[tuple[str, str], str], seen: set[int]
) -> None:
    is_function = isinstance(value, types.FunctionType) and _notebook_code(value)
    is_class = isinstance(value, type) and _notebook_code(value) and value.__module__ != "builtins"
    if not (is_function or is_class):
        parts[("value", name)] = _safe_token(value)
        return
    if id(value) in seen:
        return
    seen.add(id(value))
    kind = "function" if is_function else "class"
    label = value.__qualname__
    if (kind, label) in parts:  # another one of the same name (two lambdas)
        label = f"{label} ({name}, {len(parts)})"
    if is_function:
        parts[(kind, label)] = _function_part(value, ns, parts, seen)
    else:
        parts[(kind, label)] = _class_part(value, ns, parts, seen)


def _function_part(
    value: types.FunctionType, ns: Mapping[str, Any], parts: dict, seen: set[int]
) -> str:
    code = value.__code__
    own = _code_token(code)
    own.append(_safe_token((value.__defaults__, value.__kwdefaults__)))
    for cell in value.__closure__ or ():
        inner = _cell_value(cell)
        if isinstance(inner, types.FunctionType | type):
            _add_part(getattr(inner, "__qualname__", "?"), inner, ns, parts, seen)
        else:  # a value it closed over belongs to its own code
            own.append(_safe_token(inner))
    for name in sorted(_names_used(code)):
        if name in ns and name != code.co_name:
            _add_part(name, ns[name], ns, parts, seen)
    return _digest(*own)


def _class_part(value: type, ns: Mapping[str, Any], parts: dict, seen: set[int]) -> str:
    own = [value.__qualname__, *(base.__qualname__ for base in value.__bases__)]
    for base in value.__bases__:
        if _notebook_code(base) and base.__module__ != "builtins":
            _add_part(base.__qualname__, base, ns, parts, seen)
    for name, member in sorted(vars(value).items()):
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        if isinstance(member, types.FunctionType):
            _add_part(member.__qualname__, member, ns, parts, seen)
        elif not name.startswith("__"):
            own.append(f"{name}={_safe_token(member)}")
    return _digest(*own)


def file_key(item: Any) -> str:
    """Size and mtime of each existing file the item names (``""`` if none)."""
    values = item if isinstance(item, tuple) else (item,)
    parts = []
    for value in values:
        if isinstance(value, str | PurePath) and len(str(value)) < 4096:
            try:
                info = os.stat(value)
            except (OSError, ValueError):
                continue
            parts.append(f"{value}:{info.st_size}:{info.st_mtime_ns}")
    return _digest(*parts) if parts else ""


_PLAIN = (int, float, str, bytes, bool, type(None))
#: items of these types name no file and print short and exact: their repr is their token
_SCALARS = frozenset({int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    if type(value) in _PLAIN or isinstance(value, PurePath):
        return True
    return type(value) is tuple and len(value) <= 8 and all(type(v) in _PLAIN for v in value)


def item_keys(items: Sequence[Any]) -> list[str]:
    """Each item's key: a token of its value, and the `file_key` of a file it names.

    Plain values count by their exact repr (``1``, ``1.0``, ``True`` and ``'1'`` differ), which
    costs a fraction of a microsecond; a list of numbers is tokenised in one sweep.
    """
    if set(map(type, items)) <= _SCALARS:
        return list(map(repr, items))
    return [_item_key(item) for item in items]


def plain_items(items: Sequence[Any]) -> bool:
    """Whether every item is a plain value (numbers, strings, paths, short tuples of them)."""
    return set(map(type, items)) <= _SCALARS or all(map(_plain, items))


def _item_key(item: Any) -> str:
    token = _plain_token(item) if _plain(item) else "t:" + _safe_token(item)
    files = file_key(item) if isinstance(item, str | PurePath | tuple) else ""
    return f"{token}\x00{files}" if files else token


def item_token(key: str) -> str:
    """The item's own token in its key (without the file part): what ``--why`` matches."""
    return key.partition("\x00")[0]


def _plain_token(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 64 else "d:" + _digest(text)
