"""The held-out evaluation set of the trained keyword spotter (tests/data/kws_trained/eval):
espeak-ng speech by voices that training never heard (``kws_words.HELD_OUT_VOICES``: accents
and variants both unheard), 16 kHz 16-bit FLAC, ``set.jsonl`` for ``speechport eval kws`` and
``keywords.txt``, the 24 keywords one per line.

- positives: every keyword twice, two keywords per utterance in a carrier of 0-2 other words
  around them;
- negatives: 3-6 words of the training's other words and of words never heard in training
  (some close to a keyword: LIGHT, MORNING), no keyword.

Each utterance is spoken at 150-190 words per minute, pitch 35-65, gain 0.8, with 0.2 s of
silence before and after. Deterministic for a seed (numpy's default_rng).

``--rounds R`` speaks every keyword ``2 R`` times and ``--negatives N`` makes N negatives (the
defaults, 1 and 12, make the 36 utterances of tests/data/kws_trained/eval); a larger set
(``--rounds 4 --negatives 48 --seed 11``: 144 utterances) is what an agreement claim of
99 % between two forms of the model needs.

Usage: PYTHONPATH=src python scripts/make_kws_eval_set.py OUT_DIR [--seed 7] [--rounds 1]
       [--negatives 12]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.espeak_words import SR, Espeak
from scripts.kws_words import HELD_OUT_VOICES, KEYWORDS, OTHER_WORDS

UNHEARD_WORDS = ("MOUNTAIN", "COFFEE", "YESTERDAY", "BROTHER", "LIGHT", "MORNING", "SUNDAY")


def carrier(rng: np.random.Generator, keywords: list[str]) -> list[str]:
    def some(high: int) -> list[str]:
        return [
            OTHER_WORDS[int(i)]
            for i in rng.integers(0, len(OTHER_WORDS), rng.integers(0, high + 1))
        ]

    words = some(2)
    for k in keywords:
        words += [*k.split(), *some(1 if k == keywords[0] else 2)]
    return words


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=1, help="every keyword 2*R times")
    parser.add_argument("--negatives", type=int, default=12, help="utterances without keywords")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    espeak = Espeak()
    args.out.mkdir(parents=True, exist_ok=True)
    # every keyword twice per round; pairs of different keywords
    order = [
        KEYWORDS[int(i)] for _ in range(2 * args.rounds) for i in rng.permutation(len(KEYWORDS))
    ]
    pairs = [order[i : i + 2] for i in range(0, len(order), 2)]
    for i, pair in enumerate(pairs):  # a pair of the same keyword: swap with the next one
        if pair[0] == pair[1] and i + 1 < len(pairs):
            pair[1], pairs[i + 1][1] = pairs[i + 1][1], pair[1]
    pool = (*OTHER_WORDS, *UNHEARD_WORDS)
    sentences = [("pos", carrier(rng, p), p) for p in pairs]
    sentences += [
        ("neg", [pool[int(j)] for j in rng.integers(0, len(pool), rng.integers(3, 7))], [])
        for _ in range(args.negatives)
    ]
    width = max(2, len(str(len(sentences))))
    lines = []
    counts = {"pos": 0, "neg": 0}
    for n, (kind, words, spoken) in enumerate(sentences):
        counts[kind] += 1
        voice = HELD_OUT_VOICES[n % len(HELD_OUT_VOICES)]
        rate, pitch = int(rng.integers(150, 191)), int(rng.integers(35, 66))
        audio = espeak.say(words, voice, rate, pitch).audio * np.float32(0.8)
        pad = np.zeros(int(0.2 * SR), np.float32)
        name = f"{kind}_{counts[kind]:0{width}d}.flac"
        sf.write(args.out / name, np.concatenate([pad, audio, pad]), SR, subtype="PCM_16")
        lines.append(
            {
                "audio": name,
                "keywords": list(spoken),
                "text": " ".join(words),
                "voice": voice,
                "rate": rate,
                "pitch": pitch,
            }
        )
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (args.out / "set.jsonl").write_text(text, encoding="utf-8")
    keywords = "".join(k + "\n" for k in KEYWORDS)  # the list searched for, one per line
    (args.out / "keywords.txt").write_text(keywords, encoding="utf-8")
    print(f"wrote {len(lines)} utterances to {args.out}")


if __name__ == "__main__":
    main()
