"""Per-step transducer components in numpy, read from their ONNX files' weights.

A greedy transducer calls the prediction network once per emitted token and the joint once
per frame and token, each call a few small matrix-vector products. An ONNX Runtime call
costs tens of microseconds before any arithmetic; numpy on the same weights costs a few per
operation. Two graphs are recognised, node by node, and anything else stays on ONNX Runtime:

- an LSTM predictor: ``Gather`` from an embedding table, a chain of forward ``LSTM``
  layers (default activations, no clip, no peepholes; several layers take their rows of
  the states by ``Slice`` and give them back by ``Concat``, as NeMo exports them),
  shape-only ops around them. The embedding is folded into the first layer's input
  weights at load time (``E @ Wᵀ + b``, one row per token), so a step is one
  matrix-vector product per layer and the gates;
- a joint ``out(ReLU(enc @ We + be + dec @ Wp + bp)) [+ LogSoftmax]``: ``JointProjections``
  lets the decoding loop project every frame of a window at once (one matrix product) and
  each decoder output once, so a step is an add, a ReLU and the output projection.

A kernel is kept only if it gives ONNX Runtime's outputs on probe inputs (within float32
reordering); its results differ from ONNX Runtime's by the order of float operations only.
Kernels hold no scratch buffers, so threads may share them as they share a session.

The kernels' matrix products run BLAS on one thread (``runtime.blas.one_blas_thread``: the
spinning threads of a multi-threaded BLAS would take the cores the encoder needs next, and
cost more than they give at these sizes under load). A canonical call sets it itself; the
parts a decoding loop calls step by step (``predictor()``, ``JointProjections``) do not —
switching costs a few microseconds, a tenth of a step — so a loop runs inside one
``one_blas_thread()`` block. When the loop also projects each decoder output for the joint,
``predictor(output=...)`` fuses that projection into the top layer's recurrent product
(``h @ [Rᵀ | Wp]``, one matrix-vector product instead of two: the step after an emission
needs both). Whether a kernel beats ONNX Runtime depends on its size and the machine, so
``step_seconds`` times the work a decoding step does with each (see ``OnnxBackend``,
``steps="auto"``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechport.manifest import ComponentSpec
from speechport.runtime.blas import one_blas_thread
from speechport.runtime.onnx_graph import Graph, Node, ProtobufError, read_graph

SHAPE_OPS = frozenset({"Transpose", "Unsqueeze", "Squeeze", "Reshape", "Flatten"})
# Probe agreement with ONNX Runtime: relative to the largest output magnitude.
PROBE_TOLERANCE = 1e-4


class NumpyLstmStep:
    """``token [1, 1], h [L, 1, H], c [L, 1, H] -> dec_out, h', c'`` (canonical shapes of
    ``spec``) for a predictor of ``L`` stacked LSTM layers."""

    def __init__(
        self,
        spec: ComponentSpec,
        path: Path,
        gates: np.ndarray,
        recurrent: np.ndarray,
        upper: tuple[tuple[np.ndarray, np.ndarray], ...] = (),
    ) -> None:
        self.spec = spec
        self.path = path
        self._gates = gates  # [V, 4H]: embedding @ Wᵀ + Wb + Rb, gate order i, o, f, c
        self._recurrent = recurrent  # [H, 4H]: Rᵀ
        self._upper = upper  # layers above the first: ([Wᵀ; Rᵀ] [2H, 4H], Wb + Rb [4H])
        self.hidden = recurrent.shape[0]
        self.layers = 1 + len(upper)
        self.vocabulary = gates.shape[0]
        self._dec_shape = spec.outputs[0].shape

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        token, h, c = inputs
        shape = h.shape
        flat = (self.layers, self.hidden)
        with one_blas_thread():
            dec, (h_next, c_next) = self.step(token.item(), (h.reshape(flat), c.reshape(flat)))
        return dec.reshape(self._dec_shape), h_next.reshape(shape), c_next.reshape(shape)

    def step(
        self, token: int, state: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """One step on ``[L, H]`` states: ``(dec_out [H], (h', c'))`` (BLAS threads as the
        caller set them)."""
        h, c = state
        h_next, c_next = np.empty_like(h), np.empty_like(c)
        x = self._cell(self._gates[token] + h[0] @ self._recurrent, c[0], h_next, c_next, 0)
        for layer, (weights, bias) in enumerate(self._upper, start=1):
            gates = np.concatenate((x, h[layer])) @ weights + bias
            x = self._cell(gates, c[layer], h_next, c_next, layer)
        return x, (h_next, c_next)

    def _cell(
        self, gates: np.ndarray, c: np.ndarray, h_out: np.ndarray, c_out: np.ndarray, layer: int
    ) -> np.ndarray:
        """The LSTM cell on ``gates`` (modified in place): writes row ``layer`` of ``h_out``
        and ``c_out``, returns the new ``h``."""
        hidden = self.hidden
        # the sigmoid of the input, output and forget gates, as 0.5 tanh(x / 2) + 0.5 (no
        # overflow for large |x|, where 1 / (1 + exp(-x)) warns)
        sig = gates[: 3 * hidden]
        sig *= 0.5
        np.tanh(sig, out=sig)
        sig *= 0.5
        sig += 0.5
        c_new = c_out[layer]
        np.multiply(sig[2 * hidden :], c, out=c_new)
        c_new += sig[:hidden] * np.tanh(gates[3 * hidden :])
        h_new: np.ndarray = h_out[layer]
        np.multiply(sig[hidden : 2 * hidden], np.tanh(c_new), out=h_new)
        return h_new

    def predictor(
        self, output: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[Any, tuple[np.ndarray, ...]]:
        """``predict(token, state) -> (dec_out, state)`` and the zero state, for a decoding
        loop that does not need the canonical state shapes (``predictor_for``); called inside
        ``one_blas_thread()``. With ``output`` (``W [H, J]``, ``b [J]``) ``dec_out`` is
        ``dec_out @ W + b``, fused into the top layer's recurrent product."""
        zeros = np.zeros((self.layers, self.hidden), dtype=np.float32)
        if output is None:
            return self.step, (zeros, zeros.copy())
        fused = ProjectedLstmStep(self, *output)
        return fused, (zeros, zeros.copy(), np.zeros(4 * self.hidden, dtype=np.float32))


class ProjectedLstmStep:
    """A ``NumpyLstmStep`` whose output goes through ``dec_out @ W + b``: the state
    carries the top layer's recurrent term ``h_top @ Rᵀ`` for the next step, computed in the
    same product as this step's projection (``h_top @ [Rᵀ | W]``)."""

    def __init__(self, lstm: NumpyLstmStep, weights: np.ndarray, bias: np.ndarray) -> None:
        hidden = lstm.hidden
        if weights.shape[0] != hidden or bias.shape != (weights.shape[1],):
            raise ValueError(
                f"an output projection of {weights.shape} + {bias.shape} does not fit a "
                f"predictor of {hidden} units"
            )
        self._lstm = lstm
        self._cut = 4 * hidden
        self._lower = lstm._upper[:-1]  # layers between the first and the top one
        self._top_input: np.ndarray | None = None
        if lstm._upper:
            both, self._top_bias = lstm._upper[-1]
            self._top_input, top_recurrent = both[:hidden], both[hidden:]
        else:
            top_recurrent = lstm._recurrent
        self._fused = np.ascontiguousarray(np.concatenate((top_recurrent, weights), axis=1))
        self._bias = np.asarray(bias, dtype=np.float32)

    def __call__(
        self, token: int, state: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        lstm = self._lstm
        h, c, recurrent = state
        h_next, c_next = np.empty_like(h), np.empty_like(c)
        top = self._top_input
        first = recurrent if top is None else h[0] @ lstm._recurrent
        x = lstm._cell(lstm._gates[token] + first, c[0], h_next, c_next, 0)
        layer = 0
        for layer, (weights, bias) in enumerate(self._lower, start=1):
            gates = np.concatenate((x, h[layer])) @ weights + bias
            x = lstm._cell(gates, c[layer], h_next, c_next, layer)
        if top is not None:
            gates = x @ top + recurrent
            gates += self._top_bias
            x = lstm._cell(gates, c[layer + 1], h_next, c_next, layer + 1)
        fused = x @ self._fused
        projected: np.ndarray = fused[self._cut :]
        projected += self._bias
        return projected, (h_next, c_next, fused[: self._cut])


@dataclass(frozen=True)
class JointWeights:
    enc: np.ndarray  # [D, J]
    enc_bias: np.ndarray
    dec: np.ndarray  # [H, J]
    dec_bias: np.ndarray
    out: np.ndarray  # [J, C]
    out_bias: np.ndarray
    log_softmax: bool


class NumpyJoint:
    """``enc_t [1, D], dec_t [1, H] -> (logits [1, C],)`` as the file computes it (its
    log-softmax included), and in parts for the decoding loop (``JointProjections``:
    ``scores`` are the raw logits, which have the same argmax)."""

    def __init__(self, spec: ComponentSpec, path: Path, weights: JointWeights) -> None:
        self.spec = spec
        self.path = path
        self.w = weights
        self.projections = self
        self._out_shape = spec.outputs[0].shape

    @property
    def decoder_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W [H, J], b [J])`` of ``project_decoder``, for a predictor that fuses it."""
        return self.w.dec, self.w.dec_bias

    def project_encoder(self, frames: np.ndarray) -> np.ndarray:
        """``[T, D]`` encoder frames -> ``[T, J]``."""
        projected: np.ndarray = frames @ self.w.enc
        projected += self.w.enc_bias
        return projected

    def project_decoder(self, dec: np.ndarray) -> np.ndarray:
        """One decoder output ``[H]`` -> ``[J]``."""
        projected: np.ndarray = dec @ self.w.dec
        projected += self.w.dec_bias
        return projected

    def scores(self, enc: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Raw logits ``[C]`` of one projected frame and one projected decoder output."""
        hidden = enc + dec
        np.maximum(hidden, 0.0, out=hidden)
        logits: np.ndarray = hidden @ self.w.out
        logits += self.w.out_bias
        return logits

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        enc, dec = inputs
        with one_blas_thread():
            logits = self.scores(
                self.project_encoder(enc.reshape(1, -1))[0], self.project_decoder(dec.reshape(-1))
            )
        if self.w.log_softmax:
            shifted = logits - logits.max()
            logits = shifted - np.log(np.exp(shifted).sum())
        return (logits.reshape(self._out_shape),)


def numpy_step(spec: ComponentSpec, path: Path) -> NumpyLstmStep | NumpyJoint | None:
    """The numpy kernel for the ONNX file of a per-step component, or None when its kind has
    no kernel or its graph is not one recognised here (or cannot be read)."""
    reader = KERNELS.get(spec.kind)
    if reader is None:
        return None
    try:
        graph = read_graph(path)
    except (OSError, ProtobufError):
        return None
    file = spec.files["onnx"]
    return reader(spec, path, graph, [t.name for t in file.inputs], [t.name for t in file.outputs])


def probe_inputs(kernel: NumpyLstmStep | NumpyJoint, seed: int = 0) -> list[np.ndarray]:
    """Random canonical inputs for ``kernel``'s component (tokens within its vocabulary)."""
    rng = np.random.default_rng(seed)
    inputs = []
    for t in kernel.spec.inputs:
        if t.dtype.startswith("int"):
            high = kernel.vocabulary if isinstance(kernel, NumpyLstmStep) else 2
            inputs.append(rng.integers(0, high, size=t.shape).astype(t.dtype))
        else:
            inputs.append(rng.standard_normal(t.shape).astype(t.dtype))
    return inputs


def agrees(kernel: NumpyLstmStep | NumpyJoint, reference: object, seed: int = 0) -> bool:
    """Whether ``kernel`` gives what ``reference`` (the ONNX Runtime component of the same
    file) gives on a few probe inputs."""
    for probe in range(3):
        inputs = probe_inputs(kernel, seed + probe)
        want = reference(*inputs)  # type: ignore[operator]
        got = kernel(*inputs)
        if len(want) != len(got):
            return False
        for a, b in zip(want, got, strict=True):
            a = np.asarray(a)
            if a.shape != b.shape:
                return False
            scale = max(float(np.abs(a).max(initial=0.0)), 1.0)
            if float(np.abs(a - b).max(initial=0.0)) > PROBE_TOLERANCE * scale:
                return False
    return True


def step_seconds(
    kernel: NumpyLstmStep | NumpyJoint, reference: object, *, calls: int = 8, rounds: int = 7
) -> tuple[float, float]:
    """Seconds per decoding step with ``kernel`` and with ``reference`` (the ONNX Runtime
    component): the fastest of ``rounds`` of ``calls``, taken in turns after a warm-up (other
    processes only ever add time, so the fastest round is the least disturbed). A step
    with the kernel is what the decoding loop calls: the LSTM step on flat states; for a
    joint its ``scores`` on a projected frame and a decoder output projected in the step (as
    after every emitted token: the most a step costs)."""
    inputs = probe_inputs(kernel)
    if isinstance(kernel, NumpyLstmStep):
        predict, state = kernel.predictor()
        token = int(inputs[0].reshape(-1)[0])

        def fast() -> object:
            return predict(token, state)

    else:
        enc = kernel.project_encoder(inputs[0].reshape(1, -1))[0]
        dec = inputs[1].reshape(-1)

        def fast() -> object:
            return kernel.scores(enc, kernel.project_decoder(dec))

    def slow() -> object:
        return reference(*inputs)  # type: ignore[operator]

    times: dict[Callable[[], object], list[float]] = {fast: [], slow: []}
    with one_blas_thread():  # as a decoding loop runs the kernel
        for fn in (fast, slow):
            fn()  # warm-up
        for _ in range(rounds):
            for fn, spent in times.items():
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                spent.append((time.perf_counter() - start) / calls)
    return min(times[fast]), min(times[slow])


def _lstm_step(
    spec: ComponentSpec, path: Path, graph: Graph, names_in: list[str], names_out: list[str]
) -> NumpyLstmStep | None:
    """An embedding ``Gather`` feeding a chain of forward LSTM layers: one layer takes the
    states as they come; several take their rows (``Slice`` on axis 0) and give the new
    states as a ``Concat`` of theirs."""
    lstms = [n for n in graph.nodes if n.op_type == "LSTM"]
    if not lstms or len(names_in) != 3 or len(names_out) != 3:
        return None
    layers = [_lstm_layer(graph, node) for node in lstms]
    if any(layer is None for layer in layers):
        return None
    hidden = layers[0][1].shape[0]  # type: ignore[index]
    # the chain: the first layer reads the embedding, each next one the previous one's Y
    gather = graph.producer(_through_shape_ops(graph, lstms[0].inputs[0]))
    if gather is None or gather.op_type != "Gather" or gather.ints.get("axis", [0]) != [0]:
        return None
    for below, above in itertools.pairwise(lstms):
        if _through_shape_ops(graph, above.inputs[0]) != below.outputs[0]:
            return None
    table = graph.value(gather.inputs[0])
    token = gather.inputs[1]
    cast = graph.producer(token)
    if cast is not None and cast.op_type == "Cast":
        token = cast.inputs[0]
    w0 = layers[0][0]  # type: ignore[index]
    if table is None or table.ndim != 2 or table.shape[1] != w0.shape[0]:
        return None
    if token != names_in[0]:
        return None
    # the states: whole for one layer, a row per layer for several
    for index, node in enumerate(lstms):
        h0, c0 = (node.inputs + [""] * 7)[5:7]
        if len(lstms) == 1:
            if [h0, c0] != names_in[1:]:
                return None
        elif _row_of(graph, h0) != (names_in[1], index) or _row_of(graph, c0) != (
            names_in[2],
            index,
        ):
            return None
    for position, output in ((1, 1), (2, 2)):
        finals = [node.outputs[output] for node in lstms]
        if len(lstms) == 1:
            if finals[0] != names_out[position]:
                return None
        else:
            concat = graph.producer(names_out[position])
            if (
                concat is None
                or concat.op_type != "Concat"
                or concat.ints.get("axis") != [0]
                or concat.inputs != finals
            ):
                return None
    if _through_shape_ops_forward(graph, lstms[-1].outputs[0]) != names_out[0]:
        return None
    w0, r0, b0 = layers[0]  # type: ignore[misc]
    gates = (table.astype(np.float32) @ w0 + b0).astype(np.float32)
    upper = []
    for w, r, b in layers[1:]:  # type: ignore[misc]
        if w.shape != (hidden, 4 * hidden):
            return None
        upper.append((np.ascontiguousarray(np.concatenate((w, r)), dtype=np.float32), b))
    return NumpyLstmStep(
        spec, path, np.ascontiguousarray(gates), np.ascontiguousarray(r0), tuple(upper)
    )


def _lstm_layer(graph: Graph, lstm: Node) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One forward LSTM node's ``(Wᵀ [In, 4H], Rᵀ [H, 4H], Wb + Rb [4H])``, or None when it
    has what the kernel does not compute (other activations, clip, peepholes, lengths)."""
    if lstm.attributes - {"hidden_size", "direction"} or lstm.strings.get(
        "direction", [b"forward"]
    ) != [b"forward"]:
        return None
    args = [*lstm.inputs, *[""] * (8 - len(lstm.inputs))]
    _, w_name, r_name, b_name, seq_lens, _, _, peepholes = args[:8]
    w, r = graph.value(w_name), graph.value(r_name)
    b = graph.value(b_name) if b_name else None
    if w is None or r is None or seq_lens or peepholes or (b_name and b is None):
        return None
    if w.ndim != 3 or w.shape[0] != 1 or r.ndim != 3 or r.shape[0] != 1:
        return None
    hidden = r.shape[2]
    if r.shape[1] != 4 * hidden or w.shape[1] != 4 * hidden or len(lstm.outputs) < 3:
        return None
    bias = (
        np.zeros(4 * hidden, np.float32) if b is None else b[0, : 4 * hidden] + b[0, 4 * hidden :]
    )
    return (
        np.ascontiguousarray(w[0].T, dtype=np.float32),
        np.ascontiguousarray(r[0].T, dtype=np.float32),
        np.asarray(bias, dtype=np.float32),
    )


def _row_of(graph: Graph, name: str) -> tuple[str, int] | None:
    """``(source, i)`` when ``name`` is ``Slice(source, starts=[i], ends=[i + 1], axes=[0])``
    (steps absent or 1)."""
    node = graph.producer(name)
    if node is None or node.op_type != "Slice" or len(node.inputs) < 3:
        return None
    values = [graph.value(n) for n in node.inputs[1:]]
    if any(v is None for v in values):
        return None
    starts, ends, *rest = [[int(x) for x in np.asarray(v).reshape(-1)] for v in values]
    axes = rest[0] if rest else [0]
    steps = rest[1] if len(rest) > 1 else [1]
    if len(starts) != 1 or axes != [0] or steps != [1] or ends != [starts[0] + 1]:
        return None
    return node.inputs[0], starts[0]


def _joint(
    spec: ComponentSpec, path: Path, graph: Graph, names_in: list[str], names_out: list[str]
) -> NumpyJoint | None:
    weights = _joint_weights(graph, names_in, names_out, len(spec.files["onnx"].outputs[0].shape))
    return None if weights is None else NumpyJoint(spec, path, weights)


def _joint_weights(
    graph: Graph, names_in: list[str], names_out: list[str], out_rank: int
) -> JointWeights | None:
    if len(names_in) != 2 or len(names_out) != 1:
        return None
    node = graph.producer(names_out[0])
    log_softmax = node is not None and node.op_type == "LogSoftmax"
    if log_softmax:
        assert node is not None
        if node.ints.get("axis", [-1])[0] not in (-1, out_rank - 1):
            return None
        node = graph.producer(node.inputs[0])
    out = _affine(graph, node)
    if out is None:
        return None
    relu = graph.producer(out[0])
    if relu is None or relu.op_type != "Relu":
        return None
    add = graph.producer(relu.inputs[0])
    if add is None or add.op_type != "Add":
        return None
    parts = [_affine(graph, graph.producer(name)) for name in add.inputs]
    if any(p is None for p in parts):
        return None
    by_input: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for part in parts:
        assert part is not None
        source = _through_shape_ops(graph, part[0])
        by_input[source] = (part[1], part[2])
    if set(by_input) != set(names_in):
        return None
    (we, be), (wp, bp) = by_input[names_in[0]], by_input[names_in[1]]
    w_out, b_out = out[1], out[2]
    if we.shape[1] != wp.shape[1] or w_out.shape[0] != we.shape[1]:
        return None
    enc, enc_bias, dec, dec_bias, out_w, out_bias = (
        np.ascontiguousarray(a, dtype=np.float32) for a in (we, be, wp, bp, w_out, b_out)
    )
    return JointWeights(enc, enc_bias, dec, dec_bias, out_w, out_bias, log_softmax)


def _affine(graph: Graph, node: Node | None) -> tuple[str, np.ndarray, np.ndarray] | None:
    """``Add(MatMul(x, W), b)`` (either order of the Add) -> (x, W, b)."""
    if node is None or node.op_type != "Add" or len(node.inputs) != 2:
        return None
    for bias_name, product_name in (node.inputs, node.inputs[::-1]):
        bias = graph.value(bias_name)
        product = graph.producer(product_name)
        if bias is None or product is None or product.op_type != "MatMul":
            continue
        weight = graph.value(product.inputs[1])
        if weight is None or weight.ndim != 2 or bias.shape != (weight.shape[1],):
            return None
        return product.inputs[0], weight, bias
    return None


def _through_shape_ops(graph: Graph, name: str) -> str:
    """Walk back through shape-only ops (one data input each) to the tensor they reshape."""
    node = graph.producer(name)
    while node is not None and node.op_type in SHAPE_OPS:
        name = node.inputs[0]
        node = graph.producer(name)
    return name


def _through_shape_ops_forward(graph: Graph, name: str) -> str | None:
    """Follow ``name`` forward through shape-only ops while it has one consumer."""
    while name not in graph.outputs:
        users = [n for n in graph.nodes if name in n.inputs]
        if len(users) != 1 or users[0].op_type not in SHAPE_OPS or users[0].inputs[0] != name:
            return None
        name = users[0].outputs[0]
    return name


# The kernel reader of each component kind that has one.
KERNELS: dict[str, Callable[..., NumpyLstmStep | NumpyJoint | None]] = {
    "decoder_step": _lstm_step,
    "joint": _joint,
}
