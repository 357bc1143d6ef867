"""Replaying recorded operations, final bindings, and batch sizing (pure functions)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from dask_magic.engine import batching, replay
from dask_magic.engine.commit import OrderedCommit
from dask_magic.engine.results import STASHED, ItemOutcome


def commit_in_order(ns, outcomes):
    """What the kernel does with ended items: the in-order commit (no ordered steps here)."""
    outcomes = list(outcomes)
    committer = OrderedCommit(None, ns, sorted(o.index for o in outcomes), lambda i, e: None)
    committer.offer(outcomes, quiet=True)
    committer.flush()


def done(index, ops=(), bound=None, deleted=()):
    return ItemOutcome(
        index=index, status="done", ops=list(ops), bound=bound or {}, deleted=frozenset(deleted)
    )


def test_replay_applies_in_item_order_whatever_the_arrival_order():
    ns = {"out": [], "total": 0.0}
    outcomes = [
        done(2, [("call", "out", (), "append", (2,), {}), ("aug", "total", (), "Add", 0.3)]),
        done(0, [("call", "out", (), "append", (0,), {}), ("aug", "total", (), "Add", 0.1)]),
        ItemOutcome(index=1, status="failed"),
    ]
    commit_in_order(ns, outcomes)
    assert ns == {"out": [0, 2], "total": 0.1 + 0.3}


def test_replay_paths_set_and_augmented_items():
    ns = {"groups": defaultdict(list), "table": {"a": {}}, "counts": {"x": 1}}
    commit_in_order(
        ns,
        [
            done(
                0,
                [
                    ("call", "groups", (("item", "k"),), "append", (5,), {}),
                    ("set", "table", (("item", "a"), ("item", "b")), 7),
                    ("aug", "counts", (("item", "x"),), "Mult", 3),
                ],
            )
        ],
    )
    assert (
        ns["groups"] == {"k": [5]} and ns["table"] == {"a": {"b": 7}} and ns["counts"] == {"x": 3}
    )


def append(root, value):
    return ("call", root, (), "append", (value,), {})


class Appended(list):
    """A list whose own ``append`` must run for every item (it may not be extended)."""

    def append(self, value):
        super().append(("seen", value))


def test_silent_items_commit_together_in_item_order():
    ns = {"out": [], "other": Appended(), "total": 0}
    failed = []
    outcomes = [
        done(i, [append("out", i), append("other", i), ("aug", "total", (), "Add", i)])
        for i in range(5)
    ]
    outcomes.insert(0, done(5, [append("out", 5), ("aug", "total", (), "Add", "five")]))
    committer = OrderedCommit(None, ns, range(6), lambda i, e: failed.append((i, e.type_name)))
    committer.offer(outcomes)  # not quiet: the items without output go through in one step
    assert ns["out"] == [0, 1, 2, 3, 4, 5]  # item 5 appended before its `+=` failed
    assert ns["other"] == [("seen", i) for i in range(5)]
    assert ns["total"] == 10 and failed == [(5, "TypeError")]


def test_an_item_that_printed_commits_between_its_neighbours(capsys):
    ns = {"out": []}
    loud = done(1, [append("out", 1)])
    loud.stdout = "one\n"
    commit = OrderedCommit(None, ns, range(3), lambda i, e: None)
    commit.offer([done(0, [append("out", 0)]), loud, done(2, [append("out", 2)])])
    assert ns["out"] == [0, 1, 2] and capsys.readouterr().out == "one\n"


def test_last_bindings_take_the_last_successful_binder_and_deletions():
    final = replay.last_bindings(
        [
            done(0, bound={"y": 1, "e": "err"}),
            done(1, bound={"y": STASHED}, deleted={"e"}),
            ItemOutcome(index=2, status="failed", bound={"y": 99}),
        ]
    )
    assert final["y"] == (1, STASHED) and final["e"] == (1, replay.UNBOUND)
    ns = {"e": "before"}
    assert replay.bind_final(ns, final) == ["y"]
    assert "e" not in ns


def forward_last_bindings(outcomes):
    """The definition: every done item in item order, each binding over the one before."""
    final = {}
    for outcome in sorted(outcomes, key=lambda o: o.index):
        if outcome.status != "done":
            continue
        for name, value in outcome.bound.items():
            final[name] = (outcome.index, value)
        for name in outcome.deleted:
            final[name] = (outcome.index, replay.UNBOUND)
    return final


def test_last_bindings_with_shared_bound_dicts_keep_the_first_binding_order():
    # the kernel shares one `bound` dict among the items of a shape: the result, and the
    # order of its names (the serial loop's order of first binding), are the definition's
    just_y, x_and_y = {"y": STASHED}, {"x": STASHED, "y": STASHED}
    outcomes = [
        done(4, bound=just_y),
        done(0, bound=just_y),
        done(1, bound=x_and_y),
        done(2, bound=just_y, deleted={"e"}),
        done(3, bound=just_y),
        ItemOutcome(index=5, status="failed", bound={"z": 1}),
        done(6, bound={"e": 7}),
        done(7, bound=x_and_y),
        done(8),
    ]
    final = replay.last_bindings(outcomes)
    assert final == forward_last_bindings(outcomes)
    assert list(final) == list(forward_last_bindings(outcomes)) == ["y", "x", "e"]
    assert final["x"] == (7, STASHED) and final["y"] == (7, STASHED) and final["e"] == (6, 7)


@pytest.mark.parametrize(
    ("n", "threads", "batch", "probe"),
    [
        (5, 2, "auto", 5),
        (8, 2, "auto", 8),
        (10_000, 2, "auto", 4),
        (100, 16, "auto", 32),
        (50, 2, 7, 50),
    ],
)
def test_probe_count(n, threads, batch, probe):
    assert batching.probe_count(n, threads, batch) == probe


def test_first_wave_with_a_fixed_batch_submits_everything():
    wave, held = batching.first_wave(list(range(10)), 2, 4)
    assert [len(b) for b in wave] == [4, 4, 2] and held == []


def test_parse_batch():
    assert batching.parse_batch("auto") == "auto" and batching.parse_batch("12") == 12
    with pytest.raises(ValueError):
        batching.parse_batch("0")
