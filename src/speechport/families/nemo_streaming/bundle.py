"""The bundle of a cache-aware NeMo transducer: per exported lookahead, one encoder component
that takes a fixed window of mel frames and every cache as explicit state; the prediction
network step and the joint. The ONNX files keep NeMo's cache-aware export layout and the
metadata sherpa-onnx's online NeMo transducer reads (the default lookahead's encoder is
``encoder.onnx``, with ``decoder.onnx``, ``joiner.onnx`` and ``tokens.txt``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from speechport.errors import CheckpointError
from speechport.families.base import BundlePlan, ExportableComponent, LoadedCheckpoint, OnnxLayout
from speechport.families.nemo_streaming.config import (
    END_OF_BACKCHANNEL,
    END_OF_UTTERANCE,
    PRE_ENCODE_HISTORY,
    StreamingConfig,
)
from speechport.families.nemo_streaming.model import (
    DROP_EXTRA_PRE_ENCODED,
    ChunkSchedule,
    StreamingTransducer,
)
from speechport.families.parakeet.bundle import nemo_decoder_step, nemo_joint_step
from speechport.families.sentencepiece import SPM_BOUNDARY
from speechport.manifest import (
    ChunkingSpec,
    ComponentSpec,
    ConstantInput,
    DecodingSpec,
    StatePair,
    StreamingSpec,
    TensorSpec,
    TokenizerSpec,
)
from speechport.nn.streaming_conformer import StreamingFastConformer

FAMILY = "nemo-streaming"
B = {0: "batch"}


@dataclass(frozen=True)
class StreamingCheckpoint:
    """What a ``.nemo`` archive held besides the weights (``LoadedCheckpoint.config``)."""

    config: StreamingConfig
    tokens: list[str]
    tokenizer_model: bytes


class EncoderChunk(nn.Module):
    """The canonical encoder component: ``mel [1, F, W], start [1], length [1],
    cache_channel [L, 1, C, D], cache_time [L, 1, D, K-1], cache_len [1] (, prompt [1, P])
    -> encoded [1, D, n], encoded_len [1], cache_channel', cache_time', cache_len'``."""

    def __init__(self, encoder: StreamingFastConformer) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        out: tuple[Tensor, ...] = self.encoder(*inputs)
        return out


class NemoCacheEncoderLayout(nn.Module):
    """NeMo's cache-aware encoder export, as sherpa-onnx calls it: ``audio_signal [B, F, W],
    length [B] int64, cache_last_channel [B, L, C, D], cache_last_time [B, L, D, K-1],
    cache_last_channel_len [B] int64 (, prompt), start [B] int64 -> outputs [B, D, n],
    encoded_lengths, cache_last_channel_next, cache_last_time_next,
    cache_last_channel_next_len``. ``start`` (padding before the window's frames) defaults to
    0 in the file, so runtimes that do not know it run the steady-state step."""

    def __init__(self, encoder: StreamingFastConformer) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self,
        audio_signal: Tensor,
        length: Tensor,
        cache_last_channel: Tensor,
        cache_last_time: Tensor,
        cache_last_channel_len: Tensor,
        *rest: Tensor,
    ) -> tuple[Tensor, ...]:
        *prompt, start = rest
        out = self.encoder(
            audio_signal,
            start,
            length,
            cache_last_channel.transpose(0, 1),
            cache_last_time.transpose(0, 1),
            cache_last_channel_len,
            *prompt,
        )
        encoded, encoded_len, channel, time, cache_len = out
        return (
            encoded,
            encoded_len.to(torch.int64),
            channel.transpose(0, 1),
            time.transpose(0, 1),
            cache_len.to(torch.int64),
        )


def plan_bundle(
    loaded: LoadedCheckpoint, *, lookaheads: tuple[int, ...] | None = None
) -> BundlePlan:
    """Describe the bundle of a loaded streaming model exporting ``lookaheads`` (default: the
    model's first, its default; the first listed is the bundle's default)."""
    source: StreamingCheckpoint = loaded.config
    config, tokens = source.config, source.tokens
    model = loaded.model
    assert isinstance(model, StreamingTransducer)
    chosen = tuple(lookaheads) if lookaheads else config.lookaheads[:1]
    for lookahead in chosen:
        config.context_of(lookahead)  # a clear error for a lookahead the model lacks
    if len(set(chosen)) != len(chosen):
        raise CheckpointError(f"lookaheads listed twice: {list(chosen)}")
    spec = config.frontend
    sr = spec.sample_rate
    decoding = DecodingSpec(
        algorithm="rnnt_greedy",
        blank_id=config.blank_id,
        vocab_size=config.vocab_size,
        max_symbols_per_frame=config.max_symbols_per_frame,
        context_size=1,
        subsampling_factor=config.subsampling_factor,
        frame_duration=config.subsampling_factor * spec.hop_length / sr,
        timestamps="nominal",
    )
    chunkings = []
    components = []
    for i, lookahead in enumerate(chosen):
        schedule = ChunkSchedule(lookahead, config.subsampling_factor, PRE_ENCODE_HISTORY)
        role = f"encoder_la{lookahead}"
        chunkings.append(
            ChunkingSpec(
                lookahead=lookahead,
                encoder=role,
                first_frames=schedule.first,
                step_frames=schedule.step,
                history_frames=schedule.history,
                window_frames=schedule.width,
                frames_per_chunk=lookahead + 1,
            )
        )
        file_name = "encoder.onnx" if i == 0 else f"encoder-la{lookahead}.onnx"
        components.append(_encoder(config, model, schedule, role, file_name))
    components += [_decoder_step(config, model), _joint_step(config, model)]
    vocab = list(tokens)
    eou = vocab.index(END_OF_UTTERANCE) if END_OF_UTTERANCE in vocab else None
    eob = vocab.index(END_OF_BACKCHANNEL) if END_OF_BACKCHANNEL in vocab else None
    streaming = StreamingSpec(
        chunkings=tuple(chunkings),
        left_context=config.left_context,
        num_prompts=config.num_prompts,
        prompts=dict(config.prompt_dictionary),
        end_of_utterance=eou,
        end_of_backchannel=eob,
    )
    files = {
        "tokens.json": (json.dumps(tokens, ensure_ascii=False, indent=0) + "\n").encode(),
        "tokenizer.model": source.tokenizer_model,
    }
    sherpa_tokens = "".join(f"{t} {i}\n" for i, t in enumerate([*tokens, "<blk>"])).encode()
    description = (
        f"NeMo cache-aware FastConformer-RNN-T ({config.model_class}): d_model "
        f"{config.d_model}, {config.n_layers} layers, {config.n_heads} heads, causal "
        f"dw_striding x{config.subsampling_factor}, attention context [left "
        f"{config.left_context}, lookahead {', '.join(str(x) for x in chosen)}], "
        f"{config.vocab_size} SentencePiece tokens"
        + (f", {config.num_prompts} language prompts" if config.num_prompts else "")
        + (", end-of-utterance token" if eou is not None else "")
        + "."
    )
    return BundlePlan(
        family=FAMILY,
        variant=config.variant,
        task="streaming-asr",
        sample_rate=sr,
        frontend=spec.to_dict(),
        components=components,
        decoding=decoding,
        tokenizer=TokenizerSpec(
            "sentencepiece", "tokens.json", "tokenizer.model", len(tokens), SPM_BOUNDARY
        ),
        streaming=streaming,
        tokens=tokens,
        files=files,
        onnx_files={"tokens.txt": sherpa_tokens},
        description=description,
        extras={
            "upstream": "NVIDIA/NeMo",
            "onnx_compatibility": (
                "The ONNX files keep NeMo's cache-aware export layout: sherpa-onnx's online "
                "NeMo transducer loads `encoder.onnx`, `decoder.onnx`, `joiner.onnx` and "
                "`tokens.txt` as they are (its metadata is in the encoder file)."
            ),
        },
    )


def _cache_shapes(config: StreamingConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    c = config
    return (
        (c.n_layers, 1, c.left_context, c.d_model),
        (c.n_layers, 1, c.d_model, c.conv_kernel_size - 1),
    )


def _encoder(
    config: StreamingConfig,
    model: StreamingTransducer,
    schedule: ChunkSchedule,
    role: str,
    file_name: str,
) -> ExportableComponent:
    c = config
    frames = schedule.lookahead + 1
    encoder = model.encoder(schedule.lookahead, drop=DROP_EXTRA_PRE_ENCODED, max_frames=frames)
    channel, time = _cache_shapes(c)
    width = schedule.width
    inputs = [
        TensorSpec("mel", (1, c.feat_in, width), "float32", "log-mel frames of the window"),
        TensorSpec("start", (1,), "int32", "padding frames before the window's first real one"),
        TensorSpec("length", (1,), "int32", "end of the window's real frames"),
        TensorSpec("cache_channel", channel, "float32", "each layer's attention inputs"),
        TensorSpec("cache_time", time, "float32", "each layer's convolution inputs"),
        TensorSpec("cache_len", (1,), "int32", "real frames in cache_channel"),
    ]
    outputs = [
        TensorSpec("encoded", (1, c.d_model, frames), "float32", "this chunk's encoder frames"),
        TensorSpec("encoded_len", (1,), "int32", "valid frames"),
        TensorSpec("cache_channel_next", channel, "float32"),
        TensorSpec("cache_time_next", time, "float32"),
        TensorSpec("cache_len_next", (1,), "int32"),
    ]
    example: list[Tensor] = [
        torch.zeros(1, c.feat_in, width),
        torch.tensor([0], dtype=torch.int32),
        torch.tensor([width], dtype=torch.int32),
        torch.zeros(channel),
        torch.zeros(time),
        torch.tensor([0], dtype=torch.int32),
    ]
    onnx_inputs = [
        TensorSpec("audio_signal", (1, c.feat_in, width), "float32", dynamic_axes={0: "batch"}),
        TensorSpec("length", (1,), "int64", dynamic_axes=B),
        TensorSpec("cache_last_channel", _batch_first(channel), "float32", dynamic_axes=B),
        TensorSpec("cache_last_time", _batch_first(time), "float32", dynamic_axes=B),
        TensorSpec("cache_last_channel_len", (1,), "int64", dynamic_axes=B),
    ]
    if c.num_prompts:
        prompt = TensorSpec("prompt", (1, c.num_prompts), "float32", "one-hot language")
        inputs.append(prompt)
        onnx_inputs.append(prompt)
        example.append(torch.zeros(1, c.num_prompts))
    onnx_inputs.append(TensorSpec("start", (1,), "int64", dynamic_axes=B))
    canonical_order = ["mel", "start", "length", "cache_channel", "cache_time", "cache_len"]
    file_order = ["audio_signal", "start", "length", "cache_last_channel", "cache_last_time",
                  "cache_last_channel_len"]  # fmt: skip
    if c.num_prompts:
        canonical_order.append("prompt")
        file_order.append("prompt")
    # The file's tensors correspond, in the canonical order, to these:
    by_name = {t.name: t for t in onnx_inputs}
    file_inputs = tuple(by_name[n] for n in file_order)
    onnx_example = [
        example[0],
        torch.tensor([width], dtype=torch.int64),
        example[3].transpose(0, 1),
        example[4].transpose(0, 1),
        torch.tensor([0], dtype=torch.int64),
        *example[6:],
        torch.tensor([0], dtype=torch.int64),
    ]
    layout_inputs = [t.name for t in onnx_inputs]
    onnx_outputs = (
        TensorSpec("outputs", (1, c.d_model, frames), "float32", dynamic_axes=B),
        TensorSpec("encoded_lengths", (1,), "int64", dynamic_axes=B),
        TensorSpec("cache_last_channel_next", _batch_first(channel), "float32", dynamic_axes=B),
        TensorSpec("cache_last_time_next", _batch_first(time), "float32", dynamic_axes=B),
        TensorSpec("cache_last_channel_next_len", (1,), "int64", dynamic_axes=B),
    )
    spec = ComponentSpec(
        f"EncoderLookahead{schedule.lookahead}",
        role,
        f"cache-aware encoder, one chunk (lookahead {schedule.lookahead}: "
        f"{schedule.step} mel frames per chunk after a first of {schedule.first})",
        tuple(inputs),
        tuple(outputs),
        state=(
            StatePair("cache_channel", "cache_channel_next"),
            StatePair("cache_time", "cache_time_next"),
            StatePair("cache_len", "cache_len_next"),
        ),
        kind="streaming_encoder",
    )
    return ExportableComponent(
        spec,
        EncoderChunk(encoder).eval(),
        tuple(example),
        OnnxLayout(
            file_name,
            NemoCacheEncoderLayout(encoder).eval(),
            tuple(onnx_example),
            file_inputs,
            onnx_outputs,
            input_order=tuple(layout_inputs),
            metadata=sherpa_metadata(config, schedule),
            defaults=(ConstantInput("start", "int64", [0]),),
        ),
    )


def _batch_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[1], shape[0], *shape[2:])


def sherpa_metadata(config: StreamingConfig, schedule: ChunkSchedule) -> dict[str, str]:
    """What sherpa-onnx's online NeMo transducer reads from the encoder file."""
    c = config
    channel, time = _cache_shapes(c)
    return {
        "vocab_size": str(c.vocab_size),
        "window_size": str(schedule.width),
        "chunk_shift": str(schedule.step),
        "subsampling_factor": str(c.subsampling_factor),
        "normalize_type": "NA",
        "pred_rnn_layers": str(c.pred_rnn_layers),
        "pred_hidden": str(c.pred_hidden),
        "cache_last_channel_dim1": str(channel[0]),
        "cache_last_channel_dim2": str(channel[2]),
        "cache_last_channel_dim3": str(channel[3]),
        "cache_last_time_dim1": str(time[0]),
        "cache_last_time_dim2": str(time[2]),
        "cache_last_time_dim3": str(time[3]),
        "model_type": c.model_class,
        "version": "1",
        "feat_dim": str(c.feat_in),
        "att_context_size": f"[{c.left_context}, {schedule.lookahead}]",
        "model_author": "NeMo",
        "comment": "exported by speechport",
    }


def _decoder_step(config: StreamingConfig, model: StreamingTransducer) -> ExportableComponent:
    c = config
    return nemo_decoder_step(model.decoder, c.pred_rnn_layers, c.pred_hidden, c.blank_id)


def _joint_step(config: StreamingConfig, model: StreamingTransducer) -> ExportableComponent:
    d, h, v = config.d_model, config.pred_hidden, config.vocab_size + 1
    logits = TensorSpec("logits", (1, v), "float32", "raw: tokens + blank (blank last)")
    return nemo_joint_step(model.joint, d, h, logits)
