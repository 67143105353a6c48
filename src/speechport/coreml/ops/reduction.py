"""Reductions over axes (all axes when none are given), and arg-max / arg-min."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from speechport.coreml.ops.base import OpArgs, axis_of, kernel

_REDUCE: dict[str, Callable[..., np.ndarray]] = {
    "reduce_sum": np.sum,
    "reduce_mean": np.mean,
    "reduce_max": np.max,
    "reduce_min": np.min,
    "reduce_prod": np.prod,
    "reduce_sum_square": lambda x, **kw: np.sum(np.square(x), **kw),
    "reduce_l1_norm": lambda x, **kw: np.sum(np.abs(x), **kw),
    "reduce_l2_norm": lambda x, **kw: np.sqrt(np.sum(np.square(x), **kw)),
    "reduce_log_sum": lambda x, **kw: np.log(np.sum(x, **kw)),
    "reduce_log_sum_exp": lambda x, **kw: _log_sum_exp(x, **kw),
}


def _log_sum_exp(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return np.asarray(out if keepdims else np.squeeze(out, axis=axis))


@kernel(*_REDUCE)
def reduce(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axes = args.integers("axes", None)
    axis = tuple(axis_of(a, x.ndim) for a in axes) if axes else tuple(range(x.ndim))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _REDUCE[args.type](x, axis=axis, keepdims=args.flag("keep_dims", False))


@kernel("reduce_argmax", "reduce_argmin")
def reduce_arg(args: OpArgs) -> np.ndarray:
    """The first index of the extreme value (as numpy and torch)."""
    x = args.tensor("x")
    axis = axis_of(args.integer("axis", -1), x.ndim)
    pick = np.argmax if args.type == "reduce_argmax" else np.argmin
    out = pick(x, axis=axis)
    if args.flag("keep_dims", False):
        out = np.expand_dims(out, axis)
    return np.asarray(out).astype(np.int32)
