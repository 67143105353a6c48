"""Shape and data movement: reshape, transpose, slicing, gather, concat/split/stack, pad,
tile, fill, range, topk/argsort, cumsum, one_hot, band_part, sliding windows."""

from __future__ import annotations

from typing import Any

import numpy as np

from speechport.coreml.ops.base import OpArgs, axis_of, kernel
from speechport.errors import BackendError


@kernel("reshape")
def reshape(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    shape = list(args.integers("shape"))
    for i, d in enumerate(shape):
        if d == 0:  # copies the input's dimension
            shape[i] = x.shape[i]
    return x.reshape(shape)


@kernel("transpose")
def transpose(args: OpArgs) -> np.ndarray:
    return np.transpose(args.tensor("x"), args.integers("perm"))


@kernel("expand_dims")
def expand_dims(args: OpArgs) -> np.ndarray:
    return np.expand_dims(args.tensor("x"), args.integers("axes"))


@kernel("squeeze")
def squeeze(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axes = args.integers("axes", None)
    return np.squeeze(x, axis=axes) if axes else np.squeeze(x)


@kernel("flatten2d")
def flatten2d(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axis = args.integer("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@kernel("concat")
def concat(args: OpArgs) -> np.ndarray:
    values = [np.asarray(v) for v in args.many("values")]
    if all(v.ndim == 0 for v in values):  # scalars (e.g. dimensions read with `shape`)
        values = [v.reshape(1) for v in values]
    axis = axis_of(args.integer("axis"), values[0].ndim)
    if args.flag("interleave", False):
        stacked = np.stack(values, axis=axis + 1)
        shape = list(values[0].shape)
        shape[axis] *= len(values)
        return stacked.reshape(shape)
    return np.concatenate(values, axis=axis)


@kernel("stack")
def stack(args: OpArgs) -> np.ndarray:
    return np.stack([np.asarray(v) for v in args.many("values")], axis=args.integer("axis"))


@kernel("split")
def split(args: OpArgs) -> tuple[np.ndarray, ...]:
    x = args.tensor("x")
    axis = axis_of(args.integer("axis"), x.ndim)
    sizes = args.integers("split_sizes", None)
    if sizes:
        return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))
    n = args.integer("num_splits", len(args.op.outputs))
    size = -(-x.shape[axis] // n)  # the last piece is smaller when the axis does not divide
    return tuple(np.split(x, list(range(size, x.shape[axis], size)), axis=axis))


def _slices(args: OpArgs, x: np.ndarray) -> tuple[tuple[Any, ...], list[int]]:
    """``slice_by_index``'s begin/end/stride/masks as numpy indices, and the axes to squeeze."""
    rank = x.ndim
    begin = args.integers("begin")
    end = args.integers("end")
    stride = args.integers("stride", None) or (1,) * rank
    begin_mask = args.flags("begin_mask", None) or (False,) * rank
    end_mask = args.flags("end_mask", None) or (False,) * rank
    squeeze_mask = args.flags("squeeze_mask", None) or (False,) * rank
    index: list[Any] = []
    squeezed = []
    for i in range(rank):
        if squeeze_mask[i]:
            b = begin[i] + x.shape[i] if begin[i] < 0 else begin[i]
            index.append(slice(b, b + 1))
            squeezed.append(i)
            continue
        start = None if begin_mask[i] else begin[i]
        stop = None if end_mask[i] else end[i]
        index.append(slice(start, stop, stride[i]))
    return tuple(index), squeezed


@kernel("slice_by_index")
def slice_by_index(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    index, squeezed = _slices(args, x)
    out = x[index]
    return np.squeeze(out, axis=tuple(squeezed)) if squeezed else np.asarray(out)


@kernel("slice_update")
def slice_update(args: OpArgs) -> np.ndarray:
    x = args.tensor("x").copy()
    index, squeezed = _slices(args, x)
    update = args.tensor("update")
    if squeezed:
        update = np.expand_dims(update, tuple(squeezed))
    x[index] = update
    return x


@kernel("slice_by_size")
def slice_by_size(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    begin = args.integers("begin")
    size = args.integers("size")
    index = tuple(
        slice(b, None if s == -1 else b + s)
        for b, s in zip(
            (b % d if d else 0 for b, d in zip(begin, x.shape, strict=True)), size, strict=True
        )
    )
    return x[index]


@kernel("gather")
def gather(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    indices = args.tensor("indices").astype(np.int64)
    axis = axis_of(args.integer("axis", 0), x.ndim)
    batch_dims = args.integer("batch_dims", 0)
    if batch_dims == 0:
        return np.take(x, indices, axis=axis)
    # x[b..., pre..., N, post...], indices[b..., I...] -> out[b..., pre..., I..., post...]
    bshape = x.shape[:batch_dims]
    nb = int(np.prod(bshape))
    xm = np.moveaxis(x, axis, batch_dims).reshape(nb, x.shape[axis], -1)
    idx = indices.reshape(nb, -1) % x.shape[axis]
    got = xm[np.arange(nb)[:, None], idx]  # [nb, I, rest]
    ishape = indices.shape[batch_dims:]
    rest = x.shape[batch_dims:axis] + x.shape[axis + 1 :]
    out = got.reshape(*bshape, *ishape, *rest)
    pre = axis - batch_dims
    # move the pre dims (after the index dims) in front of them
    src = list(range(batch_dims + len(ishape), batch_dims + len(ishape) + pre))
    dst = list(range(batch_dims, batch_dims + pre))
    return np.moveaxis(out, src, dst)


@kernel("gather_along_axis")
def gather_along_axis(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axis = axis_of(args.integer("axis", 0), x.ndim)
    indices = args.tensor("indices").astype(np.int64) % x.shape[axis]
    return np.take_along_axis(x, indices, axis=axis)


@kernel("gather_nd")
def gather_nd(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    indices = args.tensor("indices").astype(np.int64)
    if args.integer("batch_dims", 0) != 0:
        raise BackendError("gather_nd with batch_dims > 0 is not supported")
    k = indices.shape[-1]
    return x[tuple(indices[..., i] for i in range(k))]


_SCATTER = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.true_divide,
    "max": np.maximum,
    "min": np.minimum,
}


@kernel("scatter_along_axis")
def scatter_along_axis(args: OpArgs) -> np.ndarray:
    """``update`` writes the updates; the other modes combine each update into its target
    (repeated targets accumulate)."""
    x = args.tensor("data").copy()
    axis = axis_of(args.integer("axis", 0), x.ndim)
    indices = args.tensor("indices").astype(np.int64) % x.shape[axis]
    updates = args.tensor("updates")
    mode = args.text("mode", "update")
    if mode == "update":
        np.put_along_axis(x, indices, updates, axis=axis)
        return x
    if mode not in _SCATTER:
        raise BackendError(f"scatter mode {mode!r} is unknown")
    where = list(np.indices(indices.shape, sparse=True))
    where[axis] = indices
    _SCATTER[mode].at(x, tuple(where), updates)
    return x


@kernel("pad")
def pad(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    pads = args.integers("pad")
    n = len(pads) // 2
    widths = [(0, 0)] * (x.ndim - n) + [(pads[2 * i], pads[2 * i + 1]) for i in range(n)]
    mode = args.text("mode", "constant")
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=args.number("constant_val", 0.0))
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    raise BackendError(f"pad mode {mode!r} is unknown")


@kernel("tile")
def tile(args: OpArgs) -> np.ndarray:
    return np.tile(args.tensor("x"), args.integers("reps"))


@kernel("fill")
def fill(args: OpArgs) -> np.ndarray:
    return np.full(args.integers("shape"), args.tensor("value", np.float32(0)))


@kernel("fill_like")
def fill_like(args: OpArgs) -> np.ndarray:
    return np.full(np.shape(args.raw("ref_tensor")), args.tensor("value", np.float32(0)))


@kernel("range_1d")
def range_1d(args: OpArgs) -> np.ndarray:
    start, end, step = (args.tensor(n).reshape(()).item() for n in ("start", "end", "step"))
    return np.arange(start, end, step)


@kernel("shape")
def shape(args: OpArgs) -> np.ndarray:
    return np.array(np.shape(args.raw("x")), dtype=np.int32)


@kernel("reverse")
def reverse(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axes = args.integers("axes", None)
    return np.flip(x, axis=axes if axes else None)


def _order(x: np.ndarray, axis: int, ascending: bool) -> np.ndarray:
    """Stable sort indices along ``axis`` (ties keep the lower index first)."""
    keys = x if ascending else -x.astype(np.float64) if x.dtype.kind == "f" else -x.astype(np.int64)
    return np.argsort(keys, axis=axis, kind="stable")


@kernel("topk")
def topk(args: OpArgs) -> tuple[np.ndarray, ...]:
    x = args.tensor("x")
    axis = axis_of(args.integer("axis", -1), x.ndim)
    k = args.integer("k", 1)
    ascending = args.flag("ascending", False)
    order = np.take(_order(x, axis, ascending), np.arange(k), axis=axis)
    values = np.take_along_axis(x, order, axis=axis)
    if len(args.op.outputs) == 1:
        return (values,)
    return values, order.astype(np.int32)


@kernel("argsort")
def argsort(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axis = axis_of(args.integer("axis", -1), x.ndim)
    return _order(x, axis, args.flag("ascending", False)).astype(np.int32)


@kernel("cumsum")
def cumsum(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axis = axis_of(args.integer("axis", 0), x.ndim)
    reverse_ = args.flag("reverse", False)
    if reverse_:
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis, dtype=x.dtype)
    if args.flag("exclusive", False):
        out = out - x
    return np.flip(out, axis) if reverse_ else out


@kernel("one_hot")
def one_hot(args: OpArgs) -> np.ndarray:
    indices = args.tensor("indices").astype(np.int64)
    depth = args.integer("one_hot_vector_size")
    axis = args.integer("axis", -1)
    on = args.tensor("on_value", np.float32(1))
    off = args.tensor("off_value", np.float32(0))
    hot = indices[..., None] == np.arange(depth)
    out = np.where(hot, on, off)
    rank = indices.ndim + 1
    return np.moveaxis(out, -1, axis_of(axis, rank))


@kernel("band_part")
def band_part(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    lower, upper = args.integer("lower", -1), args.integer("upper", -1)
    rows, cols = x.shape[-2], x.shape[-1]
    i = np.arange(rows)[:, None]
    j = np.arange(cols)[None, :]
    keep = np.ones((rows, cols), dtype=bool)
    if lower >= 0:
        keep &= i - j <= lower
    if upper >= 0:
        keep &= j - i <= upper
    return np.where(keep, x, np.zeros((), dtype=x.dtype))


@kernel("sliding_windows")
def sliding_windows(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axis = axis_of(args.integer("axis"), x.ndim)
    size = args.integer("size")
    step = args.integer("stride", 1)
    windows = np.lib.stride_tricks.sliding_window_view(x, size, axis=axis)
    windows = np.take(windows, np.arange(0, windows.shape[axis], step), axis=axis)
    return np.moveaxis(windows, -1, axis + 1)
