"""A run's outcomes kept as the columns a batch came in: read, changed, failed, collected."""

from __future__ import annotations

import gc

import cloudpickle

from dask_magic.engine.columns import Columns
from dask_magic.engine.loaded_batch import LoadedBatch
from dask_magic.engine.outcome_store import Outcomes
from dask_magic.engine.results import STASHED, ErrorInfo, ItemOutcome
from dask_magic.engine.run import Run


def _batch(indices, names=("x",), failed=(), worker="w1") -> LoadedBatch:
    """A batch as a worker sends it: every item done and silent but the ``failed`` ones."""
    columns = Columns(worker, loop=True)
    for index in indices:
        pos = columns.add(index, 0.001, [("call", "out", (), "append", (index,), None)], None)
        columns.names.append(None if index in failed else names)
        if index in failed:
            columns.ops[pos] = ()  # type: ignore[index]
            columns.extras[pos] = {"status": "failed", "error": ErrorInfo("ValueError", "bad")}
    batch = cloudpickle.loads(cloudpickle.dumps(columns))
    assert isinstance(batch, LoadedBatch)
    return batch


def test_a_plain_item_reads_as_the_outcome_it_stands_for():
    batch = _batch([10, 11, 12], failed={11})
    assert batch.statuses() == ["done", "failed", "done"]
    assert batch.plain_indices() == [10, 12]
    assert batch[0] == ItemOutcome(
        10,
        "done",
        ops=(("call", "out", (), "append", (10,), None),),
        bound={"x": STASHED},
        duration=0.001,
        worker="w1",
    )
    assert list(batch) == [batch[0], batch[1], batch[2]]  # the bulk path makes the same
    assert batch[1] is batch.unusual[1] and batch[1].error.summary == "ValueError: bad"
    assert batch[0].bound is batch[2].bound  # one shared dict per shape of names


def test_reading_an_item_keeps_it_and_a_change_to_it_stays():
    store = Outcomes()
    assert store.add_batch(_batch(range(5))) == [0, 1, 2, 3, 4]
    assert len(store) == 5 and 3 in store and store.status(3) == "done"
    assert store.peek(2).index == 2 and not store.made()  # a peek makes nothing that stays
    store[1].stdout = "changed"
    assert store[1].stdout == "changed" and list(store.made()) == [1]
    assert sorted(store) == [0, 1, 2, 3, 4] and store.status(9) is None


def test_final_bindings_read_each_shapes_first_and_last_item_left_as_columns():
    store = Outcomes()
    batch = _batch(range(6))
    store.add_batch(batch)
    assert batch.shape_ends() == [(0, 5)]
    store[5].bound = {}  # the last item made and changed (as a failed commit does)
    assert batch.shape_ends() == [(0, 4)]
    rows = store.binding_rows()
    assert sorted(o.index for o in rows) == [0, 4, 5]
    assert store.any_stashed()


def test_an_item_retried_while_its_batch_was_out_is_stored_as_itself():
    store = Outcomes()
    store[2] = ItemOutcome(2, "failed", error=ErrorInfo("KeyError", "k"))
    batch = _batch(range(4))
    assert store.add_batch(batch) == [0, 1, 3]
    assert 2 in batch.unusual and store.status(2) == "failed"  # the caller stores it next


def test_a_run_counts_a_batch_and_a_commit_failure_within_it():
    run = Run(list(range(6)))
    run.begin(range(6))
    run.add(sent=[(_batch(range(6), failed={4}), b"")])
    assert (run.counts.done, run.counts.failed) == (5, 1)
    run.commit_failed(5, ErrorInfo("TypeError", "in the ordered part"))
    assert (run.counts.done, run.counts.failed) == (4, 2)
    assert run.outcomes[5].bound == {} and run.outcomes[5].ops == ()
    assert sorted(i for i, o in run.outcomes.made().items() if o.status == "failed") == [4, 5]
    assert run.pending_indices == [4, 5]
    assert sorted(o.index for o in run.outcomes.binding_rows()) == [0, 3]


def test_a_kept_batch_leaves_almost_nothing_for_the_cyclic_collector_to_walk():
    store = Outcomes()
    gc.collect()
    before = len(gc.get_objects())
    store.add_batch(_batch(range(10_000)))
    gc.collect()  # a tuple of plain data stops being tracked when a collection sees it so,
    gc.collect()  # nested ones over two
    grown = len(gc.get_objects()) - before
    assert grown < 1_000, grown  # an ItemOutcome per item would be over 10,000


def test_shape_ends_are_each_shapes_first_and_last_position_that_counts():
    one = _batch(range(5), failed={0, 4})  # the failed ends have no names
    assert one.shape_ends() == [(1, 3)]
    one.taken.add(3)
    assert one.shape_ends() == [(1, 2)]
    mixed = LoadedBatch(None, [0, 1, 2, 3], [0.0] * 4, None, None, [("x",), ("y",), None, ("x",)])
    assert mixed.shape_ends() == [(0, 3), (1, 1)]
    assert LoadedBatch(None, [0], [0.0], None, None, [None]).shape_ends() == []
