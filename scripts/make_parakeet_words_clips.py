"""The held-out test clips of the Parakeet words fixture: tests/data/parakeet_words/audio.

Sentences of the fixture's vocabulary (scripts/espeak_words.py) that its training never
uses (scripts/train_parakeet_words.py draws again any sentence listed here), spoken once by
libespeak-ng with a random voice, rate and pitch, resampled to 16 kHz, given 0.3 s of
silence before and after (as a recorded clip has; the model hears a sentence with almost
none around it less well) and written as 16-bit wav files with an index of their texts
and voices (``index.json``). The tests read these files and never run the TTS.

Usage: PYTHONPATH=src python scripts/make_parakeet_words_clips.py
    [--count 18] [--seed 2026] [--silence 0.3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.espeak_words import SR, Espeak, random_sentence, random_voice

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "parakeet_words"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=18)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--silence", type=float, default=0.3, help="seconds before and after")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    espeak = Espeak()
    (OUT / "audio").mkdir(parents=True, exist_ok=True)
    clips: list[dict[str, object]] = []
    seen: set[str] = set()
    while len(clips) < args.count:
        words = random_sentence(rng, 5, 9)
        text = " ".join(words)
        if text in seen:
            continue
        seen.add(text)
        voice, rate, pitch = random_voice(rng)
        spoken = espeak.say(words, voice, rate, pitch)
        name = f"audio/clip{len(clips):02d}.wav"
        silence = np.zeros(round(args.silence * SR), np.float32)
        sf.write(OUT / name, np.concatenate([silence, spoken.audio, silence]), SR, subtype="PCM_16")
        clips.append({"audio": name, "text": text, "voice": voice, "rate": rate, "pitch": pitch})
    index = {
        "tts": "libespeak-ng 1.51 (Debian), resampled to 16 kHz",
        "silence_seconds": args.silence,
        "clips": clips,
    }
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
