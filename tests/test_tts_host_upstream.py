"""The host's share of synthesis against upstream kokoro's own numbers (tests/data/tts, made
by upstream ``KModel``): rounding of durations, the voice row, token ids, the random phase,
and the G2P's phonemes all inside Kokoro's vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechport.pipelines.synthesis import frames_per_token, random_inputs, style_row
from speechport.text.phonemes import encode_phonemes
from tests.test_text_frontend import GOLDEN

DATA = Path(__file__).parent / "data" / "tts"
SENTENCES = ("short", "fox", "fast", "long")
VOCAB: dict[str, int] = json.loads((DATA / "config.json").read_text(encoding="utf-8"))["vocab"]


@pytest.mark.parametrize("name", SENTENCES)
def test_rounding_matches_upstream(name: str) -> None:
    ref = np.load(DATA / f"{name}.npz")
    length = ref["input_ids"].shape[1]
    got = frames_per_token(ref["durations_raw"], length)
    np.testing.assert_array_equal(got, ref["durations"][0])
    assert int(got.sum()) * 600 == ref["audio"].shape[1]


@pytest.mark.parametrize("name", SENTENCES)
def test_token_ids_and_phase_match_upstream(name: str) -> None:
    ref = np.load(DATA / f"{name}.npz")
    phonemes = str(ref["phonemes"])
    assert encode_phonemes(phonemes, VOCAB) == ref["input_ids"][0, 1:-1].tolist()
    frames = int(ref["durations"].sum())
    drawn = random_inputs(
        ("noise", "phase"),
        seed=int(ref["seed"]),
        frames=frames,
        bucket=600,
        samples_per_frame=600,
        harmonics=9,
    )
    # upstream zeroes harmonic 0's phase itself; the host hands it over already zeroed
    np.testing.assert_array_equal(drawn["phase"][:, 1:], ref["phase"][:, 1:])
    assert drawn["phase"][0, 0] == 0.0


@pytest.mark.parametrize("name", SENTENCES)
def test_voice_row_is_upstreams(name: str) -> None:
    torch = pytest.importorskip("torch")
    ref = np.load(DATA / f"{name}.npz")
    pack = torch.load(DATA / "voices" / f"{ref['voice']}.pt", weights_only=True).numpy()
    pack = pack.reshape(pack.shape[0], -1)
    phonemes = str(ref["phonemes"])
    assert int(ref["style_row"]) == len(phonemes) - 1
    np.testing.assert_array_equal(style_row(pack, len(phonemes)), ref["style"])
    # the row kokoro-onnx / sherpa-onnx pick is another one
    assert not np.array_equal(style_row(pack, len(phonemes) + 1), ref["style"])


def test_golden_phonemes_are_in_kokoros_vocabulary() -> None:
    for phonemes in GOLDEN.values():
        assert {c for c in phonemes if c not in VOCAB} == set(), phonemes
