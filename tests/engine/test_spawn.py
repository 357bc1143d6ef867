"""Starting local workers after ``%reset``: ``__main__`` repaired, failures explained.

The unit tests use a real module object as ``__main__`` and real chained exceptions; the
last test runs the whole story in a real ipykernel driven over ZMQ by jupyter_client.
"""

from __future__ import annotations

import sys
import types

import psutil
import pytest
from helpers import cell_output, start_kernel

from dask_magic.engine.spawn import ensure_main_spawnable, root_cause, start_failure_advice


@pytest.fixture
def reset_main(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A ``__main__`` as IPython's ``%reset`` leaves it: only ``__name__`` and builtins."""
    main = types.ModuleType("__main__")
    for name in ("__spec__", "__loader__", "__package__", "__doc__"):
        delattr(main, name)
    main.__builtins__ = __builtins__
    main.data = [1, 2]
    monkeypatch.setitem(sys.modules, "__main__", main)
    return main


def test_reset_main_gets_back_the_attributes_spawn_reads(reset_main: types.ModuleType) -> None:
    assert not hasattr(reset_main, "__spec__")
    assert ensure_main_spawnable() == ["__spec__", "__loader__", "__package__"]
    assert reset_main.__spec__ is None and reset_main.__loader__ is None
    assert reset_main.data == [1, 2] and "__doc__" not in vars(reset_main)


def test_attributes_that_exist_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    main = types.ModuleType("__main__")
    main.__spec__ = "the user's own value"
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert ensure_main_spawnable() == []
    assert main.__spec__ == "the user's own value"


def _nanny_failure(cause: BaseException) -> RuntimeError:
    """What distributed raises: the real error chained under "Nanny failed to start"."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("Nanny failed to start.") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("cause", "says", "never"),
    [
        pytest.param(
            AttributeError("module '__main__' has no attribute '__spec__'"),
            ["`__main__`", "restart the kernel", "AttributeError"],
            "--threads",
            id="main module broken",
        ),
        pytest.param(
            RuntimeError(
                "An attempt has been made to start a new process before the current process "
                "has finished its bootstrapping phase."
            ),
            ['if __name__ == "__main__":', "--scheduler"],
            "restart the kernel",
            id="script without a main guard",
        ),
        pytest.param(
            MemoryError("no room"), ["--workers N", "DASK_MAGIC_MEMORY_LIMIT"], None, id="memory"
        ),
        pytest.param(
            OSError(98, "Address already in use"), ["port", "127.0.0.1"], "--threads", id="port"
        ),
        pytest.param(TimeoutError("slow"), ["in time", "--workers N"], "--threads", id="timeout"),
        pytest.param(
            ImportError("No module named 'dask_magic'"),
            ["logged above", "import dask_magic", "--serial"],
            "--threads",
            id="worker import",
        ),
    ],
)
def test_advice_matches_the_real_cause(
    cause: BaseException, says: list[str], never: str | None
) -> None:
    exc = _nanny_failure(cause)
    assert root_cause(exc) is cause
    advice = start_failure_advice(exc)
    assert str(cause) in advice
    for part in says:
        assert part in advice
    if never:
        assert never not in advice


# -- the whole story in a real kernel --------------------------------------------------------

pytest.importorskip("jupyter_client.manager")


def _execute(kc, code: str, timeout: float = 180) -> tuple[str, str]:
    """Run ``code``; its stdout and stderr (errors included), once the kernel is idle again."""
    printed = cell_output(kc, kc.execute(code), timeout)
    return printed.stdout, printed.stderr + printed.error


def _stop_and_reap(km, kernel_pid: int) -> list[int]:
    """Shut the kernel down; the pids of its processes still alive 30 s later (then killed)."""
    family = [psutil.Process(kernel_pid), *psutil.Process(kernel_pid).children(recursive=True)]
    km.shutdown_kernel(now=False)
    _, alive = psutil.wait_procs(family, timeout=30)
    for process in alive:  # a leak: end exactly these processes, then fail
        process.kill()
    return [p.pid for p in alive]


def test_first_parallel_for_after_reset_starts_its_cluster() -> None:
    km, kc = start_kernel()
    kernel_pid = int(_execute(kc, "import os; print(os.getpid())")[0])
    try:
        _execute(kc, "%load_ext dask_magic")
        _execute(kc, "%reset -f")
        _execute(kc, "%load_ext dask_magic")
        _, err = _execute(
            kc,
            "%%parallel_for --workers 1 --progress none\nout = []\nfor x in range(4):\n"
            "    out.append(x * x)\n",
        )
        assert "Could not start" not in err, err
        out, err = _execute(
            kc, "print(out, x, __spec__, sorted(get_ipython().run_line_magic('who_ls', '')))"
        )
        assert out.strip() == "[0, 1, 4, 9] 3 None ['out', 'x']", err
    finally:
        kc.stop_channels()
        leaked = _stop_and_reap(km, kernel_pid)
    assert leaked == [], f"processes left running after the kernel stopped: {leaked}"
