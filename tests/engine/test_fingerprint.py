"""Digests of objects of any size: a change in place is seen, a read is not a change."""

from __future__ import annotations

import threading

import pytest

from dask_magic.engine.fingerprint import FRAME_ROWS, FULL_BYTES, BatchWatch, digest, fingerprints
from dask_magic.engine.results import ITEM_MUTATED

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

BIG = 50 * 2**20 // 8  # float64 elements in 50 MB


class Model:
    def __init__(self) -> None:
        self.weights = np.zeros(BIG)
        self.name = "linear"

    def fit(self, x: float) -> None:
        self.weights += x


def _big_frame() -> pd.DataFrame:
    """Three float columns added one by one: three blocks that a read may consolidate."""
    frame = pd.DataFrame({"a": np.arange(50_000.0)})
    frame["b"] = frame["a"] * 2
    frame["c"] = frame["a"] * 3
    return frame


def _object_array() -> np.ndarray:
    """300,000 lists in an object array: its buffer holds only pointers."""
    array = np.empty(300_000, dtype=object)
    for i in range(array.size):
        array[i] = [i]
    return array


CHANGES = [
    pytest.param(lambda: np.zeros(BIG), lambda a: a.fill(1.0), id="big array fill"),
    pytest.param(lambda: np.random.rand(BIG), lambda a: a.sort(), id="big array sort"),
    pytest.param(
        lambda: np.zeros((2_000, 4_000))[:, ::2], lambda a: a.__iadd__(1), id="strided view"
    ),
    pytest.param(
        lambda: np.zeros(FULL_BYTES // 8),
        lambda a: a.__setitem__(7, 1.0),
        id="small array, one element",
    ),
    pytest.param(
        _object_array,
        lambda a: [r.append(2) for r in a[::1000]],
        id="object array",
    ),
    pytest.param(Model, lambda m: m.fit(0.5), id="model with 50 MB of weights"),
    pytest.param(_big_frame, lambda f: f.__setitem__("b", 0.0), id="frame column"),
    pytest.param(
        _big_frame,
        lambda f: f.insert(0, "d", 1.0),
        id="frame column inserted in place",
    ),
    pytest.param(
        lambda: pd.Series(np.arange(FRAME_ROWS * 10.0)), lambda s: s.__imul__(2), id="series"
    ),
    pytest.param(lambda: {"x": [1, 2]}, lambda d: d["x"].append(3), id="small dict"),
]


@pytest.mark.parametrize(("make", "change"), CHANGES)
def test_a_change_in_place_changes_the_digest(make, change) -> None:
    obj = make()
    before = digest(obj)
    assert before is not None and digest(obj) == before  # stable while unchanged
    change(obj)
    assert digest(obj) != before


def test_reading_a_frame_is_not_a_change() -> None:
    frame = _big_frame()
    before = digest(frame)
    frame.values.sum(), frame.describe(), frame["a"].mean(), frame.copy()._consolidate_inplace()
    frame._consolidate_inplace()  # what some reads do to the block layout
    assert digest(frame) == before


def test_equal_content_gives_equal_digests_and_a_big_array_costs_a_sample() -> None:
    big = np.random.rand(BIG)
    assert digest(big) == digest(big.copy())
    assert len(digest(big)) == 16


def test_what_cannot_be_pickled_is_left_out() -> None:
    assert digest(threading.Lock()) is None
    env = {"lock": threading.Lock(), "n": 3, "path": "a.csv", "items": [1], "pair": (1, "a")}
    assert set(fingerprints(env)) == {"items"}


def test_batch_watch_names_the_changed_objects_and_items() -> None:
    namespace = {"model": Model(), "config": {"scale": 2}, "big": np.zeros(BIG)}
    batch = [(0, {"a": 0}), (1, {"a": 1}), (2, "path.csv"), (3, [3])]
    watch = BatchWatch(namespace, ["model", "config", "big", "missing"], batch)
    namespace["model"].fit(1.0)
    batch[1][1]["seen"] = True
    batch[3][1].append(4)
    extras: dict = {3: {"stdout": "x"}}
    watch.record(extras, ran=4)
    assert extras == {
        0: {"mutated": ("model",)},
        1: {"mutated": (ITEM_MUTATED,)},
        3: {"stdout": "x", "mutated": (ITEM_MUTATED,)},
    }


def test_items_a_batch_did_not_reach_are_not_reported() -> None:
    batch = [(0, [0]), (1, [1])]
    watch = BatchWatch({}, [], batch)
    batch[1][1].append(9)  # changed, but the batch's time budget ended before item 1
    assert watch.changes(ran=1) == ((), [])
