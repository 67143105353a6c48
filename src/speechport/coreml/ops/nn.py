"""Layers: linear, matmul, convolution (N-d, grouped, dilated, transposed), normalisation,
pooling, scaled dot-product attention. Convolutions use strided window views and BLAS
contractions (no per-element Python loops)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from speechport.coreml.ops.base import OpArgs, axis_of, kernel
from speechport.errors import BackendError


@kernel("linear")
def linear(args: OpArgs) -> np.ndarray:
    x, weight = args.tensor("x"), args.tensor("weight")
    out = np.matmul(x, weight.T)
    bias = args.optional("bias")
    return np.asarray(out if bias is None else out + bias)


@kernel("matmul")
def matmul(args: OpArgs) -> np.ndarray:
    x, y = args.tensor("x"), args.tensor("y")
    if args.flag("transpose_x", False) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if args.flag("transpose_y", False) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.asarray(np.matmul(x, y))


def conv_padding(
    pad_type: str,
    pad: tuple[int, ...],
    spatial: tuple[int, ...],
    kernel_size: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
) -> list[tuple[int, int]]:
    """Begin and end padding of each spatial axis for MIL's ``pad_type``."""
    n = len(spatial)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        if len(pad) != 2 * n:
            raise BackendError(f"custom pad has {len(pad)} values, expected {2 * n}")
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        out = []
        for size, k, s, d in zip(spatial, kernel_size, strides, dilations, strict=True):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            out.append((small, large) if pad_type == "same" else (large, small))
        return out
    raise BackendError(f"pad_type {pad_type!r} is unknown")


def conv(
    x: np.ndarray,
    weight: np.ndarray,
    *,
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    padding: list[tuple[int, int]],
    groups: int,
) -> np.ndarray:
    """N-d cross-correlation: x [B, C, *S], weight [Cout, C / groups, *K] -> [B, Cout, *O]."""
    n = x.ndim - 2
    batch, channels = x.shape[:2]
    c_out, c_group = weight.shape[:2]
    kernel_size = weight.shape[2:]
    if channels != c_group * groups or c_out % groups:
        raise BackendError(
            f"conv of {channels} channels with weight {list(weight.shape)} in {groups} groups"
        )
    x = np.pad(x, [(0, 0), (0, 0), *padding])
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilations, strict=True)]
    view = sliding_window_view(x, spans, axis=tuple(range(2, 2 + n)))
    index = (
        slice(None),
        slice(None),
        *tuple(slice(None, None, s) for s in strides),
        *tuple(slice(None, None, d) for d in dilations),
    )
    view = view[index]  # [B, C, *O, *K]
    out_spatial = view.shape[2 : 2 + n]
    k_axes = tuple(range(2 + n, 2 + 2 * n))
    if groups == 1:
        out = np.tensordot(view, weight, axes=((1, *k_axes), (1, *range(2, 2 + n))))
        return np.moveaxis(out, -1, 1)  # [B, *O, Cout] -> [B, Cout, *O]
    if c_group == 1 and c_out == channels:  # depthwise
        letters = "abcdefgh"[:n]
        spec = f"zc{letters.upper()}{letters},c{letters}->zc{letters.upper()}"
        return np.asarray(np.einsum(spec, view, weight[:, 0], optimize=True))
    per = c_out // groups
    pieces = []
    for g in range(groups):
        part = view[:, g * c_group : (g + 1) * c_group]
        w = weight[g * per : (g + 1) * per]
        pieces.append(
            np.moveaxis(np.tensordot(part, w, axes=((1, *k_axes), (1, *range(2, 2 + n)))), -1, 1)
        )
    out = np.concatenate(pieces, axis=1)
    assert out.shape[2:] == out_spatial and out.shape[:2] == (batch, c_out)
    return out


def _conv_geometry(
    args: OpArgs, x: np.ndarray, kernel_size: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...], list[tuple[int, int]], int]:
    n = x.ndim - 2
    strides = args.integers("strides", None) or (1,) * n
    dilations = args.integers("dilations", None) or (1,) * n
    groups = args.integer("groups", 1)
    padding = conv_padding(
        args.text("pad_type", "valid"),
        args.integers("pad", None) or (0,) * (2 * n),
        x.shape[2:],
        kernel_size,
        strides,
        dilations,
    )
    return strides, dilations, padding, groups


@kernel("conv")
def conv_op(args: OpArgs) -> np.ndarray:
    x, weight = args.tensor("x"), args.tensor("weight")
    strides, dilations, padding, groups = _conv_geometry(args, x, weight.shape[2:])
    out = conv(x, weight, strides=strides, dilations=dilations, padding=padding, groups=groups)
    bias = args.optional("bias")
    if bias is not None:
        out = out + bias.reshape((1, -1) + (1,) * (x.ndim - 2))
    return out


@kernel("conv_transpose")
def conv_transpose(args: OpArgs) -> np.ndarray:
    """x [B, Cin, *S], weight [Cin, Cout / groups, *K]: each input position adds its kernel
    times its value at ``position * stride`` (one contraction per kernel tap)."""
    x, weight = args.tensor("x"), args.tensor("weight")
    n = x.ndim - 2
    kernel_size = weight.shape[2:]
    strides = args.integers("strides", None) or (1,) * n
    dilations = args.integers("dilations", None) or (1,) * n
    groups = args.integer("groups", 1)
    batch, c_in = x.shape[:2]
    per_out = weight.shape[1]
    c_out = per_out * groups
    full = [
        (s - 1) * st + (k - 1) * d + 1
        for s, st, k, d in zip(x.shape[2:], strides, kernel_size, dilations, strict=True)
    ]
    y = np.zeros((batch, c_out, *full), dtype=np.float32)
    per_in = c_in // groups
    for tap in np.ndindex(*kernel_size):
        w_tap = weight[(slice(None), slice(None), *tap)]  # [Cin, Cout/g]
        for g in range(groups):
            xs = x[:, g * per_in : (g + 1) * per_in]
            contrib = np.tensordot(xs, w_tap[g * per_in : (g + 1) * per_in], axes=((1,), (0,)))
            contrib = np.moveaxis(contrib, -1, 1)  # [B, Cout/g, *S]
            index = (
                slice(None),
                slice(g * per_out, (g + 1) * per_out),
                *(
                    slice(t * d, t * d + (s - 1) * st + 1, st)
                    for t, d, s, st in zip(tap, dilations, x.shape[2:], strides, strict=True)
                ),
            )
            y[index] += contrib
    pad_type = args.text("pad_type", "valid")
    output_shape = args.integers("output_shape", None)
    if pad_type == "custom":
        pads = args.integers("pad", None) or (0,) * (2 * n)
        crop = [(pads[2 * i], pads[2 * i + 1]) for i in range(n)]
    elif pad_type in ("same", "same_lower"):
        crop = []
        for size, f, st in zip(x.shape[2:], full, strides, strict=True):
            total = f - size * st
            small, large = total // 2, total - total // 2
            crop.append((small, large) if pad_type == "same" else (large, small))
    elif pad_type == "valid":
        crop = [(0, 0)] * n
    else:
        raise BackendError(f"pad_type {pad_type!r} is unknown")
    sizes = [f - b - e for (b, e), f in zip(crop, full, strict=True)]
    if output_shape:  # may ask for more rows at the end (torch's output_padding)
        sizes = list(output_shape[-n:])
    grow = [max(0, b + size - f) for (b, _), size, f in zip(crop, sizes, full, strict=True)]
    if any(grow):
        y = np.pad(y, [(0, 0), (0, 0), *((0, g) for g in grow)])
    kept = (slice(b, b + size) for (b, _), size in zip(crop, sizes, strict=True))
    y = y[(slice(None), slice(None), *kept)]
    bias = args.optional("bias")
    if bias is not None:
        y = y + bias.reshape((1, -1) + (1,) * n)
    return y


@kernel("layer_norm")
def layer_norm(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axes = tuple(axis_of(a, x.ndim) for a in (args.integers("axes", None) or range(x.ndim)))
    eps = np.float32(args.number("epsilon", 1e-5))
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(np.square(centered), axis=axes, keepdims=True)
    out = centered / np.sqrt(var + eps)
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    gamma = args.optional("gamma")
    if gamma is not None:
        out = out * gamma.reshape(shape)
    beta = args.optional("beta")
    if beta is not None:
        out = out + beta.reshape(shape)
    return np.asarray(out)


def _channels(v: np.ndarray | None, rank: int) -> np.ndarray | None:
    return None if v is None else v.reshape((1, -1) + (1,) * (rank - 2))


@kernel("batch_norm")
def batch_norm(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = args.tensor("mean").reshape(shape)
    var = args.tensor("variance").reshape(shape)
    eps = np.float32(args.number("epsilon", 1e-5))
    out = (x - mean) / np.sqrt(var + eps)
    gamma = _channels(args.optional("gamma"), x.ndim)
    beta = _channels(args.optional("beta"), x.ndim)
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    return np.asarray(out)


@kernel("instance_norm")
def instance_norm(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axes = tuple(range(2, x.ndim))
    eps = np.float32(args.number("epsilon", 1e-5))
    centered = x - x.mean(axis=axes, keepdims=True)
    out = centered / np.sqrt(np.mean(np.square(centered), axis=axes, keepdims=True) + eps)
    gamma = _channels(args.optional("gamma"), x.ndim)
    beta = _channels(args.optional("beta"), x.ndim)
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    return np.asarray(out)


@kernel("avg_pool", "max_pool")
def pool(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    n = x.ndim - 2
    kernel_size = args.integers("kernel_sizes")
    strides = args.integers("strides", None) or (1,) * n
    padding = conv_padding(
        args.text("pad_type", "valid"),
        args.integers("pad", None) or (0,) * (2 * n),
        x.shape[2:],
        kernel_size,
        strides,
        (1,) * n,
    )
    if args.flag("ceil_mode", False):  # windows that run past the end count too
        grown = []
        for (b, e), size, k, s in zip(padding, x.shape[2:], kernel_size, strides, strict=True):
            count = -(-(size + b + e - k) // s) + 1
            if (count - 1) * s >= size + b:  # a window may not start in the end padding
                count -= 1
            grown.append((b, e + max(0, (count - 1) * s + k - (size + b + e))))
        padding = grown
    is_max = args.type == "max_pool"
    fill = -np.inf if is_max else 0.0
    padded = np.pad(x, [(0, 0), (0, 0), *padding], constant_values=fill)
    axes = tuple(range(2, 2 + n))
    view = sliding_window_view(padded, kernel_size, axis=axes)
    view = view[(slice(None), slice(None), *(slice(None, None, s) for s in strides))]
    win_axes = tuple(range(2 + n, 2 + 2 * n))
    if is_max:
        return np.asarray(view.max(axis=win_axes))
    total = view.sum(axis=win_axes)
    if not args.flag("exclude_padding_from_average", False):
        return np.asarray(total / np.float32(np.prod(kernel_size)))
    ones = np.pad(np.ones(x.shape[2:], dtype=np.float32), padding)
    counts = sliding_window_view(ones, kernel_size)
    counts = counts[tuple(slice(None, None, s) for s in strides)].sum(axis=tuple(range(n, 2 * n)))
    return np.asarray(total / counts)


@kernel("scaled_dot_product_attention")
def scaled_dot_product_attention(args: OpArgs) -> np.ndarray:
    q, k, v = args.tensor("query"), args.tensor("key"), args.tensor("value")
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) / np.float32(np.sqrt(q.shape[-1]))
    mask = args.optional("attn_mask")
    if mask is not None:
        scores = np.where(mask, scores, -np.inf) if mask.dtype == bool else scores + mask
    scores = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(scores)
    return np.asarray(np.matmul(e / e.sum(axis=-1, keepdims=True), v))
