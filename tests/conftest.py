"""Shared fixtures: the upstream GigaAM reference data and bundles converted once per run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

DATA = Path(__file__).parent / "data"
GIGAAM = DATA / "gigaam"
VARIANTS = ("v3_e2e_rnnt", "v3_rnnt", "v3_e2e_ctc", "v3_ctc")
CLIPS = (0, 1, 2, 3)


@dataclass(frozen=True)
class Clip:
    """One upstream reference: the audio, upstream's tensors and its transcript."""

    variant: str
    index: int
    audio: np.ndarray
    npz: dict[str, np.ndarray]
    expected: dict[str, Any]


def gigaam_index() -> dict[str, Any]:
    index: dict[str, Any] = json.loads((GIGAAM / "index.json").read_text(encoding="utf-8"))
    return index


def gigaam_clip(variant: str, index: int) -> Clip:
    entry = gigaam_index()["variants"][variant]["clips"][index]
    audio, rate = sf.read(GIGAAM / entry["audio"], dtype="float32")
    assert rate == 16000
    with np.load(GIGAAM / entry["reference_npz"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Clip(variant, index, audio, arrays, entry)


def checkpoint(variant: str) -> Path:
    return GIGAAM / f"{variant}.ckpt"


def tokenizer_for(variant: str) -> Path | None:
    return GIGAAM / "tokenizer.model" if "e2e" in variant else None


def convert_gigaam_variants(root: Path, **options: Any) -> dict[str, Path]:
    """Every v3 variant converted into ``root/<variant>`` with ``options`` for convert."""
    from speechport.conversion import convert

    out = {}
    for variant in VARIANTS:
        out[variant] = root / variant
        convert(
            "gigaam",
            checkpoint(variant),
            out[variant],
            tokenizer=tokenizer_for(variant),
            quiet=True,
            **options,
        )
    return out


@pytest.fixture(scope="session")
def gigaam_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every v3 variant converted to Core ML (fp16) and ONNX, once per test session."""
    return convert_gigaam_variants(tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="session")
def vad_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silero VAD from the installed silero-vad package, Core ML and ONNX."""
    from speechport.conversion import convert

    pytest.importorskip("silero_vad")
    out = tmp_path_factory.mktemp("vad") / "silero"
    convert("silero-vad", None, out, quiet=True)
    return out
