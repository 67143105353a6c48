"""Kokoro-82M (hexgrad/Kokoro-82M, StyleTTS2 + iSTFTNet), 24 kHz text to speech.

A checkpoint (``kokoro-v1_0.pth``) and its ``config.json`` are read as data; voice packs
(``voices/*.pt``) too. The model is split into a text stage (token buckets) and an acoustic
stage (frame buckets) with explicit lengths and the SineGen noise as an input, so that a
fixed-shape export gives upstream's audio for any text that fits the bucket.
"""

from __future__ import annotations

from pathlib import Path

import torch

from speechport.errors import CheckpointError
from speechport.families.base import LoadedCheckpoint, load_weights
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


def random_kokoro(config: KokoroConfig, *, seed: int = 0) -> KokoroModel:
    """The architecture with seeded random weights (benchmarks; no checkpoint)."""
    torch.manual_seed(seed)
    return KokoroModel(config).eval()


__all__ = ["FAMILY", "CheckpointError", "load_kokoro", "random_kokoro"]
