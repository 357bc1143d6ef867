"""The line a change report quotes: where the body may change a name's object in place."""

from __future__ import annotations

import ast

import pytest

from dask_magic.rewrite.sites import change_line

SITES = [
    # (body, name, the line that may change it, or None)
    pytest.param("x = 1\nmodel.fit(x)\n", "model", 2, id="method call"),
    pytest.param("item.data.append(1)\n", "item", 1, id="method of an attribute"),
    pytest.param("y = g(1)\nnormalise(big)\n", "big", 2, id="argument"),
    pytest.param("f(key=cfg)\n", "cfg", 1, id="keyword argument"),
    pytest.param("a = 1\nd['seen'] = True\n", "d", 2, id="item assignment"),
    pytest.param("obj.n += 1\n", "obj", 1, id="augmented attribute"),
    pytest.param("del d['k']\n", "d", 1, id="item deletion"),
    pytest.param("total = big.sum()\nbig.fill(0)\n", "big", 2, id="a call for its effect first"),
    pytest.param("total = big.sum()\n", "big", 1, id="else a call whose value is used"),
    pytest.param("d = {}\nprint(len(e))\n", "d", None, id="rebinding is no change"),
    pytest.param("y = model\n", "model", None, id="a plain read"),
]


@pytest.mark.parametrize(("body", "name", "line"), SITES)
def test_change_line(body: str, name: str, line: int | None) -> None:
    assert change_line(ast.parse(body), name) == line
