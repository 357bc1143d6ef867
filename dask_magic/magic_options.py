"""The options of ``%%parallel_for`` and ``%parallel_retry``, and their reading.

Option definitions (IPython's ``magic_arguments``) are kept here as lists applied to the magic
methods in `dask_magic.magics`, so that module holds only the flow of a cell. Reading a magic's
line turns argparse's one-line errors into `UsageError`s with a "did you mean" hint, and
`run_options` checks the values and builds the engine's `RunOptions`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .engine.batching import parse_batch
from .engine.loop import RunOptions
from .engine.timeouts import parse_duration

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _with_arguments(arguments: tuple[Any, ...]) -> Callable[[_Method], _Method]:
    """A decorator that does what ``@magic_arguments()`` above ``@argument``s in this order does.

    ``magic_arguments()`` is applied last: it builds the parser from the ``argument``s and puts
    its help into the method's docstring (what ``%%parallel_for?`` shows).
    """

    def apply(magic: _Method) -> _Method:
        for decorator in reversed(arguments):
            magic = decorator(magic)
        return magic_arguments()(magic)

    return apply


#: ``%%parallel_for``'s options, in the order ``%%parallel_for?`` lists them.
_PARALLEL_FOR_ARGUMENTS = (
    argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Run on the Dask scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786) instead of a "
        "local cluster.",
    ),
    argument(
        "--client",
        metavar="NAME",
        help="Use the distributed Client (or cluster object) bound to NAME in the notebook.",
    ),
    argument(
        "--workers",
        type=int,
        metavar="N",
        help="Number of workers of the local cluster (default: sized from cores and memory).",
    ),
    argument(
        "--threads",
        type=int,
        metavar="N",
        help="Threads per worker of the local cluster (default 1: processes, not threads, "
        "for pure-Python code).",
    ),
    argument(
        "--retries",
        type=int,
        default=0,
        metavar="N",
        help="Run a failing item up to N more times before reporting it (flaky I/O).",
    ),
    argument(
        "--timeout",
        metavar="DURATION",
        help="Stop an item that runs longer than DURATION (30s, 5m, 1h, 1.5s or seconds): it "
        "ends as timeout and its worker process is restarted; --retries N tries it again.",
    ),
    argument(
        "--on-error",
        choices=["continue", "raise"],
        default="continue",
        help="continue (default): failed items are reported and the rest finish; raise: "
        "stop at the first failure and raise it.",
    ),
    argument(
        "--batch",
        default="auto",
        metavar="{auto,N}",
        help="Items per task: auto (default) groups tiny items after measuring them; "
        "N fixes the size.",
    ),
    argument(
        "--serial",
        action="store_true",
        help="Run the same rewritten body item by item in this kernel (no cluster), e.g. "
        "to use %%debug.",
    ),
    argument(
        "--show",
        action="store_true",
        help="Print the code dask-magic generates for this cell and run nothing.",
    ),
    argument("--name", metavar="NAME", help="Bind the Run object to NAME in the notebook."),
    argument(
        "--progress",
        choices=["auto", "widget", "text", "none"],
        default="auto",
        help="How to show progress: widget panel, one text line, or nothing.",
    ),
    argument(
        "--seed",
        type=int,
        metavar="N",
        help="Seed random, numpy.random and torch before each item from (N, item index): "
        "draws from their global state repeat from run to run, whatever the batching.",
    ),
    argument(
        "--fresh",
        action="store_true",
        help="Run every item, restoring nothing from the journal (results are still journaled).",
    ),
    argument(
        "--why", action="store_true", help="Say why each item that runs runs (new, changed, ...)."
    ),
)
parallel_for_options = _with_arguments(_PARALLEL_FOR_ARGUMENTS)

#: ``%parallel_retry``'s options.
_PARALLEL_RETRY_ARGUMENTS = (
    argument("run", nargs="?", help="The run to retry: its --name, or nothing for the last run."),
    argument(
        "--retries",
        type=int,
        default=None,
        metavar="N",
        help="Run a failing item up to N more times.",
    ),
    argument(
        "--serial",
        action="store_true",
        default=None,
        help="Retry in this kernel instead of on the cluster.",
    ),
    argument(
        "--here",
        type=int,
        metavar="INDEX",
        help="Run item INDEX in this kernel with errors raised, so %%debug opens at your line.",
    ),
    argument(
        "--progress",
        choices=["auto", "widget", "text", "none"],
        default="auto",
        help="How to show progress.",
    ),
)
parallel_retry_options = _with_arguments(_PARALLEL_RETRY_ARGUMENTS)


def _suggest_option(message: str, options: list[str]) -> str:
    """Add ``did you mean --retries?`` to argparse's "unrecognized arguments" message."""
    unknown = re.findall(r"(--?[\w-]+)", message.split("unrecognized arguments:")[-1])
    hints = []
    for word in unknown:
        close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
        if close:
            hints.append(f"{word}: did you mean {close[0]}?")
    return message + ("\n" + "\n".join(hints) if hints else "")


def parse(magic: Any, line: str) -> Any:
    """The arguments of ``line`` for ``magic`` (a method with ``magic_arguments``)."""
    try:
        return parse_argstring(magic, line)
    except UsageError as exc:
        options = [s for a in magic.parser._actions for s in a.option_strings]
        raise UsageError(_suggest_option(str(exc), options)) from None


def run_options(
    args: Any, user_ns: dict[str, Any], labels: dict[str, str], journal_retry: bool = False
) -> RunOptions:
    """``%%parallel_for``'s parsed ``args`` checked and turned into the engine's options."""
    client = None
    if args.client:
        if args.client not in user_ns:
            raise UsageError(
                f"--client {args.client}: no variable `{args.client}` in the notebook; "
                "pass the name of a distributed Client or cluster object"
            )
        client = user_ns[args.client]
    try:
        batch = parse_batch(args.batch)
    except ValueError as exc:
        raise UsageError(f"--batch {args.batch}: {exc}") from None
    for flag, value in (("--workers", args.workers), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: give a positive number")
    if args.retries < 0:
        raise UsageError(f"--retries {args.retries}: give 0 or more")
    timeout = _timeout_seconds(args)
    return RunOptions(
        client=client,
        scheduler=args.scheduler,
        workers=args.workers,
        threads=args.threads,
        retries=args.retries,
        on_error=args.on_error,
        batch=batch,
        serial=args.serial,
        name=args.name,
        seed=args.seed,
        labels=labels,
        fresh=args.fresh,
        why=args.why,
        timeout=timeout,
        journal_retry=journal_retry,
    )


def _timeout_seconds(args: Any) -> float | None:
    """``--timeout`` in seconds; a clear UsageError for a value that is not a duration."""
    if args.timeout is None:
        return None
    try:
        seconds = parse_duration(args.timeout)
    except ValueError as exc:
        raise UsageError(f"--timeout {args.timeout}: {exc}") from None
    if args.serial:
        raise UsageError(
            "--timeout stops an item by restarting its worker process; with --serial the item "
            "runs in this kernel, which cannot be restarted: drop one of the two options"
        )
    return seconds
