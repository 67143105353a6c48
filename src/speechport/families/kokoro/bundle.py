"""The bundle of a Kokoro model: a text stage per token bucket, an acoustic stage per frame
bucket, the voice packs and the ``tts`` manifest section.

Text stage ``TextStage{N}`` (kind ``tts_text``): ``input_ids`` int32 [1, N] (0, phoneme
ids, 0, zero padding), ``input_length`` int32 [1], ``style`` [1, 256], ``speed`` [1] →
``durations`` [1, N] (not rounded), ``prosody`` [1, N, Cp], ``text_features`` [1, Ct, N].
Acoustic stage ``Acoustic{F}`` (kind ``tts_acoustic``): ``prosody_aligned`` [1, Cp, F],
``text_aligned`` [1, Ct, F], ``frames`` int32 [1], ``style`` [1, 256], ``noise``
[1, 600 F, 9] → ``audio`` [1, 600 F], ``f0`` [1, 2 F], ``energy`` [1, 2 F]. The host rounds
the durations, repeats the features along time and draws the noise (pipelines/synthesis.py).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from speechport.errors import CheckpointError
from speechport.families.base import BundlePlan, ExportableComponent, LoadedCheckpoint, OnnxLayout
from speechport.families.kokoro.checkpoint import read_voice_pack
from speechport.families.kokoro.config import HARMONICS, SAMPLE_RATE, VOICE_ROWS, KokoroConfig
from speechport.families.kokoro.model import KokoroModel
from speechport.manifest import ComponentSpec, TensorSpec

FAMILY = "kokoro"
TOKEN_BUCKETS = (128, 512)
FRAME_BUCKETS = (200, 600)  # 5 s and 15 s of audio
# The G2P the phoneme strings of Kokoro's voices were made with (misaki's espeak fallback).
G2P = {"engine": "espeak-ng", "language": "en-us", "version": "1.51"}
# Core ML precision of both stages whatever --precision says; measured on the tiny fixture
# under the MIL interpreter (audio peaks ~0.1). Acoustic stage in fp16: F0 moves by 0.57 Hz
# and the harmonic source integrates F0 into its phase, so the audio drifts (median |d|
# 5.6e-3, max 0.26); keeping sin/cos/exp/floor/cumsum/div/sqrt in fp32 (op selectors)
# changed nothing, and LSTMs and norm statistics too left 4.1e-3 / 3e-2. Text stage in fp16
# (acoustic fp32): durations stay exact but its prosody features move F0 by 0.37-0.46 Hz,
# spectral convergence 0.16-0.21, log-mel 1.1-1.5 dB, which fails verify's gate. In fp32
# both match torch (audio 1.3e-5, spectral convergence 1e-2).
COREML_PRECISION = "fp32"


class TextStage(nn.Module):
    """``KokoroModel.text`` with the bundle's input and output names."""

    def __init__(self, model: KokoroModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: Tensor, input_length: Tensor, style: Tensor, speed: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        return self.model.text(input_ids, input_length, style, speed)


class AcousticStage(nn.Module):
    """``KokoroModel.acoustic`` with the bundle's input and output names."""

    def __init__(self, model: KokoroModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        prosody_aligned: Tensor,
        text_aligned: Tensor,
        frames: Tensor,
        style: Tensor,
        noise: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        return self.model.acoustic(prosody_aligned, text_aligned, frames, style, noise)


def text_component(model: KokoroModel, bucket: int) -> ExportableComponent:
    c = model.config
    if not 2 < bucket <= c.max_tokens:
        raise CheckpointError(
            f"token bucket {bucket} outside 3..{c.max_tokens} (ALBERT's positions)",
            hint="pass --token-buckets within the model's context",
        )
    inputs = (
        TensorSpec("input_ids", (1, bucket), "int32", "0, phoneme ids, 0, then zeros"),
        TensorSpec("input_length", (1,), "int32", "valid tokens, both 0 boundaries included"),
        TensorSpec("style", (1, c.voice_dim), "float32", "voice-pack row (phonemes - 1)"),
        TensorSpec("speed", (1,), "float32", "speaking rate (1 = normal)"),
    )
    outputs = (
        TensorSpec("durations", (1, bucket), "float32", "frames per token, not rounded"),
        TensorSpec("prosody", (1, bucket, c.prosody_dim), "float32"),
        TensorSpec("text_features", (1, c.hidden_dim, bucket), "float32"),
    )
    stage = TextStage(model).eval()
    ids = torch.zeros((1, bucket), dtype=torch.int32)
    ids[0, 1:9] = torch.tensor(sorted(c.vocab.values())[:8] or [1] * 8, dtype=torch.int32)
    example = (
        ids,
        torch.tensor([10], dtype=torch.int32),
        torch.zeros((1, c.voice_dim)),
        torch.ones(1),
    )
    name = f"TextStage{bucket}"
    return ExportableComponent(
        ComponentSpec(
            name,
            f"text_{bucket}",
            f"phoneme ids (up to {bucket} tokens) -> durations and per-token features",
            inputs,
            outputs,
            kind="tts_text",
        ),
        stage,
        example,
        OnnxLayout(f"text_stage_{bucket}.onnx", stage, example, inputs, outputs),
        coreml_precision=COREML_PRECISION,
    )


def acoustic_component(model: KokoroModel, bucket: int) -> ExportableComponent:
    c = model.config
    spf = c.samples_per_frame
    inputs = (
        TensorSpec("prosody_aligned", (1, c.prosody_dim, bucket), "float32"),
        TensorSpec("text_aligned", (1, c.hidden_dim, bucket), "float32"),
        TensorSpec("frames", (1,), "int32", "valid frames (the rounded durations' sum)"),
        TensorSpec("style", (1, c.voice_dim), "float32", "voice-pack row (phonemes - 1)"),
        TensorSpec(
            "noise", (1, spf * bucket, HARMONICS), "float32", "standard normal, 0 past the frames"
        ),
    )
    outputs = (
        TensorSpec("audio", (1, spf * bucket), "float32", f"{SAMPLE_RATE} Hz, 0 past the frames"),
        TensorSpec("f0", (1, 2 * bucket), "float32", "Hz, two values per frame"),
        TensorSpec("energy", (1, 2 * bucket), "float32"),
    )
    stage = AcousticStage(model).eval()
    frames = min(bucket, 8)
    example = (
        torch.zeros((1, c.prosody_dim, bucket)),
        torch.zeros((1, c.hidden_dim, bucket)),
        torch.tensor([frames], dtype=torch.int32),
        torch.zeros((1, c.voice_dim)),
        torch.zeros((1, spf * bucket, HARMONICS)),
    )
    name = f"Acoustic{bucket}"
    return ExportableComponent(
        ComponentSpec(
            name,
            f"acoustic_{bucket}",
            f"aligned features of up to {bucket} frames ({bucket * spf / SAMPLE_RATE:g} s) "
            "and noise -> audio, F0, energy",
            inputs,
            outputs,
            kind="tts_acoustic",
        ),
        stage,
        example,
        OnnxLayout(f"acoustic_{bucket}.onnx", stage, example, inputs, outputs),
        coreml_precision=COREML_PRECISION,
    )


def voice_files(voices: Path | None, config: KokoroConfig) -> dict[str, np.ndarray]:
    """Voice packs by name from a directory of ``*.pt`` (or ``*.npy``) files."""
    if voices is None:
        raise CheckpointError(
            "a Kokoro bundle needs voices", hint="pass --voices DIR (Kokoro's voices/*.pt)"
        )
    voices = Path(voices)
    if not voices.is_dir():
        raise CheckpointError(
            "not a directory of voice packs", path=voices, hint="pass --voices DIR"
        )
    files = sorted(p for p in voices.iterdir() if p.suffix in (".pt", ".npy"))
    if not files:
        raise CheckpointError("no voice packs (*.pt) in it", path=voices, hint="pass --voices DIR")
    return {p.stem: read_voice_pack(p, config) for p in files}


def tts_section(
    config: KokoroConfig,
    voices: Mapping[str, np.ndarray],
    token_buckets: Sequence[int],
    frame_buckets: Sequence[int],
    default_voice: str,
) -> dict[str, Any]:
    """The manifest's ``tts`` section (field names as speechport.tasks.tts reads them)."""
    return {
        "sample_rate": SAMPLE_RATE,
        "samples_per_frame": config.samples_per_frame,
        "token_buckets": list(token_buckets),
        "frame_buckets": list(frame_buckets),
        "max_phonemes": VOICE_ROWS,
        "style_dim": config.voice_dim,
        "harmonics": HARMONICS,
        "vocab": dict(sorted(config.vocab.items(), key=lambda kv: kv[1])),
        "voices": {name: f"voices/{name}.npy" for name in voices},
        "default_voice": default_voice,
        "g2p": dict(G2P),
        "noise_inputs": ["noise"],
    }


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _buckets(value: Any, default: tuple[int, ...], what: str) -> tuple[int, ...]:
    buckets = tuple(sorted({int(v) for v in (value or default)}))
    if not buckets or buckets[0] <= 0:
        raise CheckpointError(f"{what} must be positive integers, got {value!r}")
    return buckets


def plan_bundle(
    loaded: LoadedCheckpoint,
    *,
    voices: Path | None = None,
    token_buckets: Sequence[int] | None = None,
    frame_buckets: Sequence[int] | None = None,
    default_voice: str | None = None,
) -> BundlePlan:
    model = loaded.model
    assert isinstance(model, KokoroModel)
    config = model.config
    tokens = _buckets(token_buckets, TOKEN_BUCKETS, "--token-buckets")
    frames = _buckets(frame_buckets, FRAME_BUCKETS, "--frame-buckets")
    packs = voice_files(voices, config)
    default = default_voice or ("af_heart" if "af_heart" in packs else next(iter(packs)))
    if default not in packs:
        raise CheckpointError(
            f"default voice {default!r} is not among the voices ({', '.join(packs)})"
        )
    components = [text_component(model, n) for n in tokens]
    components += [acoustic_component(model, f) for f in frames]
    spf = config.samples_per_frame
    return BundlePlan(
        family=FAMILY,
        variant=loaded.variant,
        task="tts",
        sample_rate=SAMPLE_RATE,
        frontend={},
        components=components,
        files={f"voices/{name}.npy": _npy(pack) for name, pack in packs.items()},
        description=(
            f"Kokoro text to speech ({SAMPLE_RATE // 1000} kHz): a text stage for up to "
            f"{', '.join(str(n) for n in tokens)} tokens and an acoustic stage for up to "
            f"{', '.join(f'{f * spf / SAMPLE_RATE:g} s' for f in frames)} of audio; "
            f"{len(packs)} voices."
        ),
        tts=tts_section(config, packs, tokens, frames, default),
    )


__all__ = [
    "FAMILY",
    "FRAME_BUCKETS",
    "TOKEN_BUCKETS",
    "AcousticStage",
    "TextStage",
    "acoustic_component",
    "plan_bundle",
    "text_component",
    "tts_section",
    "voice_files",
]
