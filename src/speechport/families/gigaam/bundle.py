"""The bundle of a GigaAM model: components with fixed shapes, tokenizer and the files that
upstream's and onnx-asr's ONNX runtimes expect beside the ONNX files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from speechport.errors import CheckpointError
from speechport.families.base import (
    BundlePlan,
    ExportableComponent,
    LoadedCheckpoint,
    OnnxLayout,
)
from speechport.families.encoder_buckets import bucket_encoder
from speechport.families.gigaam.config import GigaAMConfig
from speechport.families.gigaam.model import (
    EncoderCTC,
    GigaAMASR,
    RNNTHead,
    UpstreamJointLayout,
    windowed_encoder,
)
from speechport.families.sentencepiece import SPM_BOUNDARY, sentencepiece_pieces
from speechport.families.transducer_specs import (
    decoder_step_spec,
    encoder_inputs,
    encoder_outputs,
    joint_step_spec,
    lstm_state_shape,
)
from speechport.manifest import (
    ComponentSpec,
    DecodingSpec,
    TensorSpec,
    TokenizerSpec,
    WindowSpec,
)
from speechport.nn.ctc import CTCHead
from speechport.nn.subsampling import Conv1dSubsampling
from speechport.nn.transducer import DecoderStep, EncoderStep, JointStep

FAMILY = "gigaam"


def _upstream_model_type(model_name: str) -> str:
    """``v3_e2e_rnnt`` -> ``gigaam-v3-e2e-rnnt`` (onnx-asr's model_type names)."""
    return "gigaam-" + model_name.replace("_", "-")


def plan_bundle(
    loaded: LoadedCheckpoint,
    *,
    window_seconds: float,
    encoder_buckets: Sequence[float] | None = None,
) -> BundlePlan:
    """Describe the bundle of a loaded GigaAM checkpoint for a window of ``window_seconds``,
    its Core ML encoder taking the lengths of ``encoder_buckets`` seconds (see
    ``speechport.families.encoder_buckets``; default 5, 10, 15 s and the window)."""
    config: GigaAMConfig = loaded.config
    model = loaded.model
    assert isinstance(model, GigaAMASR)
    spec = config.frontend
    sr = spec.sample_rate
    window_samples = round(window_seconds * sr)
    feature_frames = spec.num_frames(window_samples)
    if feature_frames < 1:
        raise CheckpointError(f"window of {window_seconds} s is too short for one feature frame")
    subsampling = model.encoder.pre_encode
    assert isinstance(subsampling, Conv1dSubsampling)
    encoder_frames = subsampling.frames_after(feature_frames)
    if encoder_frames > config.pos_emb_max_len:
        raise CheckpointError(
            f"window of {window_seconds} s gives {encoder_frames} encoder frames, more than the "
            f"{config.pos_emb_max_len} positions the model encodes",
            hint="choose a shorter --window",
        )
    window = WindowSpec(window_samples, feature_frames, encoder_frames)
    components = _components(config, model, window)
    bucket_encoder(
        components,
        encoder_buckets,
        window_seconds,
        lambda s: spec.num_frames(round(s * sr)),
        output_axis=2 if config.head == "rnnt" else 1,  # encoded [1, D, T], log_probs [1, T, C]
    )
    tokens, tokenizer_spec, files, onnx_files = _tokenizer_files(config, loaded.tokenizer_path)
    onnx_files.update(_upstream_onnx_files(config, tokens))
    decoding = DecodingSpec(
        algorithm="rnnt_greedy" if config.head == "rnnt" else "ctc_greedy",
        blank_id=config.blank_id,
        vocab_size=config.num_classes - 1,
        max_symbols_per_frame=config.max_symbols_per_frame,
        context_size=1,
        subsampling_factor=config.subsampling_factor,
        frame_duration=config.subsampling_factor * spec.hop_length / sr,
        timestamps="stretch",
    )
    description = (
        f"GigaAM {config.model_name}: Conformer encoder (d_model {config.d_model}, "
        f"{config.n_layers} layers, {config.n_heads} heads) with "
        + ("an RNN-T head" if config.head == "rnnt" else "a CTC head")
        + (
            "; SentencePiece tokens, punctuated text"
            if "e2e" in config.model_name
            else "; Russian alphabet"
        )
        + "."
    )
    return BundlePlan(
        family=FAMILY,
        variant=config.model_name,
        task="asr",
        sample_rate=sr,
        frontend=spec.to_dict(),
        window=window,
        components=components,
        decoding=decoding,
        tokenizer=tokenizer_spec,
        tokens=tokens,
        files=files,
        onnx_files=onnx_files,
        description=description,
        extras={
            "upstream": "salute-developers/GigaAM",
            "language": "ru",
            "onnx_compatibility": (
                "The ONNX files keep GigaAM's own export layout (file and tensor names, "
                "log-softmax joint, `config.json` and the `<blk>`-last vocab file), so "
                "runtimes written for it load this directory as it is: onnx-asr "
                '(`onnx_asr.load_model("gigaam-v3-...", path)`), and GigaAM\'s own '
                "`load_onnx(dir, variant)` with the `<variant>.yaml` here (its "
                "`decoding.model_path` is `tokenizer.model`, relative to the working "
                "directory, as upstream writes it)."
            ),
        },
    )


def _components(
    config: GigaAMConfig, model: GigaAMASR, window: WindowSpec
) -> list[ExportableComponent]:
    f, wf, we = config.feat_in, window.feature_frames, window.encoder_frames
    c = config.num_classes
    features = torch.zeros(1, f, wf)
    example_len32 = torch.tensor([wf], dtype=torch.int32)
    example_len64 = torch.tensor([wf], dtype=torch.int64)
    name = config.model_name
    enc_in = encoder_inputs(f, wf)
    windowed = windowed_encoder(model.encoder, we)  # Core ML: tables for the window only
    if config.head == "ctc":
        assert isinstance(model.head, CTCHead)
        module = EncoderCTC(windowed, model.head).eval()
        outputs = (
            TensorSpec("log_probs", (1, we, c), "float32", "log-softmax over tokens + blank"),
            TensorSpec("encoded_len", (1,), "int32", "valid frames (integer ops)"),
        )
        spec = ComponentSpec(
            "Encoder",
            "encoder",
            "Conformer encoder and CTC head, fixed window",
            enc_in,
            outputs,
            kind="encoder",
        )
        onnx = OnnxLayout(
            f"{name}.onnx",
            EncoderCTC(model.encoder, model.head).eval(),
            (features, example_len64),
            (
                TensorSpec(
                    "features", (1, f, wf), "float32", dynamic_axes={0: "batch_size", 2: "seq_len"}
                ),
                TensorSpec("feature_lengths", (1,), "int64", dynamic_axes={0: "batch_size"}),
            ),
            (
                TensorSpec(
                    "log_probs", (1, we, c), "float32", dynamic_axes={0: "batch_size", 1: "seq_len"}
                ),
                TensorSpec("encoded_lengths", (1,), "int32", dynamic_axes={0: "batch_size"}),
            ),
        )
        return [ExportableComponent(spec, module, (features, example_len32), onnx)]

    assert isinstance(model.head, RNNTHead)
    d, h, layers = config.d_model, config.pred_hidden, config.pred_rnn_layers
    encoder = EncoderStep(model.encoder).eval()
    enc_out = encoder_outputs(d, we)
    enc_component = ExportableComponent(
        ComponentSpec(
            "Encoder", "encoder", "Conformer encoder, fixed window", enc_in, enc_out, kind="encoder"
        ),
        EncoderStep(windowed).eval(),
        (features, example_len32),
        OnnxLayout(
            f"{name}_encoder.onnx",
            encoder,
            (features, example_len64),
            (
                TensorSpec(
                    "audio_signal",
                    (1, f, wf),
                    "float32",
                    dynamic_axes={0: "batch_size", 2: "seq_len"},
                ),
                TensorSpec("length", (1,), "int64", dynamic_axes={0: "batch_size"}),
            ),
            (
                TensorSpec(
                    "encoded", (1, d, we), "float32", dynamic_axes={0: "batch_size", 2: "seq_len"}
                ),
                TensorSpec("encoded_len", (1,), "int32", dynamic_axes={0: "batch_size"}),
            ),
        ),
    )
    predictor = model.head.decoder
    state_shape = lstm_state_shape(layers, h)
    dec_component = ExportableComponent(
        decoder_step_spec(layers, h),
        DecoderStep(predictor).eval(),
        (
            torch.tensor([[config.blank_id]], dtype=torch.int32),
            torch.zeros(state_shape),
            torch.zeros(state_shape),
        ),
        OnnxLayout(
            f"{name}_decoder.onnx",
            predictor,
            (
                torch.tensor([[config.blank_id]], dtype=torch.int64),
                torch.zeros(state_shape),
                torch.zeros(state_shape),
            ),
            (
                TensorSpec("x", (1, 1), "int64", dynamic_axes={0: "batch_size"}),
                TensorSpec("h.1", state_shape, "float32", dynamic_axes={1: "batch_size"}),
                TensorSpec("c.1", state_shape, "float32", dynamic_axes={1: "batch_size"}),
            ),
            (
                TensorSpec("dec", (1, 1, h), "float32", dynamic_axes={0: "batch_size"}),
                TensorSpec("h", state_shape, "float32", dynamic_axes={1: "batch_size"}),
                TensorSpec("c", state_shape, "float32", dynamic_axes={1: "batch_size"}),
            ),
        ),
    )
    joint = model.head.joint
    joint_component = ExportableComponent(
        joint_step_spec(
            d, h, TensorSpec("logits", (1, c), "float32", "tokens + blank (blank last)")
        ),
        JointStep(joint).eval(),
        (torch.zeros(1, d), torch.zeros(1, h)),
        OnnxLayout(
            f"{name}_joint.onnx",
            UpstreamJointLayout(joint).eval(),
            (torch.zeros(1, d, 1), torch.zeros(1, h, 1)),
            (
                TensorSpec("enc", (1, d, 1), "float32", dynamic_axes={0: "batch_size"}),
                TensorSpec("dec", (1, h, 1), "float32", dynamic_axes={0: "batch_size"}),
            ),
            (
                TensorSpec(
                    "joint",
                    (1, 1, 1, c),
                    "float32",
                    "log-softmax of the logits (upstream's ONNX layout; same argmax)",
                    dynamic_axes={0: "batch_size"},
                ),
            ),
        ),
    )
    return [enc_component, dec_component, joint_component]


def _tokenizer_files(
    config: GigaAMConfig, tokenizer_path: Path | None
) -> tuple[list[str], TokenizerSpec, dict[str, bytes], dict[str, bytes]]:
    files: dict[str, bytes] = {}
    onnx_files: dict[str, bytes] = {}
    if config.vocabulary is not None:
        tokens = list(config.vocabulary)
        spec = TokenizerSpec("chars", "tokens.json", None, len(tokens), " ")
        vocab_name = f"{config.model_name.split('_')[0]}_vocab.txt"  # upstream: v3_vocab.txt
    else:
        assert tokenizer_path is not None
        tokens = sentencepiece_pieces(tokenizer_path)
        files["tokenizer.model"] = tokenizer_path.read_bytes()
        spec = TokenizerSpec(
            "sentencepiece", "tokens.json", "tokenizer.model", len(tokens), SPM_BOUNDARY
        )
        vocab_name = f"{config.model_name}_vocab.txt"
    files["tokens.json"] = (json.dumps(tokens, ensure_ascii=False, indent=0) + "\n").encode()
    vocab = [t.replace(" ", SPM_BOUNDARY) for t in tokens] + ["<blk>"]
    onnx_files[vocab_name] = "".join(f"{t} {i}\n" for i, t in enumerate(vocab)).encode()
    return tokens, spec, files, onnx_files


def _upstream_onnx_files(config: GigaAMConfig, tokens: list[str]) -> dict[str, bytes]:
    """``config.json`` as onnx-asr reads it, and the upstream model config as GigaAM's own
    ``load_onnx`` reads it (``<variant>.yaml``)."""
    runtime_config = {
        "model_type": _upstream_model_type(config.model_name),
        "version": config.model_name.split("_")[0],
        "features_size": config.feat_in,
        "subsampling_factor": config.subsampling_factor,
        "max_tokens_per_step": config.max_symbols_per_frame,
    }
    import yaml

    upstream_cfg = dict(config.upstream)
    upstream_cfg["model_name"] = config.model_name
    if config.vocabulary is None:
        upstream_cfg["decoding"] = {
            **upstream_cfg.get("decoding", {}),
            "model_path": "tokenizer.model",
        }
    return {
        "config.json": (json.dumps(runtime_config, indent=2) + "\n").encode(),
        f"{config.model_name}.yaml": yaml.safe_dump(
            upstream_cfg, allow_unicode=True, sort_keys=False
        ).encode(),
    }
