"""Whole batches in the in-order commit: appends as one column, committed in item order."""

from __future__ import annotations

import pickle

import cloudpickle

from dask_magic.engine.columns import Columns
from dask_magic.engine.commit import OrderedCommit
from dask_magic.engine.loaded_batch import AppendColumn, LoadedBatch, compact_ops
from dask_magic.engine.results import ItemOutcome


def _append(root: str, value: object) -> tuple:
    return ("call", root, (), "append", (value,), None)


def _batch(indices, printed=(), inline=()) -> LoadedBatch:
    """A worker's batch of items that each did ``out.append(index)``."""
    columns = Columns("w1", loop=True)
    for index in indices:
        pos = columns.add(index, 0.001, [_append("out", index)], None)
        columns.names.append(None if index in inline else ("x",))
        if index in inline:
            columns.inline[pos] = {"x": index}
        if index in printed:
            columns.extras[pos] = {"stdout": f"item {index}\n"}
    batch = cloudpickle.loads(cloudpickle.dumps(columns))
    assert isinstance(batch, LoadedBatch)
    return batch


def _commit(ns: dict, n: int) -> OrderedCommit:
    failures: list = []
    return OrderedCommit(None, ns, range(n), lambda i, e: failures.append((i, e)), keep_ops=False)


def test_batches_ending_out_of_order_are_committed_in_item_order():
    ns: dict = {"out": []}
    commit = _commit(ns, 9)
    last, first, middle = _batch(range(6, 9)), _batch(range(3)), _batch(range(3, 6))
    assert isinstance(first.ops, AppendColumn)  # each item one plain append: one column
    commit.offer_batch(last)
    assert ns["out"] == [] and list(commit.waiting) == [6]
    commit.offer_batch(first)
    assert ns["out"] == [0, 1, 2]
    commit.offer_batch(middle)
    assert ns["out"] == list(range(9)) and not commit.waiting and not commit.ended


def test_a_list_subclass_sees_every_append_in_order():
    calls: list = []

    class Loud(list):
        def append(self, value: object) -> None:
            calls.append(value)
            super().append(value)

    ns: dict = {"out": Loud()}
    commit = _commit(ns, 6)
    commit.offer_batch(_batch(range(3, 6)))
    commit.offer_batch(_batch(range(3)))
    assert calls == list(range(6)) and ns["out"] == list(range(6))


def test_an_item_that_ends_again_replaces_its_waiting_batchs_outcome():
    ns: dict = {"out": []}
    commit = _commit(ns, 6)
    commit.offer_batch(_batch(range(3, 6)))
    commit.offer([ItemOutcome(4, "done", ops=(_append("out", 40),))])  # retried meanwhile
    assert not commit.waiting  # the batch became one entry per item
    commit.offer_batch(_batch(range(3)))
    assert ns["out"] == [0, 1, 2, 3, 40, 5]


def test_a_done_silent_item_with_its_values_inline_keeps_its_batch_whole():
    ns: dict = {"out": []}
    commit = _commit(ns, 4)
    batch = _batch(range(4), inline={3})
    assert list(batch.unusual) == [3]
    commit.offer_batch(batch)
    assert ns["out"] == [0, 1, 2, 3] and batch.unusual[3].ops == ()  # dropped once committed


def test_an_item_that_printed_prints_between_the_appends_around_it(capsys):
    ns: dict = {"out": []}

    class Probe(list):  # what the list holds each time the item's output is written
        def append(self, value: object) -> None:
            print(f"append {value}")
            super().append(value)

    ns["out"] = Probe()
    commit = _commit(ns, 3)
    commit.offer_batch(_batch(range(3), printed={1}))
    assert ns["out"] == [0, 1, 2]
    assert capsys.readouterr().out == "append 0\nappend 1\nitem 1\nappend 2\n"


def test_operations_compact_to_a_column_only_when_each_item_made_one_plain_append():
    ops = [(_append("out", i),) for i in range(3)]
    column = compact_ops(ops)
    assert isinstance(column, AppendColumn) and column.values == [0, 1, 2]
    assert list(column) == ops and column[1] == ops[1] and column[1:] == ops[1:]
    assert pickle.loads(pickle.dumps(column)).values == [0, 1, 2]
    keyword = ("call", "out", (), "append", (2,), {"k": 1})
    not_plain = [
        [*ops[:2], ()],  # an item with no operation
        [*ops[:2], (_append("out", 2), _append("out", 3))],  # one with two
        [*ops[:2], (_append("other", 2),)],  # another list
        [*ops[:2], (("call", "out", (), "extend", ([2],), None),)],  # another method
        [*ops[:2], (keyword,)],  # keywords
        [*ops[:2], (("call", "out", (("item", 0),), "append", (2,), None),)],  # a path
        [*ops[:2], (("set", "out", (("item", 0),), 2),)],  # another kind
        [],
    ]
    for mixed in not_plain:
        assert compact_ops(mixed) is mixed, mixed
