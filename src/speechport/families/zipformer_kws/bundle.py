"""The bundle of a streaming Zipformer2 keyword spotter: three components, fixed shapes,
every cache explicit.

- ``encoder`` (``Encoder``): one chunk of 45 fbank frames (hop 32) and every cache -> 8
  encoder frames already projected to joiner space, and the new caches. The 38 caches (per
  layer: attention key, non-linear attention, two values, two convolutions; the ConvNeXt
  left pad; the count of 50 Hz frames processed) are state pairs, zeros at the start.
- ``decoder`` (``Decoder``): the last two tokens (``-1``: none yet) -> decoder output in
  joiner space (stateless, so no state).
- ``joiner`` (``Joiner``): one encoder frame and one decoder output -> logits.

The ONNX files keep icefall's streaming export layout (``export-onnx-streaming.py``): the
same input and output names and order, a free batch axis, ``processed_lens`` as int64 and
the metadata sherpa-onnx reads (``model_type=zipformer2``, ``T``, ``decode_chunk_len``, ...),
with sherpa's ``tokens.txt`` beside them, so sherpa-onnx's ``KeywordSpotter`` loads them
unchanged. Core ML has no int64: there ``processed_lens`` and the tokens are int32.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from speechport.families.base import BundlePlan, ExportableComponent, LoadedCheckpoint, OnnxLayout
from speechport.families.zipformer_kws.model import ZipformerConfig, ZipformerTransducer
from speechport.features.kaldi_fbank import KaldiFbankSpec
from speechport.manifest import ComponentSpec, StatePair, TensorSpec, TokenizerSpec

FAMILY = "zipformer-kws"
SAMPLE_RATE = 16000
# sherpa-onnx's keyword spotter defaults (keywords_score, keywords_threshold,
# num_trailing_blanks, max_active_paths)
SEARCH_DEFAULTS = {
    "semantics": "sherpa",
    "boost": 1.0,
    "threshold": 0.25,
    "trailing_blanks": 1,
    "beam": 4,
}
# zeros appended at the end of input, as sherpa-onnx's examples do, so the last words reach
# a full chunk
TAIL_PADDING_SECONDS = 0.66


class StreamingEncoder(nn.Module):
    """``(x, *caches) -> (encoder_out, *new_caches)``, icefall's ONNX encoder contract."""

    def __init__(self, model: ZipformerTransducer):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        out, new_states = self.model.streaming_step(x, list(states))
        return (self.model.joiner.encoder_proj(out), *new_states)


class DecoderWithProjection(nn.Module):
    def __init__(self, model: ZipformerTransducer):
        super().__init__()
        self.model = model

    def forward(self, y: Tensor) -> Tensor:
        out: Tensor = self.model.joiner.decoder_proj(self.model.decoder(y).squeeze(1))
        return out


class JoinerOutput(nn.Module):
    def __init__(self, model: ZipformerTransducer):
        super().__init__()
        self.joiner = model.joiner

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        out: Tensor = self.joiner(encoder_out, decoder_out)
        return out


def _batch_axis(name: str) -> int:
    """The batch axis of an encoder tensor in icefall's layout."""
    if name.startswith(("cached_conv", "embed_states", "processed_lens", "x", "encoder_out")):
        return 0
    return 1


def encoder_metadata(cfg: ZipformerConfig) -> dict[str, str]:
    def join(values: tuple[int, ...]) -> str:
        return ",".join(str(v) for v in values)

    return {
        "model_type": "zipformer2",
        "version": "1",
        "model_author": "k2-fsa",
        "comment": "streaming zipformer2 (exported by speechport)",
        "decode_chunk_len": str(cfg.chunk_shift),
        "T": str(cfg.chunk_frames),
        "num_encoder_layers": join(cfg.num_encoder_layers),
        "encoder_dims": join(cfg.encoder_dim),
        "cnn_module_kernels": join(cfg.cnn_module_kernel),
        "left_context_len": join(tuple(cfg.left_context(i) for i in range(cfg.num_stacks))),
        "query_head_dims": join(cfg.query_head_dim),
        "value_head_dims": join(cfg.value_head_dim),
        "num_heads": join(cfg.num_heads),
    }


def onnx_file_names(cfg: ZipformerConfig) -> dict[str, str]:
    tail = f"chunk-{cfg.chunk_size}-left-{cfg.left_context_frames}.onnx"
    return {part: f"{part}-{tail}" for part in ("encoder", "decoder", "joiner")}


def plan_bundle(loaded: LoadedCheckpoint) -> BundlePlan:
    model = loaded.model
    assert isinstance(model, ZipformerTransducer)
    cfg = model.cfg
    names = model.state_names()
    init_int64 = model.initial_states(1, torch.int64)
    init_int32 = model.initial_states(1, torch.int32)
    files = onnx_file_names(cfg)

    def spec(name: str, value: Tensor, dtype: str, description: str = "") -> TensorSpec:
        return TensorSpec(name, tuple(value.shape), dtype, description)

    def state_specs(prefix: str, lens_dtype: str, batch: bool) -> list[TensorSpec]:
        out = []
        for name, value in zip(names, init_int32, strict=True):
            dtype = lens_dtype if name == "processed_lens" else "float32"
            t = spec(prefix + name, value, dtype)
            if batch:
                t = TensorSpec(t.name, t.shape, t.dtype, dynamic_axes={_batch_axis(name): "N"})
            out.append(t)
        return out

    x = TensorSpec(
        "x",
        (1, cfg.chunk_frames, cfg.feature_dim),
        "float32",
        f"{cfg.chunk_frames} fbank frames; consecutive chunks start {cfg.chunk_shift} apart",
    )
    enc_out = TensorSpec(
        "encoder_out",
        (1, cfg.frames_per_chunk, cfg.joiner_dim),
        "float32",
        "encoder frames (40 ms each) in joiner space (encoder_proj applied)",
    )
    pairs = tuple(StatePair(n, f"new_{n}") for n in names)
    encoder_module = StreamingEncoder(model).eval()
    example_x = torch.zeros(1, cfg.chunk_frames, cfg.feature_dim)
    encoder = ExportableComponent(
        ComponentSpec(
            "Encoder",
            "encoder",
            f"streaming Zipformer2: one chunk of {cfg.chunk_frames} fbank frames and "
            f"{len(names)} caches -> {cfg.frames_per_chunk} encoder frames and new caches",
            (x, *state_specs("", "int32", False)),
            (enc_out, *state_specs("new_", "int32", False)),
            pairs,
            kind="streaming_encoder",
        ),
        encoder_module,
        (example_x, *init_int32),
        OnnxLayout(
            files["encoder"],
            encoder_module,
            (example_x, *init_int64),
            (
                TensorSpec(x.name, x.shape, x.dtype, dynamic_axes={0: "N"}),
                *state_specs("", "int64", True),
            ),
            (
                TensorSpec(enc_out.name, enc_out.shape, enc_out.dtype, dynamic_axes={0: "N"}),
                *state_specs("new_", "int64", True),
            ),
            metadata=encoder_metadata(cfg),
        ),
    )

    decoder_module = DecoderWithProjection(model).eval()
    y = TensorSpec(
        "y", (1, cfg.context_size), "int32", "the last tokens, oldest first; -1: none yet"
    )
    dec_out = TensorSpec("decoder_out", (1, cfg.joiner_dim), "float32", "in joiner space")
    decoder = ExportableComponent(
        ComponentSpec(
            "Decoder",
            "decoder",
            f"stateless decoder over the last {cfg.context_size} tokens, decoder_proj applied",
            (y,),
            (dec_out,),
            kind="decoder_context",
        ),
        decoder_module,
        (torch.zeros(1, cfg.context_size, dtype=torch.int32),),
        OnnxLayout(
            files["decoder"],
            decoder_module,
            (torch.zeros(1, cfg.context_size, dtype=torch.int64),),
            (TensorSpec("y", y.shape, "int64", dynamic_axes={0: "N"}),),
            (TensorSpec("decoder_out", dec_out.shape, "float32", dynamic_axes={0: "N"}),),
            metadata={"context_size": str(cfg.context_size), "vocab_size": str(cfg.vocab_size)},
        ),
    )

    joiner_module = JoinerOutput(model).eval()
    enc_frame = TensorSpec("encoder_out", (1, cfg.joiner_dim), "float32", "one encoder frame")
    logit = TensorSpec("logit", (1, cfg.vocab_size), "float32", "raw logits (blank is 0)")
    joiner = ExportableComponent(
        ComponentSpec(
            "Joiner",
            "joiner",
            "joiner: tanh(encoder frame + decoder output) -> output_linear",
            (enc_frame, dec_out),
            (logit,),
            kind="joint",
        ),
        joiner_module,
        (torch.zeros(1, cfg.joiner_dim), torch.zeros(1, cfg.joiner_dim)),
        OnnxLayout(
            files["joiner"],
            joiner_module,
            (torch.zeros(1, cfg.joiner_dim), torch.zeros(1, cfg.joiner_dim)),
            tuple(
                TensorSpec(t.name, t.shape, t.dtype, dynamic_axes={0: "N"})
                for t in (enc_frame, dec_out)
            ),
            (TensorSpec("logit", logit.shape, "float32", dynamic_axes={0: "N"}),),
            metadata={"joiner_dim": str(cfg.joiner_dim)},
        ),
    )

    from speechport.families.sentencepiece import sentencepiece_pieces

    assert loaded.tokenizer_path is not None
    bpe = Path(loaded.tokenizer_path)
    pieces = sentencepiece_pieces(bpe)
    unk_id = pieces.index("<unk>") if "<unk>" in pieces else None
    sherpa_tokens = "".join(f"{p} {i}\n" for i, p in enumerate(pieces))
    return BundlePlan(
        family=FAMILY,
        variant=loaded.variant,
        task="kws",
        sample_rate=SAMPLE_RATE,
        frontend=KaldiFbankSpec(num_bins=cfg.feature_dim).to_dict(),
        components=[encoder, decoder, joiner],
        tokenizer=TokenizerSpec("sentencepiece", "tokens.json", "bpe.model", len(pieces), "\u2581"),
        tokens=pieces,
        files={
            "tokens.json": (json.dumps(pieces, ensure_ascii=False) + "\n").encode(),
            "bpe.model": bpe.read_bytes(),
        },
        onnx_files={"tokens.txt": sherpa_tokens.encode()},
        description=(
            "icefall's streaming Zipformer2 transducer (gigaspeech KWS recipe) for "
            f"open-vocabulary keyword spotting: chunk {cfg.chunk_size}, left context "
            f"{cfg.left_context_frames}, {cfg.frames_per_chunk} frames of 40 ms per chunk."
        ),
        extras={
            "kws": {
                "chunk_frames": cfg.chunk_frames,
                "chunk_shift": cfg.chunk_shift,
                "frames_per_chunk": cfg.frames_per_chunk,
                "frame_duration": 0.04,
                "blank_id": cfg.blank_id,
                "unk_id": unk_id,
                "context_size": cfg.context_size,
                "vocab_size": cfg.vocab_size,
                "tail_padding_seconds": TAIL_PADDING_SECONDS,
                "defaults": dict(SEARCH_DEFAULTS),
            },
            "upstream": "k2-fsa/icefall egs/gigaspeech/KWS/zipformer (Apache-2.0)",
            "onnx_compatibility": (
                "The ONNX files keep icefall's streaming export layout (names, order, "
                "metadata), so sherpa-onnx loads them unchanged: sherpa_onnx.KeywordSpotter("
                f"tokens='tokens.txt', encoder='{files['encoder']}', decoder="
                f"'{files['decoder']}', joiner='{files['joiner']}', keywords_file=...)."
            ),
        },
    )
