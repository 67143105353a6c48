"""Constants and control flow: ``const``, ``cond`` and ``while_loop`` (nested blocks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from speechport.coreml.ops.base import OpArgs, kernel
from speechport.errors import BackendError


@kernel("const")
def const(args: OpArgs) -> Any:
    return args.raw("val")


@kernel("cond")
def cond(args: OpArgs) -> tuple[Any, ...]:
    true_block, false_block = args.op.blocks
    chosen = true_block if bool(np.asarray(args.raw("pred")).reshape(())) else false_block
    return tuple(args.run_block(chosen, []))


@kernel("while_loop")
def while_loop(args: OpArgs) -> tuple[Any, ...]:
    """Block 0 computes the condition from the loop variables, block 1 the next values."""
    condition, body = args.op.blocks
    values = args.many("loop_vars")
    for _ in range(10_000_000):
        if not bool(np.asarray(args.run_block(condition, values)[0]).reshape(())):
            return tuple(values)
        values = args.run_block(body, values)
    raise BackendError("while_loop did not finish in 10 million iterations")
