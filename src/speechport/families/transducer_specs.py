"""The canonical contracts of the transducer components that several families share.

An encoder on a fixed window, one LSTM step of the prediction network with its state as
explicit inputs and outputs, and the joint on one frame: the names, shapes and state pairs
the runtime and the decoders rely on, whichever family builds the modules behind them.
Plain manifest data, no torch.
"""

from __future__ import annotations

from speechport.manifest import ComponentSpec, StatePair, TensorSpec

TOKEN_INPUT = TensorSpec("token", (1, 1), "int32", "previous token; blank at the start")
DECODER_STATE_PAIRS = (StatePair("h_in", "h_out"), StatePair("c_in", "c_out"))


def lstm_state_shape(layers: int, hidden: int) -> tuple[int, int, int]:
    """The shape of one LSTM state tensor (``h`` or ``c``) for a batch of one."""
    return (layers, 1, hidden)


def decoder_state_inputs(state_shape: tuple[int, ...]) -> tuple[TensorSpec, TensorSpec]:
    return (TensorSpec("h_in", state_shape, "float32"), TensorSpec("c_in", state_shape, "float32"))


def decoder_state_outputs(state_shape: tuple[int, ...]) -> tuple[TensorSpec, TensorSpec]:
    return (
        TensorSpec("h_out", state_shape, "float32"),
        TensorSpec("c_out", state_shape, "float32"),
    )


def encoder_inputs(feat_in: int, feature_frames: int) -> tuple[TensorSpec, TensorSpec]:
    """Log-mel features on the window and their valid length."""
    return (
        TensorSpec(
            "features",
            (1, feat_in, feature_frames),
            "float32",
            "log-mel features, zero-padded right",
        ),
        TensorSpec("length", (1,), "int32", "valid feature frames"),
    )


def encoder_outputs(d_model: int, encoder_frames: int) -> tuple[TensorSpec, TensorSpec]:
    """Encoder frames (channels first) and their valid length."""
    return (
        TensorSpec(
            "encoded",
            (1, d_model, encoder_frames),
            "float32",
            "encoder frames; zero past encoded_len",
        ),
        TensorSpec("encoded_len", (1,), "int32", "valid frames (integer ops)"),
    )


def decoder_step_spec(layers: int, hidden: int) -> ComponentSpec:
    """``DecoderStep``: one LSTM step of the prediction network, ``token, h_in, c_in ->
    dec_out, h_out, c_out``, the state carried as ``h_in -> h_out``, ``c_in -> c_out``."""
    state = lstm_state_shape(layers, hidden)
    return ComponentSpec(
        "DecoderStep",
        "decoder",
        "prediction network, one LSTM step with explicit state",
        (TOKEN_INPUT, *decoder_state_inputs(state)),
        (TensorSpec("dec_out", (1, hidden), "float32"), *decoder_state_outputs(state)),
        state=DECODER_STATE_PAIRS,
        kind="decoder_step",
    )


def joint_inputs(d_model: int, hidden: int) -> tuple[TensorSpec, TensorSpec]:
    """One encoder frame and one decoder output."""
    return (
        TensorSpec("enc_t", (1, d_model), "float32"),
        TensorSpec("dec_t", (1, hidden), "float32"),
    )


def joint_step_spec(d_model: int, hidden: int, logits: TensorSpec) -> ComponentSpec:
    """``JointStep``: the joint on one frame and one decoder output, ``logits`` out."""
    return ComponentSpec(
        "JointStep",
        "joint",
        "joint network on one encoder frame and one decoder output, raw logits",
        joint_inputs(d_model, hidden),
        (logits,),
        kind="joint",
    )
