"""Journal keys: what changes an item's key and what does not."""

from __future__ import annotations

import os
from pathlib import Path

from dask_magic.engine import journal_keys as keys


def _ns(source: str) -> dict:
    ns: dict = {"__name__": "__main__"}
    exec(source, ns)
    return ns


def test_a_notebook_function_counts_by_its_code_and_what_it_calls():
    base = "scale = 2\ndef helper(x):\n    return x * scale\ndef g(x):\n    return helper(x) + 1\n"
    token = keys.value_token(_ns(base)["g"], _ns(base))
    same = _ns(base + "# a comment\n")
    assert keys.value_token(same["g"], same) == token
    for edit in (
        base.replace("x * scale", "x * scale * 3"),  # the callee's code
        base.replace("scale = 2", "scale = 3"),  # a global the callee reads
        base.replace("+ 1", "+ 2"),  # its own code
    ):
        ns = _ns(edit)
        assert keys.value_token(ns["g"], ns) != token, edit


def test_recursive_notebook_functions_have_a_token():
    ns = _ns("def f(n):\n    return 1 if n < 2 else n * f(n - 1)\n")
    assert keys.value_token(ns["f"], ns) == keys.value_token(ns["f"], ns)


def test_file_key_follows_size_and_mtime(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("1,2\n")
    first = keys.file_key(str(path))
    assert first and keys.file_key(path) == first and keys.file_key((0, str(path))) != ""
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))
    assert keys.file_key(str(path)) != first
    assert keys.file_key("no such file") == "" and keys.file_key(3) == ""


def test_item_tokens_tell_apart_values_that_print_alike():
    tokens = keys.item_keys([1, 1.0, True, "1", b"1", (1,), Path("1"), None, "x" * 1000])
    assert len(set(tokens)) == len(tokens)
    assert max(len(t) for t in tokens) <= 64
