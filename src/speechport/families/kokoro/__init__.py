"""Kokoro-82M (hexgrad/Kokoro-82M, StyleTTS2 + iSTFTNet), 24 kHz text to speech.

A checkpoint (``kokoro-v1_0.pth``) and its ``config.json`` are read as data; voice packs
(``voices/*.pt``) too. The model is split into a text stage (token buckets) and an acoustic
stage (frame buckets) with explicit lengths and the SineGen noise as an input, so that a
fixed-shape export gives upstream's audio for any text that fits the bucket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from speechport.errors import CheckpointError
from speechport.families.base import BundlePlan, LoadedCheckpoint, load_weights
from speechport.families.kokoro.checkpoint import check_weights_fit, read_state_dict
from speechport.families.kokoro.config import KokoroConfig, read_config
from speechport.families.kokoro.model import KokoroModel
from speechport.fsutil import sha256_file

FAMILY = "kokoro"


def load_kokoro(checkpoint: Path, config_path: Path) -> LoadedCheckpoint:
    """A Kokoro checkpoint loaded into speechport's modules (eval, fp32)."""
    config = read_config(config_path)
    weights = read_state_dict(checkpoint)
    model = KokoroModel(config)
    check_weights_fit(weights, model.state_dict(), checkpoint)
    load_weights(
        model,
        weights,
        source=checkpoint,
        architecture="the Kokoro architecture its config describes",
        hint="pass the config.json that belongs to this checkpoint",
    )
    model.eval()
    return LoadedCheckpoint(
        family=FAMILY,
        variant=checkpoint.stem,
        model=model,
        config=config,
        checkpoint=checkpoint,
        tokenizer_path=None,
        checkpoint_sha256=sha256_file(checkpoint),
    )


class KokoroFamily:
    """Family ``kokoro``: a checkpoint, its config.json and a directory of voice packs."""

    name = FAMILY

    def load(self, checkpoint: Path | None, *, tokenizer: Path | None = None) -> LoadedCheckpoint:
        """``tokenizer`` is Kokoro's ``config.json`` (its phoneme vocabulary and sizes;
        ``convert --config``); by default the one beside the checkpoint."""
        if checkpoint is None:
            raise CheckpointError(
                "Kokoro has no default weights",
                hint="pass --checkpoint kokoro-v1_0.pth (hexgrad/Kokoro-82M)",
            )
        checkpoint = Path(checkpoint)
        config = Path(tokenizer) if tokenizer is not None else checkpoint.with_name("config.json")
        return load_kokoro(checkpoint, config)

    def plan(
        self, loaded: LoadedCheckpoint, *, window_seconds: float | None = None, **options: Any
    ) -> BundlePlan:
        from speechport.families.kokoro.bundle import plan_bundle

        if window_seconds is not None:
            raise CheckpointError(
                "a Kokoro bundle has frame buckets, not a window",
                hint="leave --window out; pass --frame-buckets",
            )
        unknown = sorted(set(options) - {"voices", "token_buckets", "frame_buckets"})
        if unknown:
            raise CheckpointError(
                f"the kokoro family takes no option {', '.join(unknown)}",
                hint="its options: --voices, --token-buckets, --frame-buckets",
            )
        voices = options.get("voices")
        if voices is None:
            beside = loaded.checkpoint.with_name("voices")
            voices = beside if beside.is_dir() else None
        return plan_bundle(
            loaded,
            voices=None if voices is None else Path(voices),
            token_buckets=options.get("token_buckets"),
            frame_buckets=options.get("frame_buckets"),
        )


def random_kokoro(config: KokoroConfig, *, seed: int = 0) -> KokoroModel:
    """The architecture with seeded random weights (benchmarks; no checkpoint)."""
    torch.manual_seed(seed)
    return KokoroModel(config).eval()


__all__ = ["FAMILY", "KokoroFamily", "load_kokoro", "random_kokoro"]
