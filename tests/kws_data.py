"""The icefall/sherpa-onnx keyword-spotting reference set in tests/data/kws (see its
PROVENANCE.md): loaders shared by the KWS tests."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

KWS = Path(__file__).parent / "data" / "kws"
ONNX_NAMES = {
    part: KWS / f"{part}-epoch-99-avg-1-chunk-16-left-64.onnx"
    for part in ("encoder", "decoder", "joiner")
}


@cache
def expected() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((KWS / "expected.json").read_text(encoding="utf-8"))
    return result


def clips() -> list[str]:
    return list(expected()["clips"])


def settings() -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = expected()["settings"]
    return result


def setting_key(setting: dict[str, Any]) -> str:
    return f"score={setting['keywords_score']},threshold={setting['keywords_threshold']}"


@cache
def clip_arrays(clip: str) -> dict[str, np.ndarray]:
    with np.load(KWS / f"{clip}.npz") as npz:
        return {k: npz[k] for k in npz.files}


def piece_ids() -> dict[str, int]:
    table = {}
    for line in (KWS / "tokens.txt").read_text(encoding="utf-8").splitlines():
        piece, index = line.split()
        table[piece] = int(index)
    return table


def raw_phrases() -> list[str]:
    lines = (KWS / "keywords_raw.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def sherpa_lines() -> list[str]:
    return (KWS / "keywords.txt").read_text(encoding="utf-8").splitlines()


def expected_icefall(clip: str, setting: dict[str, Any]) -> list[tuple[str, list[int], list[int]]]:
    hits = expected()["clips"][clip]["results"][setting_key(setting)]["icefall_keywords_search"]
    return [(h["keyword"], h["token_ids"], h["timestamps_frames"]) for h in hits]


def expected_sherpa(clip: str, setting: dict[str, Any]) -> list[tuple[str, list[int], list[int]]]:
    hits = expected()["clips"][clip]["results"][setting_key(setting)]["sherpa_onnx"]
    return [
        (
            h["keyword"],
            h["token_ids"],
            [t + h["reset_offset_frames"] for t in h["timestamps_frames_relative_to_reset"]],
        )
        for h in hits
    ]
