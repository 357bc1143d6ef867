"""The rewriter and the worker speak one contract (`dask_magic.contract`).

The generated body is compiled from the rewriter's plan and run by the worker's own batch
runner, in-process: its parameters, its helper names and every operation the worker records
must be the ones `contract` spells, for every kind of operation a loop can produce.
"""

from __future__ import annotations

import ast
import gc

import cloudpickle

from dask_magic import contract as C
from dask_magic.engine import execute, replay, worker
from dask_magic.rewrite import rewrite_loop

#: One loop that makes every kind of operation: a call, a store, an augmented store, an
#: ordered step (best-so-far, run in the kernel) and output printed before that step.
CELL = (
    "for x in items:\n"
    "    out.append(x * 2)\n"
    "    seen[x] = x\n"
    "    total += x\n"
    "    print('item', x)\n"
    "    best = max(best, x)\n"
)
ENV = {"out": [], "seen": {}, "total": 0, "best": 0}


def _plan():
    return rewrite_loop(CELL, filename="<cell>", line_offset=1, kinds={n: "data" for n in ENV})


def test_the_generated_function_is_named_and_called_as_the_contract_says():
    code = _plan().body_code()
    assert code.co_varnames[:2] == (C.ITEM, C.RECORDER)
    assert code.co_name == C.BODY_DISPLAY_NAME
    names = {node.id for node in ast.walk(_plan().body) if isinstance(node, ast.Name)}
    assert {C.ITEM, C.RECORDER} <= names  # the body unpacks the item and reports to the recorder
    assert not {n for n in names if n.startswith("@") and not n.startswith("@dm_")}


def test_every_operation_the_worker_records_is_a_contract_operation():
    plan = _plan()
    bundle = {"kind": "loop", "code": plan.body_code(), "env": dict(ENV)}
    bundle["needs"] = tuple(step.needs for step in plan.steps)
    job = execute.make_job(bundle)
    pairs = [(0, 3), (1, 5)]
    outcomes = worker.run_batch(job.token, job.blob, {}, pairs, 1, None, "w1", 0, False)
    assert isinstance(outcomes, list)
    kinds = {op[0] for outcome in outcomes for op in outcome.ops}
    assert kinds <= {C.OP_CALL, C.OP_SET, C.OP_AUG, C.OP_RUN, C.OP_OUT}
    assert {C.OP_CALL, C.OP_SET, C.OP_AUG, C.OP_RUN, C.OP_OUT} <= kinds
    calls = [op for op in outcomes[0].ops if op[0] == C.OP_CALL]
    assert calls[0][1:4] == ("out", (), "append")  # (kind, root, path, method, ...)
    assert [op[1] for op in outcomes[1].ops if op[0] == C.OP_RUN] == [0]  # ordered step 0


def test_a_call_without_keywords_records_no_dict_and_keywords_still_travel():
    cell = "for x in items:\n    out.append(x)\n    tags.update(last=x)\n"
    kinds = {"out": "data", "tags": "data"}
    plan = rewrite_loop(cell, filename="<cell>", line_offset=1, kinds=kinds)
    assert "'append', (x,))" in ast.unparse(plan.body)  # no dict built per item
    job = execute.make_job({"kind": "loop", "code": plan.body_code(), "env": {}})
    blob = worker.run_batch(job.token, job.blob, {}, [(0, 3), (1, 5)], 1, None, "w1", 0)
    outcomes = cloudpickle.loads(blob)
    appends = [outcome.ops[0] for outcome in outcomes]
    assert [op[4:] for op in appends] == [((3,), None), ((5,), None)]
    gc.collect()
    gc.collect()  # a tuple of plain data is untracked once what it holds is
    assert not any(gc.is_tracked(op) for op in appends)  # a kept run costs the collector less
    assert [outcome.ops[1][5] for outcome in outcomes] == [{"last": 3}, {"last": 5}]
    ns: dict = {"out": [], "tags": {}}
    for outcome in outcomes:
        for op in outcome.ops:
            replay.apply_op(ns, op)
    assert ns == {"out": [3, 5], "tags": {"last": 5}}
