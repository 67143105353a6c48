#!/usr/bin/env python3
"""Synthesise the speech samples shipped in the repo (espeak-ng), with known word positions.

    python scripts/make_speech_samples.py

Writes
- ``samples/speech_with_pauses.wav``: English and Russian sentences separated by pauses,
  with light background noise (the README's demo input);
- ``tests/data/vad/words.wav`` + ``words.json``: single words spoken one by one, short pauses
  inside a sentence and long ones between sentences, and every word's exact sample span;
- ``tests/data/vad/noisy.wav`` + ``noisy.json``: the same words under noise at 10 dB SNR.

Every word is synthesised separately, trimmed to where its signal starts and ends, and
placed at a known offset, so the spans in the JSON files are exact. Deterministic for a
given espeak-ng version (the seed fixes pauses and noise).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parent.parent
SR = 16000

SENTENCES = [
    ("en", "Turn on the light in the kitchen"),
    ("ru", "Привет как у тебя дела"),
    ("en", "The weather is nice today"),
    ("ru", "Москва является столицей России"),
    ("en", "Please close the window before you leave"),
    ("ru", "Сегодня хорошая погода"),
]


def say(text: str, voice: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text], check=True)
        audio, rate = sf.read(path, dtype="float32")
    return soxr.resample(audio, rate, SR).astype(np.float32)


def trim(audio: np.ndarray, level: float = 1e-3) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > level)
    return audio[loud[0] : loud[-1] + 1]


def word_track(seed: int) -> tuple[np.ndarray, list[dict[str, object]]]:
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = [np.zeros(int(0.8 * SR), dtype=np.float32)]
    position = parts[0].size
    words: list[dict[str, object]] = []
    for sentence_index, (voice, sentence) in enumerate(SENTENCES):
        for k, word in enumerate(sentence.split()):
            if k:
                gap = np.zeros(int(rng.uniform(0.03, 0.09) * SR), dtype=np.float32)
                parts.append(gap)
                position += gap.size
            audio = trim(say(word, voice))
            words.append(
                {
                    "text": word,
                    "sentence": sentence_index,
                    "start": position,
                    "end": position + audio.size,
                }
            )
            parts.append(audio)
            position += audio.size
        pause = np.zeros(int(rng.uniform(0.7, 1.6) * SR), dtype=np.float32)
        parts.append(pause)
        position += pause.size
    return np.concatenate(parts), words


def add_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    speech_power = float(np.mean(audio[np.abs(audio) > 1e-3] ** 2))
    noise = rng.standard_normal(audio.size).astype(np.float32)
    noise *= np.sqrt(speech_power / 10 ** (snr_db / 10)).astype(np.float32)
    return np.clip(audio + noise, -1.0, 1.0).astype(np.float32)


def write(path: Path, audio: np.ndarray, words: list[dict[str, object]] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SR, subtype="PCM_16")
    if words is not None:
        meta = {
            "sample_rate": SR,
            "samples": int(audio.size),
            "words": words,
            "made_by": "scripts/make_speech_samples.py (espeak-ng)",
        }
        path.with_suffix(".json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))


def main() -> None:
    clean, words = word_track(seed=3)
    write(ROOT / "tests" / "data" / "vad" / "words.wav", clean, words)
    write(ROOT / "tests" / "data" / "vad" / "noisy.wav", add_noise(clean, 10.0, seed=4), words)

    rng = np.random.default_rng(5)
    parts = [np.zeros(int(0.5 * SR), dtype=np.float32)]
    for voice, sentence in SENTENCES[:4]:
        parts += [
            trim(say(sentence, voice)),
            np.zeros(int(rng.uniform(0.8, 1.5) * SR), dtype=np.float32),
        ]
    demo = add_noise(np.concatenate(parts), 30.0, seed=6)
    write(ROOT / "samples" / "speech_with_pauses.wav", demo, None)


if __name__ == "__main__":
    main()
