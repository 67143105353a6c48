"""Compressed weights: the ``constexpr_*`` ops, decompressed as the program declares them.

iOS 16 forms (parameters stored as op attributes): ``constexpr_affine_dequantize``,
``constexpr_cast``, ``constexpr_lut_to_dense`` (packed indices + ``shape``),
``constexpr_sparse_to_dense`` (packed bit mask + ``shape``). iOS 18 forms (parameters as
inputs): ``constexpr_blockwise_shift_scale`` (per-block int4/int8 with optional offset),
``constexpr_lut_to_dense`` (per-block / grouped tables, vector palettization),
``constexpr_sparse_to_dense`` (uint1 mask), ``constexpr_lut_to_sparse`` and
``constexpr_sparse_blockwise_shift_scale`` (sparse-then-compressed, two outputs: mask and
values). The arithmetic follows the op definitions' formulas in the storage dtypes they
name (e.g. iOS 18 shift-scale computes ``scale * (data - offset)`` in the scale's dtype).
Also the iOS 17 activation ``quantize`` / ``dequantize`` ops.
"""

from __future__ import annotations

import numpy as np

from speechport.coreml.ops.base import OpArgs, axis_of, kernel
from speechport.coreml.values import dtype_named, unpack_bits
from speechport.errors import BackendError


def _along(param: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """A scalar or a vector along ``axis``, shaped to broadcast against a rank-``rank`` tensor."""
    if param.ndim == rank:
        return param
    if param.ndim == 0:
        return param.reshape((1,) * rank)
    shape = [1] * rank
    shape[axis] = param.size
    return param.reshape(shape)


@kernel("constexpr_affine_dequantize", "dequantize")
def affine_dequantize(args: OpArgs) -> np.ndarray:
    """``scale * (data - zero_point)``, in float32, cast to the scale's dtype."""
    name = "quantized_data" if args.type == "constexpr_affine_dequantize" else "input"
    data = np.asarray(args.raw(name))
    scale = np.asarray(args.raw("scale"))
    axis = axis_of(args.integer("axis", 0), data.ndim) if args.has("axis") else 0
    out = data.astype(np.float32)
    zero_point = args.raw("zero_point", None)
    if zero_point is not None:
        out = out - _along(np.asarray(zero_point).astype(np.float32), data.ndim, axis)
    out = out * _along(scale.astype(np.float32), data.ndim, axis)
    return np.asarray(out.astype(scale.dtype))


@kernel("quantize")
def quantize(args: OpArgs) -> np.ndarray:
    x = args.tensor("input")
    axis = axis_of(args.integer("axis", 0), x.ndim) if args.has("axis") else 0
    target = dtype_named(args.text("output_dtype"))
    out = x / _along(args.tensor("scale"), x.ndim, axis)
    out = np.round(out)
    zero_point = args.raw("zero_point", None)
    if zero_point is not None:
        out = out + _along(np.asarray(zero_point).astype(np.float32), x.ndim, axis)
    info = np.iinfo(np.dtype(target.np_dtype))
    return np.asarray(np.clip(out, info.min, info.max).astype(target.np_dtype))


@kernel("constexpr_cast")
def constexpr_cast(args: OpArgs) -> np.ndarray:
    return np.asarray(args.raw("source_val")).astype(
        dtype_named(args.text("output_dtype")).np_dtype
    )


def _block_ids(shape: tuple[int, ...], blocks: tuple[int, ...]) -> np.ndarray:
    """For each element of a tensor of ``shape``, the flat index of its block when axis i is
    cut into ``blocks[i]`` equal blocks (row-major over the block grid)."""
    ids = np.zeros((1,) * len(shape), dtype=np.int64)
    for axis, (size, count) in enumerate(zip(shape, blocks, strict=True)):
        if size % count:
            raise BackendError(f"axis {axis} of size {size} does not split into {count} blocks")
        coord = np.arange(size, dtype=np.int64) // (size // count)
        view = [1] * len(shape)
        view[axis] = size
        ids = ids * count + coord.reshape(view)
    return np.broadcast_to(ids, shape)


def lut_to_dense(indices: np.ndarray, lut: np.ndarray, vector_axis: int | None) -> np.ndarray:
    """iOS 18 palettization: ``lut`` [*blocks, 2**nbits, vector_size] per block of
    ``indices``; vector entries are laid out along ``vector_axis``."""
    rank = indices.ndim
    if lut.ndim != rank + 2:
        raise BackendError(f"lut of rank {lut.ndim} for indices of rank {rank}")
    palettes, vector = lut.shape[-2], lut.shape[-1]
    ids = _block_ids(indices.shape, lut.shape[:rank])
    table = lut.reshape(-1, vector)
    if int(indices.max(initial=0)) >= palettes:
        raise BackendError(f"index {int(indices.max())} outside a {palettes}-entry table")
    gathered = table[ids * palettes + indices.astype(np.int64)]  # [*indices.shape, vector]
    if vector == 1:
        return np.asarray(gathered[..., 0])
    if vector_axis is None:
        raise BackendError("vector palettization without vector_axis")
    axis = axis_of(vector_axis, rank)
    out_shape = list(indices.shape)
    out_shape[axis] *= vector
    return np.asarray(np.moveaxis(gathered, -1, axis + 1).reshape(out_shape))


def sparse_to_dense(nonzero: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros(mask.shape, dtype=nonzero.dtype)
    where = mask != 0
    if int(where.sum()) != nonzero.size:
        raise BackendError(f"mask has {int(where.sum())} ones for {nonzero.size} values")
    out[where] = nonzero.reshape(-1)
    return out


def shift_scale(data: np.ndarray, scale: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """iOS 18 block-wise dequantization ``scale * (data - offset)``, in the scale's dtype;
    block sizes are ``data.shape / scale.shape`` per axis."""
    if data.ndim != scale.ndim:
        raise BackendError(f"scale of rank {scale.ndim} for data of rank {data.ndim}")
    values = data.astype(scale.dtype)
    for axis, (size, count) in enumerate(zip(data.shape, scale.shape, strict=True)):
        if size % count:
            raise BackendError(f"axis {axis} of size {size} does not split into {count} blocks")
        if size != count:
            scale = np.repeat(scale, size // count, axis)
            if offset is not None:
                offset = np.repeat(offset, size // count, axis)
    if offset is not None:
        values = values - offset
    return np.asarray(scale * values)


def _vector_axis(args: OpArgs) -> int | None:
    return args.integer("vector_axis") if args.raw("vector_axis", None) is not None else None


@kernel("constexpr_lut_to_dense")
def constexpr_lut_to_dense(args: OpArgs) -> np.ndarray:
    indices = np.asarray(args.raw("indices"))
    lut = np.asarray(args.raw("lut"))
    if args.has("shape"):  # iOS 16: packed uint8 indices into one table
        shape = args.integers("shape")
        nbits = int(np.log2(lut.size))
        if 2**nbits != lut.size:
            raise BackendError(f"a lookup table of {lut.size} entries is not 2**nbits")
        flat = unpack_bits(indices, nbits, int(np.prod(shape)), signed=False)
        return lut.reshape(-1)[flat.astype(np.int64)].reshape(shape)
    return lut_to_dense(indices, lut, _vector_axis(args))


@kernel("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(args: OpArgs) -> np.ndarray:
    nonzero = np.asarray(args.raw("nonzero_data"))
    mask = np.asarray(args.raw("mask"))
    if args.has("shape"):  # iOS 16: the mask is packed bits, LSB first
        shape = args.integers("shape")
        mask = unpack_bits(mask, 1, int(np.prod(shape)), signed=False).reshape(shape)
    return sparse_to_dense(nonzero, mask)


@kernel("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(args: OpArgs) -> np.ndarray:
    offset = args.raw("offset", None)
    return shift_scale(
        np.asarray(args.raw("data")),
        np.asarray(args.raw("scale")),
        None if offset is None else np.asarray(offset),
    )


@kernel("constexpr_lut_to_sparse")
def constexpr_lut_to_sparse(args: OpArgs) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(args.raw("indices_mask"))
    indices = sparse_to_dense(np.asarray(args.raw("indices_nonzero_data")), mask)
    lut = np.asarray(args.raw("lut"))
    axis = _vector_axis(args)
    dense = lut_to_dense(indices, lut, axis)
    if lut.shape[-1] > 1 and axis is not None:
        mask = np.repeat(mask, lut.shape[-1], axis=axis)
    return mask, dense[mask != 0]


@kernel("constexpr_sparse_blockwise_shift_scale")
def constexpr_sparse_blockwise_shift_scale(args: OpArgs) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(args.raw("data_mask"))
    data = sparse_to_dense(np.asarray(args.raw("nonzero_data")), mask)
    offset = args.raw("offset", None)
    dense = shift_scale(
        data, np.asarray(args.raw("scale")), None if offset is None else np.asarray(offset)
    )
    return mask, dense[mask != 0]
