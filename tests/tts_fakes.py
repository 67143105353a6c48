"""A text-to-speech bundle made of numpy stand-ins for the two stages (no model, no files
but the voice packs): for testing the host loop, the speaker and the task without torch.

The fake text stage gives token ``i`` (id ``t``) the duration ``(t % 7) * 0.5 + 0.5``
divided by the speed, prosody channel 0 = the id, text channel 0 = the id + 1000; the fake
acoustic stage writes, for frame ``f``, prosody channel 0 plus the noise's harmonic 0 (x 1e-3)
plus the phase's harmonic 1, into that frame's samples, and only over the valid frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from speechport.manifest import ComponentSpec, Manifest, TensorSpec
from speechport.runtime.base import LoadedBundle
from speechport.tasks.tts_spec import TtsSpec

# Kokoro-82M's phoneme vocabulary (the fixture's config.json keeps it whole)
VOCAB: dict[str, int] = json.loads(
    (Path(__file__).parent / "data" / "tts" / "config.json").read_text(encoding="utf-8")
)["vocab"]
CP, CT, H, SPF = 6, 4, 9, 600


class FakeText:
    def __init__(self, bucket: int) -> None:
        self.spec = ComponentSpec(
            name=f"TextStage{bucket}",
            role=f"text_stage_{bucket}",
            description="fake",
            inputs=(
                TensorSpec("input_ids", (1, bucket), "int32"),
                TensorSpec("input_length", (1,), "int32"),
                TensorSpec("style", (1, 16), "float32"),
                TensorSpec("speed", (1,), "float32"),
            ),
            outputs=(
                TensorSpec("durations", (1, bucket), "float32"),
                TensorSpec("prosody", (1, bucket, CP), "float32"),
                TensorSpec("text_features", (1, CT, bucket), "float32"),
            ),
            kind="tts_text",
        )
        self.calls = 0

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        ids, length, style, speed = inputs
        self.calls += 1
        n = ids.shape[1]
        valid = np.arange(n) < int(length[0])
        durations = np.where(valid, ((ids[0] % 7) * 0.5 + 0.5) / float(speed[0]), 0.0)
        prosody = np.zeros((1, n, CP), np.float32)
        prosody[0, :, 0] = np.where(valid, ids[0], 0)
        prosody[0, :, 1] = style[0, 0]
        text = np.zeros((1, CT, n), np.float32)
        text[0, 0] = np.where(valid, ids[0] + 1000, 0)
        return durations[None].astype(np.float32), prosody, text


class FakeAcoustic:
    def __init__(self, bucket: int, random_inputs: tuple[str, ...]) -> None:
        shapes = {"noise": (1, SPF * bucket, H), "phase": (1, H)}
        self.spec = ComponentSpec(
            name=f"Acoustic{bucket}",
            role=f"acoustic_{bucket}",
            description="fake",
            inputs=(
                TensorSpec("prosody_aligned", (1, CP, bucket), "float32"),
                TensorSpec("text_aligned", (1, CT, bucket), "float32"),
                TensorSpec("frames", (1,), "int32"),
                TensorSpec("style", (1, 16), "float32"),
                *(TensorSpec(n, shapes[n], "float32") for n in random_inputs),
            ),
            outputs=(
                TensorSpec("audio", (1, SPF * bucket), "float32"),
                TensorSpec("f0", (1, 2 * bucket), "float32"),
                TensorSpec("energy", (1, 2 * bucket), "float32"),
            ),
            kind="tts_acoustic",
        )
        self.random_inputs = random_inputs
        self.last: dict[str, np.ndarray] = {}

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        named = dict(zip([t.name for t in self.spec.inputs], inputs, strict=True))
        self.last = named
        bucket = named["prosody_aligned"].shape[2]
        frames = int(named["frames"][0])
        audio = np.zeros((1, SPF * bucket), np.float32)
        per_frame = np.repeat(named["prosody_aligned"][0, 0, :frames], SPF)
        audio[0, : SPF * frames] = per_frame
        if "noise" in named:
            audio[0, : SPF * frames] += 1e-3 * named["noise"][0, : SPF * frames, 0]
        if "phase" in named:
            audio[0, : SPF * frames] += named["phase"][0, 1]
        f0 = np.zeros((1, 2 * bucket), np.float32)
        f0[0, : 2 * frames] = np.repeat(named["text_aligned"][0, 0, :frames], 2)
        return audio, f0, f0 * 0.5


def fake_bundle(
    path: Path,
    *,
    token_buckets: tuple[int, ...] = (16, 64),
    frame_buckets: tuple[int, ...] = (40, 120),
    random_inputs: tuple[str, ...] = ("noise", "phase"),
    max_phonemes: int = 62,
) -> tuple[LoadedBundle, TtsSpec]:
    path.mkdir(parents=True, exist_ok=True)
    rows = np.arange(20, dtype=np.float32)[:, None] * np.ones((1, 16), np.float32)
    np.save(path / "af_test.npy", rows)
    np.save(path / "bm_test.npy", -rows)
    spec = TtsSpec(
        vocab=VOCAB,
        voices={"af_test": "af_test.npy", "bm_test": "bm_test.npy"},
        default_voice="af_test",
        samples_per_frame=SPF,
        token_buckets=token_buckets,
        frame_buckets=frame_buckets,
        max_phonemes=max_phonemes,
        style_dim=16,
        harmonics=H,
        noise_inputs=random_inputs,
    )
    components: dict[str, FakeText | FakeAcoustic] = {}
    for n in token_buckets:
        c = FakeText(n)
        components[c.spec.role] = c
    for f in frame_buckets:
        a = FakeAcoustic(f, random_inputs)
        components[a.spec.role] = a
    manifest = Manifest(
        family="fake",
        variant="fake",
        task="tts",
        sample_rate=24000,
        frontend={},
        components={r: c.spec for r, c in components.items()},
        provenance={},
        tts=spec.to_dict(),
    )
    bundle = LoadedBundle(path, manifest, "numpy", "fake", dict(components))
    return bundle, spec
