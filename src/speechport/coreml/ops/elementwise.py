"""Elementwise MIL ops: binary arithmetic and comparisons (numpy broadcasting), unary math,
activations, ``cast`` and ``select``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from speechport.coreml.ops.base import OpArgs, axis_of, kernel
from speechport.coreml.values import dtype_named
from speechport.errors import BackendError

_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "real_div": np.true_divide,
    "floor_div": np.floor_divide,
    "mod": np.mod,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}


@kernel(*_BINARY)
def binary(args: OpArgs) -> np.ndarray:
    x, y = args.tensor("x"), args.tensor("y")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _BINARY[args.type](x, y)


@kernel("pow")
def power(args: OpArgs) -> np.ndarray:
    x, y = args.tensor("x"), args.tensor("y")
    if x.dtype.kind in "iu" and y.dtype.kind in "iu":
        return np.power(x.astype(np.int64), y.astype(np.int64))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(np.power(x, y))


def erf(x: np.ndarray) -> np.ndarray:
    """The error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7), in float64."""
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return np.asarray(np.sign(x) * (1.0 - poly * np.exp(-z * z)))


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(1.0 / (1.0 + np.exp(-x)))


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "acos": np.arccos,
    "asin": np.arcsin,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "ceil": np.ceil,
    "cos": np.cos,
    "cosh": np.cosh,
    "exp": np.exp,
    "exp2": np.exp2,
    "floor": np.floor,
    "round": np.round,  # ties to even, as coremltools' own value inference
    "sign": np.sign,
    "sin": np.sin,
    "sinh": np.sinh,
    "sqrt": np.sqrt,
    "square": np.square,
    "tan": np.tan,
    "tanh": np.tanh,
    "logical_not": np.logical_not,
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": sigmoid,
    "silu": lambda x: x * sigmoid(x),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "softplus": lambda x: np.logaddexp(0, x),
    "erf": lambda x: erf(x).astype(np.float32),
}


@kernel(*_UNARY)
def unary(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _UNARY[args.type](x)


@kernel("log", "inverse", "rsqrt")
def with_epsilon(args: OpArgs) -> np.ndarray:
    """``log(x + eps)``, ``1 / (x + eps)``, ``1 / sqrt(x + eps)`` (eps defaults: 0, 1e-4, 1e-12)."""
    defaults = {"log": 0.0, "inverse": 1e-4, "rsqrt": 1e-12}
    x = args.tensor("x") + np.float32(args.number("epsilon", defaults[args.type]))
    with np.errstate(divide="ignore", invalid="ignore"):
        if args.type == "log":
            return np.log(x)
        if args.type == "inverse":
            return 1 / x
        return 1 / np.sqrt(x)


@kernel("clip")
def clip(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    return np.asarray(np.minimum(np.maximum(x, args.number("alpha")), args.number("beta")))


@kernel("threshold")
def threshold(args: OpArgs) -> np.ndarray:
    return np.asarray(np.maximum(args.tensor("x"), np.float32(args.number("alpha"))))


@kernel("cast")
def cast(args: OpArgs) -> np.ndarray:
    """Numpy's conversion, as coremltools' value inference: float to int truncates."""
    target = dtype_named(args.text("dtype"))
    with np.errstate(invalid="ignore", over="ignore"):
        return args.tensor("x").astype(target.np_dtype)


@kernel("select")
def select(args: OpArgs) -> np.ndarray:
    return np.where(args.tensor("cond").astype(bool), args.tensor("a"), args.tensor("b"))


@kernel("gelu")
def gelu(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    mode = args.text("mode", "EXACT")
    if mode == "EXACT":
        return (0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))).astype(np.float32)
    if mode == "TANH_APPROXIMATION":
        inner = np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x**3)
        return np.asarray(0.5 * x * (1 + np.tanh(inner)))
    if mode == "SIGMOID_APPROXIMATION":
        return np.asarray(x * sigmoid(np.float32(1.702) * x))
    raise BackendError(f"gelu mode {mode!r} is unknown")


@kernel(
    "elu",
    "leaky_relu",
    "thresholded_relu",
    "sigmoid_hard",
    "scaled_tanh",
    "linear_activation",
    "clamped_relu",
)
def with_alpha(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    name = args.type
    defaults = {
        "elu": (1.0, 0.0),
        "leaky_relu": (0.01, 0.0),
        "thresholded_relu": (1.0, 0.0),
        "sigmoid_hard": (0.2, 0.5),
        "scaled_tanh": (1.0, 1.0),
        "linear_activation": (1.0, 0.0),
        "clamped_relu": (0.0, 6.0),
    }[name]
    a = np.float32(args.number("alpha", defaults[0]))
    b = np.float32(args.number("beta", defaults[1]))
    with np.errstate(over="ignore"):
        if name == "elu":
            return np.where(x > 0, x, a * (np.exp(x) - 1))
        if name == "leaky_relu":
            return np.where(x >= 0, x, a * x)
        if name == "thresholded_relu":
            return np.where(x > a, x, np.float32(0))
        if name == "sigmoid_hard":
            return np.asarray(np.clip(a * x + b, 0, 1))
        if name == "scaled_tanh":
            return a * np.tanh(b * x)
        if name == "linear_activation":
            return a * x + b
        return np.minimum(np.where(x >= 0, x, a * x), b)  # clamped_relu


def _per_channel(values: np.ndarray, rank: int) -> np.ndarray:
    """A [C] vector shaped to broadcast over axis 1 of a rank-``rank`` tensor."""
    return values.reshape((1, -1) + (1,) * (rank - 2)) if rank >= 2 else values


@kernel("prelu")
def prelu(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    alpha = _per_channel(args.tensor("alpha"), x.ndim)
    return np.where(x >= 0, x, alpha * x)


@kernel("softplus_parametric")
def softplus_parametric(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    alpha = _per_channel(args.tensor("alpha"), x.ndim)
    beta = _per_channel(args.tensor("beta"), x.ndim)
    return np.asarray(alpha * np.logaddexp(0, beta * x))


@kernel("softmax")
def softmax(args: OpArgs) -> np.ndarray:
    x = args.tensor("x")
    axis = axis_of(args.integer("axis", -1), x.ndim)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return np.asarray(e / np.sum(e, axis=axis, keepdims=True))
