"""The contract between the rewriter, the worker and the kernel's ordered commit.

Stdlib only and import-free, so `dask_magic.rewrite` (pure stdlib), the worker side
(`engine.worker`, imported inside Dask workers) and the kernel side (`engine.commit`) can all
import it. Everything that generated code and the runtime must spell the same way lives here.
"""

from __future__ import annotations

# -- names in generated code ------------------------------------------------------------------
# Every helper name starts with ``@``, which no Python source can contain, so nothing the
# user wrote can clash with it (pytest's ``@py_assert`` trick).

#: The per-item function's first parameter: the loop value, unpacked into the target.
ITEM = "@dm_item"
#: Its second parameter: the `Recorder` the body reports to.
RECORDER = "@dm_rec"
#: ``locals`` under a name the user cannot shadow.
LOCALS = "@dm_locals"
#: The name of the generated function (shown as `BODY_DISPLAY_NAME` in tracebacks).
FUNCTION_NAME = "dask_magic_loop"
#: How the body function appears in tracebacks (``line 4, in <loop body>``).
BODY_DISPLAY_NAME = "<loop body>"
#: In an ordered step run in the kernel: the values computed ahead on the worker.
HOISTED_PREFIX = "@dm_h"
#: In an ordered step: ``continue`` of the parallel loop ends the item's ordered part.
CONTINUE = "@dm_continue"

# -- what the recorder records (the first field of each operation tuple) ----------------------

#: ``("call", root, path, method, args, kwargs)``: ``results.append(x)`` (``kwargs`` is None
#: for a call without keywords; journals written before hold ``{}``)
OP_CALL = "call"
#: ``("set", root, path, value)``: ``acc[k] = v``, ``obj.attr = v``
OP_SET = "set"
#: ``("aug", root, path, op_name, value)``: ``total += x``, ``acc[k] += v``
OP_AUG = "aug"
#: ``("run", step, captured, hoisted)``: run ordered step ``step`` in the kernel
OP_RUN = "run"
#: ``("out", stdout, stderr)``: output the item printed before the next operation
OP_OUT = "out"

# -- what the magic tells the rewriter about notebook names (by their runtime type) -----------

#: A module: ``os.remove(p)``, ``np.append(a, v)`` are plain function calls.
KIND_MODULE = "module"
#: Plotting state: ``plt``, ``sns``, matplotlib Axes and Figures (and arrays of Axes).
KIND_PLOTTING = "plotting"
#: Something that must not travel: open files, csv writers, connections, tqdm bars, locks,
#: loggers. Calls through it run in the notebook, in item order.
KIND_SINK = "sink"
#: IPython's ``display``: output into the notebook, in item order.
KIND_DISPLAY = "display"
#: A function or class defined in (or imported into) the notebook.
KIND_CALLABLE = "callable"
#: An immutable value (numbers, strings, tuples of those, ...).
KIND_VALUE = "value"
#: Plain data: lists, dicts, sets, arrays, DataFrames. Its methods are bookkeeping.
KIND_DATA = "data"
#: Any other object (a model, a client): its method calls run on the workers and may be
#: real work (changes the code cannot show are fingerprinted).
KIND_OBJECT = "object"
#: Kinds of notebook objects the body may add to, store into and read keys of.
MUTABLE_KINDS = frozenset({KIND_DATA, KIND_OBJECT})

#: Kinds whose every use belongs to the ordered part.
KERNEL_KINDS = frozenset({KIND_PLOTTING, KIND_SINK, KIND_DISPLAY})
