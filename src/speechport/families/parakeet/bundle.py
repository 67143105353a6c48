"""The bundle of a Parakeet model: seven Core ML components on a fixed window, and ONNX files
in NeMo's export layout, which onnx-asr and sherpa-onnx load as they are."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from speechport.errors import CheckpointError
from speechport.families.base import (
    BundlePlan,
    ExportableComponent,
    LoadedCheckpoint,
    OnnxLayout,
)
from speechport.families.encoder_buckets import bucket_encoder
from speechport.families.parakeet.config import ParakeetConfig
from speechport.families.parakeet.model import (
    Decision,
    DecoderJointStep,
    FastConformerEncoder,
    JointDecisionFrame,
    JointDecisionWindow,
    MelEncoder,
    NemoDecoderJointLayout,
    NemoDecoderLayout,
    NemoJointLayout,
    ParakeetModel,
    Preprocessor,
)
from speechport.families.sentencepiece import SPM_BOUNDARY
from speechport.families.transducer_specs import (
    DECODER_STATE_PAIRS,
    TOKEN_INPUT,
    decoder_state_inputs,
    decoder_state_outputs,
    decoder_step_spec,
    encoder_inputs,
    encoder_outputs,
    joint_inputs,
    joint_step_spec,
    lstm_state_shape,
)
from speechport.features.torch_frontend import TorchLogMel
from speechport.manifest import (
    ComponentSpec,
    ConstantInput,
    DecodingSpec,
    TensorSpec,
    TokenizerSpec,
    WindowSpec,
)
from speechport.nn.transducer import DecoderStep, EncoderStep, JointStep, LSTMPredictor, RNNTJoint

FAMILY = "parakeet"
DEFAULT_WINDOW_SECONDS = 15.0
TOP_K = 5
B = {0: "batch"}  # dynamic batch axis


@dataclass(frozen=True)
class ParakeetCheckpoint:
    """What a ``.nemo`` archive held besides the weights (``LoadedCheckpoint.config``)."""

    config: ParakeetConfig
    tokens: list[str]
    tokenizer_model: bytes


DEFAULT_OVERLAP = 2.0


def plan_bundle(
    loaded: LoadedCheckpoint,
    *,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    encoder_buckets: Sequence[float] | None = None,
) -> BundlePlan:
    """Describe the bundle of a loaded Parakeet model for a window of ``window_seconds``,
    its Core ML encoder taking the lengths of ``encoder_buckets`` seconds (see
    ``speechport.families.encoder_buckets``; default 5, 10 s and the window)."""
    source: ParakeetCheckpoint = loaded.config
    config, tokens = source.config, source.tokens
    model = loaded.model
    assert isinstance(model, ParakeetModel)
    spec = config.frontend
    sr = spec.sample_rate
    samples = round(window_seconds * sr)
    feature_frames = spec.num_stft_frames(samples)
    valid_frames = spec.num_frames(samples)
    if valid_frames < 1:
        raise CheckpointError(f"window of {window_seconds} s is too short for one feature frame")
    encoder_frames = model.encoder.pre_encode.frames_after(feature_frames)  # type: ignore[operator]
    if encoder_frames > config.pos_emb_max_len:
        raise CheckpointError(
            f"window of {window_seconds} s gives {encoder_frames} encoder frames, more than the "
            f"{config.pos_emb_max_len} relative positions the model encodes",
            hint="choose a shorter --window",
        )
    # Long audio: windows overlapping by 2 s, merged at the seams by token identity and time.
    window = WindowSpec(samples, feature_frames, encoder_frames, overlap_seconds=DEFAULT_OVERLAP)
    components = _components(config, model, window)
    bucket_encoder(
        components,
        encoder_buckets,
        window_seconds,
        lambda s: spec.num_stft_frames(round(s * sr)),
        output_axis=2,  # encoded [1, D, T]
    )
    durations = config.durations
    decoding = DecodingSpec(
        algorithm="tdt_greedy" if config.head == "tdt" else "rnnt_greedy",
        blank_id=config.blank_id,
        vocab_size=config.vocab_size,
        max_symbols_per_frame=config.max_symbols_per_frame,
        durations=durations,
        context_size=1,
        subsampling_factor=config.subsampling_factor,
        frame_duration=config.subsampling_factor * spec.hop_length / sr,
        timestamps="nominal",
    )
    files = {
        "tokens.json": (json.dumps(tokens, ensure_ascii=False, indent=0) + "\n").encode(),
        "tokenizer.model": source.tokenizer_model,
    }
    vocab = "".join(f"{t} {i}\n" for i, t in enumerate([*tokens, "<blk>"])).encode()
    onnx_files = {
        "vocab.txt": vocab,  # onnx-asr
        "tokens.txt": vocab,  # sherpa-onnx
        "config.json": (json.dumps(_onnx_asr_config(config), indent=2) + "\n").encode(),
    }
    head = "TDT" if config.head == "tdt" else "RNN-T"
    description = (
        f"NeMo FastConformer-{head} ({config.model_class}): d_model {config.d_model}, "
        f"{config.n_layers} layers, {config.n_heads} heads, dw_striding x"
        f"{config.subsampling_factor}, {config.vocab_size} SentencePiece tokens"
        + (f", durations {list(durations)}" if durations else "")
        + "."
    )
    return BundlePlan(
        family=FAMILY,
        variant=config.variant,
        task="asr",
        sample_rate=sr,
        frontend=spec.to_dict(),
        window=window,
        components=components,
        decoding=decoding,
        tokenizer=TokenizerSpec(
            "sentencepiece", "tokens.json", "tokenizer.model", len(tokens), SPM_BOUNDARY
        ),
        tokens=tokens,
        files=files,
        onnx_files=onnx_files,
        description=description,
        extras={
            "upstream": "NVIDIA/NeMo",
            "top_k": TOP_K,
            "onnx_compatibility": (
                "The ONNX files keep NeMo's export layout and names. onnx-asr loads this "
                'directory as it is (`onnx_asr.load_model("nemo-conformer-'
                f'{config.head}", path)`: `encoder-model.onnx`, `decoder_joint-model.onnx`, '
                "`vocab.txt`, `config.json`); sherpa-onnx's NeMo transducer recognizer takes "
                "`--encoder=encoder-model.onnx --decoder=decoder.onnx --joiner=joiner.onnx "
                "--tokens=tokens.txt` (its metadata is in the encoder file)."
            ),
        },
    )


def _onnx_asr_config(config: ParakeetConfig) -> dict[str, Any]:
    return {
        "model_type": f"nemo-conformer-{config.head}",
        "features_size": config.feat_in,
        "subsampling_factor": config.subsampling_factor,
        "max_tokens_per_step": config.max_symbols_per_frame,
    }


def sherpa_metadata(config: ParakeetConfig) -> dict[str, str]:
    """What sherpa-onnx's ``OfflineTransducerNeMoModel`` reads from the encoder file: it
    takes a model for TDT when ``url`` contains ``tdt``."""
    return {
        "vocab_size": str(config.vocab_size),
        "normalize_type": "per_feature" if config.frontend.normalize else "",
        "pred_rnn_layers": str(config.pred_rnn_layers),
        "pred_hidden": str(config.pred_hidden),
        "subsampling_factor": str(config.subsampling_factor),
        "feat_dim": str(config.feat_in),
        "model_type": config.model_class,
        "version": "2",
        "model_author": "NeMo",
        "url": f"https://github.com/NVIDIA/NeMo ({config.variant})",
        "comment": "Only the transducer branch is exported (speechport)",
    }


@dataclass(frozen=True)
class _Parts:
    """What the component builders share: sizes on the window, example tensors, and the
    modules used by more than one component (the front end, the windowed encoder)."""

    config: ParakeetConfig
    model: ParakeetModel
    window: WindowSpec
    frontend: TorchLogMel
    encoder: FastConformerEncoder  # the window's position table only
    decision: Decision

    @property
    def state_shape(self) -> tuple[int, int, int]:
        return lstm_state_shape(self.config.pred_rnn_layers, self.config.pred_hidden)

    def audio(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.window.samples
        return torch.zeros(1, n), torch.tensor([n], dtype=torch.int32)

    def blank(self) -> torch.Tensor:
        return torch.tensor([[self.config.blank_id]], dtype=torch.int32)

    def zero_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(self.state_shape), torch.zeros(self.state_shape)

    def audio_inputs(self) -> tuple[TensorSpec, ...]:
        n = self.window.samples
        return (
            TensorSpec("audio", (1, n), "float32", "16 kHz mono samples, zero-padded right"),
            TensorSpec("audio_length", (1,), "int32", "valid samples"),
        )

    def logits(self) -> TensorSpec:
        return TensorSpec(
            "logits",
            (1, self.config.num_outputs),
            "float32",
            "raw: tokens + blank (blank last)"
            + (", then one per duration" if self.config.durations else ""),
        )


def _components(
    config: ParakeetConfig, model: ParakeetModel, window: WindowSpec
) -> list[ExportableComponent]:
    parts = _Parts(
        config,
        model,
        window,
        TorchLogMel(config.frontend).eval(),
        model.encoder.with_positions(window.encoder_frames),
        Decision(config.vocab_size + 1, config.durations, TOP_K).eval(),
    )
    builders = (  # in the manifest's order
        _preprocessor,
        _encoder,
        _mel_encoder,
        _decoder_step,
        _joint_step,
        _joint_decision,
        _joint_decision_single_step,
        _decoder_joint,
    )
    return [build(parts) for build in builders]


def _preprocessor(parts: _Parts) -> ExportableComponent:
    f, wf = parts.config.feat_in, parts.window.feature_frames
    audio_in = parts.audio_inputs()
    mel_out = (
        TensorSpec("mel", (1, f, wf), "float32", "normalised log-mel; zero past mel_length"),
        TensorSpec("mel_length", (1,), "int32", "valid frames"),
    )
    preprocessor = Preprocessor(parts.frontend).eval()
    return ExportableComponent(
        ComponentSpec(
            "Preprocessor",
            "preprocessor",
            "NeMo's log-mel front end, fixed window",
            audio_in,
            mel_out,
            kind="frontend",
        ),
        preprocessor,
        parts.audio(),
        _canonical_layout("Preprocessor.onnx", preprocessor, parts.audio(), audio_in, mel_out),
        coreml_precision="fp32",  # float16 overflows the power spectrum and the statistics
    )


def _encoder(parts: _Parts) -> ExportableComponent:
    config, model = parts.config, parts.model
    f, wf, we, d = (
        config.feat_in,
        parts.window.feature_frames,
        parts.window.encoder_frames,
        config.d_model,
    )
    features, feat_len = torch.zeros(1, f, wf), torch.tensor([wf - 1], dtype=torch.int32)
    onnx_encoder = EncoderStep(model.encoder, length_dtype=torch.int64).eval()
    return ExportableComponent(
        ComponentSpec(
            "Encoder",
            "encoder",
            "FastConformer encoder, fixed window",
            encoder_inputs(f, wf),
            encoder_outputs(d, we),
            kind="encoder",
        ),
        EncoderStep(parts.encoder).eval(),
        (features, feat_len),
        OnnxLayout(
            "encoder-model.onnx",
            onnx_encoder,
            (features, feat_len.to(torch.int64)),
            (
                TensorSpec(
                    "audio_signal", (1, f, wf), "float32", dynamic_axes={0: "batch", 2: "time"}
                ),
                TensorSpec("length", (1,), "int64", dynamic_axes=B),
            ),
            (
                TensorSpec(
                    "outputs", (1, d, we), "float32", dynamic_axes={0: "batch", 2: "frames"}
                ),
                TensorSpec("encoded_lengths", (1,), "int64", dynamic_axes=B),
            ),
            metadata=sherpa_metadata(config),
        ),
    )


def _mel_encoder(parts: _Parts) -> ExportableComponent:
    audio_in = parts.audio_inputs()
    enc_out = encoder_outputs(parts.config.d_model, parts.window.encoder_frames)
    mel_encoder = MelEncoder(parts.frontend, parts.encoder).eval()
    return ExportableComponent(
        ComponentSpec(
            "MelEncoder",
            "mel_encoder",
            "front end and encoder fused, fixed window",
            audio_in,
            enc_out,
            kind="frontend_encoder",
        ),
        mel_encoder,
        parts.audio(),
        _canonical_layout("MelEncoder.onnx", mel_encoder, parts.audio(), audio_in, enc_out),
        formats=("coreml",),  # ONNX has the split pair; a fused copy would double the weights
        coreml_precision="fp32",
    )


def _decoder_step(parts: _Parts) -> ExportableComponent:
    config = parts.config
    return nemo_decoder_step(
        parts.model.decoder, config.pred_rnn_layers, config.pred_hidden, config.blank_id
    )


def _joint_step(parts: _Parts) -> ExportableComponent:
    config = parts.config
    return nemo_joint_step(parts.model.joint, config.d_model, config.pred_hidden, parts.logits())


def nemo_decoder_step(
    predictor: LSTMPredictor, layers: int, hidden: int, blank_id: int
) -> ExportableComponent:
    """``DecoderStep`` with its ONNX file in NeMo's export layout (sherpa-onnx's
    ``decoder.onnx``): ``targets, target_length, input_states_1/2 -> outputs,
    prednet_lengths, output_states_1/2``."""
    state = lstm_state_shape(layers, hidden)
    blank = torch.tensor([[blank_id]], dtype=torch.int32)
    zeros = (torch.zeros(state), torch.zeros(state))
    return ExportableComponent(
        decoder_step_spec(layers, hidden),
        DecoderStep(predictor).eval(),
        (blank, *zeros),
        OnnxLayout(
            "decoder.onnx",
            NemoDecoderLayout(predictor).eval(),
            (blank, _target_length(), *zeros),
            (
                TensorSpec("targets", (1, 1), "int32", dynamic_axes=B),
                TensorSpec("input_states_1", state, "float32", dynamic_axes={1: "batch"}),
                TensorSpec("input_states_2", state, "float32", dynamic_axes={1: "batch"}),
            ),
            (
                TensorSpec("outputs", (1, hidden, 1), "float32", dynamic_axes=B),
                TensorSpec("output_states_1", state, "float32", dynamic_axes={1: "batch"}),
                TensorSpec("output_states_2", state, "float32", dynamic_axes={1: "batch"}),
            ),
            constants=(ConstantInput("target_length", "int32", [1]),),
            input_order=("targets", "target_length", "input_states_1", "input_states_2"),
            unused_outputs=(TensorSpec("prednet_lengths", (1,), "int32", dynamic_axes=B),),
            output_order=("outputs", "prednet_lengths", "output_states_1", "output_states_2"),
        ),
    )


def nemo_joint_step(joint: RNNTJoint, d: int, h: int, logits: TensorSpec) -> ExportableComponent:
    """``JointStep`` with its ONNX file in NeMo's export layout (sherpa-onnx's
    ``joiner.onnx``): ``encoder_outputs [B, D, 1], decoder_outputs [B, H, 1] -> outputs``."""
    c = logits.shape[-1]
    return ExportableComponent(
        joint_step_spec(d, h, logits),
        JointStep(joint).eval(),
        (torch.zeros(1, d), torch.zeros(1, h)),
        OnnxLayout(
            "joiner.onnx",
            NemoJointLayout(joint).eval(),
            (torch.zeros(1, d, 1), torch.zeros(1, h, 1)),
            (
                TensorSpec("encoder_outputs", (1, d, 1), "float32", dynamic_axes=B),
                TensorSpec("decoder_outputs", (1, h, 1), "float32", dynamic_axes=B),
            ),
            (TensorSpec("outputs", (1, 1, 1, c), "float32", dynamic_axes=B),),
        ),
    )


def _joint_decision(parts: _Parts) -> ExportableComponent:
    config, we = parts.config, parts.window.encoder_frames
    d, h = config.d_model, config.pred_hidden
    module = JointDecisionWindow(parts.model.joint, parts.decision).eval()
    inputs = (
        TensorSpec("encoded", (1, d, we), "float32", "the Encoder's output"),
        TensorSpec("dec_t", (1, h), "float32", "one decoder output for every frame"),
    )
    outputs = _decision_outputs(config, (we,))
    return ExportableComponent(
        ComponentSpec(
            "JointDecision",
            "joint_decision",
            "joint and greedy decision on every frame of the window, one decoder output",
            inputs,
            outputs,
            kind="joint_decision",
        ),
        module,
        (torch.zeros(1, d, we), torch.zeros(1, h)),
        _canonical_layout(
            "JointDecision.onnx",
            module,
            (torch.zeros(1, d, we), torch.zeros(1, h)),
            inputs,
            outputs,
        ),
    )


def _joint_decision_single_step(parts: _Parts) -> ExportableComponent:
    config = parts.config
    d, h = config.d_model, config.pred_hidden
    module = JointDecisionFrame(parts.model.joint, parts.decision).eval()
    inputs = joint_inputs(d, h)
    outputs = _decision_outputs(config, ())
    return ExportableComponent(
        ComponentSpec(
            "JointDecisionSingleStep",
            "joint_decision_frame",
            "joint and greedy decision on one frame",
            inputs,
            outputs,
            kind="joint_decision_frame",
        ),
        module,
        (torch.zeros(1, d), torch.zeros(1, h)),
        _canonical_layout(
            "JointDecisionSingleStep.onnx",
            module,
            (torch.zeros(1, d), torch.zeros(1, h)),
            inputs,
            outputs,
        ),
    )


def _decoder_joint(parts: _Parts) -> ExportableComponent:
    config, model, state = parts.config, parts.model, parts.state_shape
    d, c = config.d_model, config.num_outputs
    return ExportableComponent(
        ComponentSpec(
            "DecoderJoint",
            "decoder_joint",
            "one prediction step and the joint (onnx-asr's decoder_joint)",
            (TensorSpec("enc_t", (1, d), "float32"), TOKEN_INPUT, *decoder_state_inputs(state)),
            (parts.logits(), *decoder_state_outputs(state)),
            state=DECODER_STATE_PAIRS,
            kind="decoder_joint",
        ),
        DecoderJointStep(model.decoder, model.joint).eval(),
        (torch.zeros(1, d), parts.blank(), *parts.zero_state()),
        OnnxLayout(
            "decoder_joint-model.onnx",
            NemoDecoderJointLayout(model.decoder, model.joint).eval(),
            (torch.zeros(1, d, 1), parts.blank(), _target_length(), *parts.zero_state()),
            (
                TensorSpec("encoder_outputs", (1, d, 1), "float32", dynamic_axes=B),
                TensorSpec("targets", (1, 1), "int32", dynamic_axes=B),
                TensorSpec("input_states_1", state, "float32", dynamic_axes={1: "batch"}),
                TensorSpec("input_states_2", state, "float32", dynamic_axes={1: "batch"}),
            ),
            (
                TensorSpec("outputs", (1, 1, 1, c), "float32", dynamic_axes=B),
                TensorSpec("output_states_1", state, "float32", dynamic_axes={1: "batch"}),
                TensorSpec("output_states_2", state, "float32", dynamic_axes={1: "batch"}),
            ),
            constants=(ConstantInput("target_length", "int32", [1]),),
            input_order=(
                "encoder_outputs",
                "targets",
                "target_length",
                "input_states_1",
                "input_states_2",
            ),
            unused_outputs=(TensorSpec("prednet_lengths", (1,), "int32", dynamic_axes=B),),
            output_order=("outputs", "prednet_lengths", "output_states_1", "output_states_2"),
        ),
        formats=("onnx",),  # onnx-asr's layout; Core ML has the split pair
    )


def _target_length() -> torch.Tensor:
    return torch.tensor([1], dtype=torch.int32)  # NeMo's target_length


def _decision_outputs(config: ParakeetConfig, frames: tuple[int, ...]) -> tuple[TensorSpec, ...]:
    shape = (1, *frames)
    out = [
        TensorSpec("token_id", shape, "int32", "argmax over tokens + blank"),
        TensorSpec("token_prob", shape, "float32", "its softmax probability over tokens + blank"),
    ]
    if config.durations:
        out.append(TensorSpec("duration", shape, "int32", "durations[argmax of duration logits]"))
    out += [
        TensorSpec("top_k_ids", (*shape, TOP_K), "int32", "best tokens, best first"),
        TensorSpec("top_k_logits", (*shape, TOP_K), "float32", "their raw logits"),
    ]
    return tuple(out)


def _canonical_layout(
    file_name: str,
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
) -> OnnxLayout:
    """An ONNX file with the component's own names and fixed shapes."""
    return OnnxLayout(file_name, module, example_inputs, inputs, outputs)


__all__ = ["FAMILY", "FastConformerEncoder", "ParakeetCheckpoint", "plan_bundle", "sherpa_metadata"]
