"""Journal keys: what changes an item's key and what does not."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from dask_magic.engine import journal_keys as keys
from dask_magic.engine import scatter
from dask_magic.rewrite import rewrite_loop


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


def _env_key(source: str, ns: dict) -> str:
    return keys.env_key(rewrite_loop(source), ns)


def _local_module(tmp_path, monkeypatch, name: str):
    """A module ``name`` in the working directory (``tmp_path``), imported: its file, itself."""
    monkeypatch.chdir(tmp_path)
    module = tmp_path / f"{name}.py"
    module.write_text("def twice(x):\n    return 2 * x\n")
    spec = importlib.util.spec_from_file_location(name, module)
    imported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(imported)
    monkeypatch.setitem(sys.modules, name, imported)
    return module, imported


def test_a_local_module_counts_by_its_source(tmp_path, monkeypatch):
    module, helpers = _local_module(tmp_path, monkeypatch, "jkhelpers")
    loop = "out = []\nfor x in items:\n    out.append(twice(x))\n"
    ns = {"items": [1, 2], "twice": helpers.twice}
    first = _env_key(loop, ns)
    assert _env_key(loop, ns) == first
    module.write_text("def twice(x):\n    return 3 * x\n")
    assert _env_key(loop, ns) != first
    ns_module = {"items": [1, 2], "jkhelpers": helpers}
    through_module = "out = []\nfor x in items:\n    out.append(jkhelpers.twice(x))\n"
    before = _env_key(through_module, ns_module)
    module.write_text("def twice(x):\n    return 4 * x\n")
    assert _env_key(through_module, ns_module) != before


def test_a_big_value_counts_by_its_content_fingerprint():
    big = list(range(300_000))  # past the scatter threshold: fingerprinted, not tokenised
    assert scatter.should_scatter(big)
    token = keys.value_token(big, {})
    assert token.startswith("f:") and keys.value_token(list(big), {}) == token
    big[150_000] = -1
    assert keys.value_token(big, {}) != token


def _changed(before: str, after: str, loop: str = "for x in xs:\n    y = g(x) + K().m(x)\n") -> str:
    """What ``--why`` says when the notebook ``before`` becomes ``after``."""
    from dask_magic.engine.journal_why import _what_changed

    plan = rewrite_loop(loop)
    return _what_changed(keys.env_parts(plan, _ns(before)), keys.env_parts(plan, _ns(after)))


NOTEBOOK = (
    "xs = [1, 2]\nscale = 2\nclass K:\n    step = 1\n    def m(self, x):\n        return x\n"
    "def helper(x):\n    return x * scale\ndef g(x):\n    return helper(x) + 1\n"
)


def test_the_env_parts_name_what_changed():
    assert _changed(NOTEBOOK, NOTEBOOK + "# a comment\n").startswith("input changed")  # nothing
    # the part edited is named, not the function that calls it
    edit = NOTEBOOK.replace("x * scale", "x * scale * 3")
    assert _changed(NOTEBOOK, edit) == "code changed (notebook function helper)"
    # a value a function reads is a value, not a code change of the function
    edit = NOTEBOOK.replace("scale = 2", "scale = 3")
    assert _changed(NOTEBOOK, edit) == "input changed (a value it reads from the notebook: scale)"
    edit = NOTEBOOK.replace("return x\n", "return -x\n")
    assert _changed(NOTEBOOK, edit) == "code changed (notebook function K.m)"
    edit = NOTEBOOK.replace("step = 1", "step = 2")
    assert _changed(NOTEBOOK, edit).startswith("code changed (notebook class K")
    many = NOTEBOOK.replace("xs = [1, 2]", "xs = [1]").replace("scale = 2", "scale = 3")
    many = many.replace("+ 1", "+ 0")
    assert _changed(NOTEBOOK, many) == "code changed (notebook function g)"  # code first


def test_a_local_module_is_a_part_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "jparts.py").write_text("def m(x):\n    return x\n")
    plan = rewrite_loop("for x in xs:\n    y = jparts.m(x)\n")
    try:
        import jparts

        ns = {"jparts": jparts, "xs": [1]}
        before = keys.env_parts(plan, ns)
        assert ("module", "jparts.py") in {(kind, name) for kind, name, _ in before}
        (tmp_path / "jparts.py").write_text("def m(x):\n    return -x\n")
        from dask_magic.engine.journal_why import _what_changed

        assert _what_changed(before, keys.env_parts(plan, ns)) == "code changed (module jparts.py)"
    finally:
        sys.modules.pop("jparts", None)


def test_a_pass_reads_a_local_modules_source_once_and_the_next_pass_again(tmp_path, monkeypatch):
    from dask_magic.engine import scatter

    module, helpers = _local_module(tmp_path, monkeypatch, "jkonce")
    env = {"twice": helpers.twice}
    with scatter.one_fingerprint_per_value():
        first = keys.module_digests(env)
        module.write_text("def twice(x):\n    return 3 * x\n")  # not while a pass runs
        assert keys.module_digests(env) == first
    with scatter.one_fingerprint_per_value():  # the next pass (the next cell) reads it again
        assert keys.module_digests(env) != first
