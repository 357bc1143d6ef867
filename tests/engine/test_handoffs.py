"""The GIL switch interval while dask-magic works: lowered, and always set back.

The local cluster's part (lowered while it lives, Python's own once it is closed) is in
``test_cluster.py``, with the cluster it starts and closes.
"""

from __future__ import annotations

import sys
import threading

import dask.config
import pytest

from dask_magic.engine import handoffs
from dask_magic.engine.handoffs import SWITCH_INTERVAL, quick_handoffs


@pytest.fixture(autouse=True)
def _python_interval(monkeypatch: pytest.MonkeyPatch):
    """Each test starts from Python's default with no holder (a local cluster another test
    module left running holds one), and leaves the process as it found it."""
    before = sys.getswitchinterval()
    monkeypatch.setattr(handoffs, "_HOLDS", handoffs._Holds())
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


def test_a_pass_runs_with_the_lowered_interval_and_sets_it_back() -> None:
    with quick_handoffs():
        assert sys.getswitchinterval() == SWITCH_INTERVAL
    assert sys.getswitchinterval() == 0.005


def test_the_interval_is_set_back_when_the_pass_raises() -> None:
    with pytest.raises(KeyboardInterrupt), quick_handoffs():
        raise KeyboardInterrupt
    assert sys.getswitchinterval() == 0.005


def test_nested_holders_keep_it_low_until_the_last_one_lets_go() -> None:
    handoffs.lower_while_local()
    try:
        with quick_handoffs():  # a pass on the local cluster
            assert sys.getswitchinterval() == SWITCH_INTERVAL
        assert sys.getswitchinterval() == SWITCH_INTERVAL  # the cluster still lives
        handoffs.lower_while_local()  # a second start counts once
    finally:
        handoffs.restore_after_local()
    assert sys.getswitchinterval() == 0.005
    handoffs.restore_after_local()  # closing twice gives back nothing more
    with quick_handoffs():
        assert sys.getswitchinterval() == SWITCH_INTERVAL


def test_passes_on_two_threads_share_it() -> None:
    inside, release = threading.Event(), threading.Event()

    def other_pass() -> None:
        with quick_handoffs():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_pass)
    thread.start()
    inside.wait(10)
    with quick_handoffs():
        pass
    assert sys.getswitchinterval() == SWITCH_INTERVAL  # the other pass still runs
    release.set()
    thread.join(10)
    assert sys.getswitchinterval() == 0.005


@pytest.mark.parametrize("setting", [0, False, "0"])
def test_config_zero_leaves_pythons_interval(setting: object) -> None:
    with dask.config.set({"dask-magic.switch-interval": setting}), quick_handoffs():
        assert sys.getswitchinterval() == 0.005


def test_a_users_lower_interval_is_left_as_it_is() -> None:
    sys.setswitchinterval(0.0001)
    with quick_handoffs():
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    assert sys.getswitchinterval() == pytest.approx(0.0001)


def test_a_config_typo_falls_back_to_the_default() -> None:
    with dask.config.set({"dask-magic.switch-interval": "fast"}):
        assert handoffs.switch_interval() == SWITCH_INTERVAL
    with dask.config.set({"dask-magic.switch-interval": 0.002}), quick_handoffs():
        assert sys.getswitchinterval() == pytest.approx(0.002)
