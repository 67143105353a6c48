"""Recurrent layers: ``lstm`` (forward, reverse, bidirectional; peepholes; cell clip) and
``rnn``. Gates are in MIL's order ``[input, forget, output, cell]``; the input projection of
all time steps is one matrix product, the recurrence a loop over time steps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from speechport.coreml.ops.base import OpArgs, kernel
from speechport.coreml.ops.elementwise import sigmoid
from speechport.errors import BackendError

_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "scaled_tanh": np.tanh,  # default alpha = beta = 1
    "relu": lambda x: np.maximum(x, 0),
    "linear": lambda x: x,
    "hard_sigmoid": lambda x: np.clip(0.2 * x + 0.5, 0, 1),
    "sigmoid_hard": lambda x: np.clip(0.2 * x + 0.5, 0, 1),
}


def _activation(args: OpArgs, name: str, default: str) -> Callable[[np.ndarray], np.ndarray]:
    value = args.text(name, default).lower()
    if value not in _ACTIVATIONS:
        raise BackendError(f"{name} {value!r} is unknown")
    return _ACTIVATIONS[value]


def _lstm_direction(
    x: np.ndarray,
    h: np.ndarray,
    c: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    bias: np.ndarray | None,
    peephole: np.ndarray | None,
    reverse: bool,
    clip: float | None,
    acts: tuple[Callable[[np.ndarray], np.ndarray], ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gate_act, cell_act, out_act = acts
    hidden = h.shape[-1]
    projected = np.matmul(x, w_ih.T)  # [s, b, 4H]
    if bias is not None:
        projected = projected + bias
    p_i = p_f = p_o = None
    if peephole is not None:
        p_i, p_f, p_o = np.split(peephole, 3)
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    outputs = np.zeros((x.shape[0], x.shape[1], hidden), dtype=np.float32)
    for t in steps:
        gates = projected[t] + np.matmul(h, w_hh.T)
        i, f, o, z = np.split(gates, 4, axis=-1)
        if p_i is not None:
            i = i + c * p_i
            f = f + c * p_f
        i, f, z = gate_act(i), gate_act(f), cell_act(z)
        c = f * c + i * z
        if clip is not None:
            c = np.clip(c, -clip, clip)
        if p_o is not None:
            o = o + c * p_o
        h = gate_act(o) * out_act(c)
        outputs[t] = h
    return outputs, h, c


@kernel("lstm")
def lstm(args: OpArgs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = args.tensor("x")
    h0, c0 = args.tensor("initial_h"), args.tensor("initial_c")
    direction = args.text("direction", "forward")
    acts = (
        _activation(args, "recurrent_activation", "sigmoid"),
        _activation(args, "cell_activation", "tanh"),
        _activation(args, "activation", "tanh"),
    )
    clip = args.number("clip", None) if args.raw("clip", None) is not None else None
    forward = (
        args.tensor("weight_ih"),
        args.tensor("weight_hh"),
        args.optional("bias"),
        args.optional("peephole"),
    )
    if direction == "bidirectional":
        hidden = h0.shape[-1] // 2
        backward = (
            args.tensor("weight_ih_back"),
            args.tensor("weight_hh_back"),
            args.optional("bias_back"),
            args.optional("peephole_back"),
        )
        ys_f, h_f, c_f = _lstm_direction(
            x, h0[..., :hidden], c0[..., :hidden], *forward, False, clip, acts
        )
        ys_b, h_b, c_b = _lstm_direction(
            x, h0[..., hidden:], c0[..., hidden:], *backward, True, clip, acts
        )
        ys = np.concatenate([ys_f, ys_b], axis=-1)
        h, c = np.concatenate([h_f, h_b], axis=-1), np.concatenate([c_f, c_b], axis=-1)
        last = np.concatenate([ys_f[-1:], ys_b[:1]], axis=-1)
    elif direction in ("forward", "reverse"):
        ys, h, c = _lstm_direction(x, h0, c0, *forward, direction == "reverse", clip, acts)
        last = ys[:1] if direction == "reverse" else ys[-1:]
    else:
        raise BackendError(f"lstm direction {direction!r} is unknown")
    return (ys if args.flag("output_sequence", False) else last), h, c


@kernel("rnn")
def rnn(args: OpArgs) -> tuple[np.ndarray, np.ndarray]:
    x = args.tensor("x")
    h = args.tensor("initial_h")
    w_ih, w_hh = args.tensor("weight_ih"), args.tensor("weight_hh")
    bias = args.optional("bias")
    act = _activation(args, "activation", "tanh")
    reverse = args.text("direction", "forward") == "reverse"
    projected = np.matmul(x, w_ih.T) + (0 if bias is None else bias)
    outputs = np.zeros((x.shape[0], x.shape[1], h.shape[-1]), dtype=np.float32)
    for t in range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0]):
        h = act(projected[t] + np.matmul(h, w_hh.T))
        outputs[t] = h
    last = outputs[:1] if reverse else outputs[-1:]
    return (outputs if args.flag("output_sequence", False) else last), h
