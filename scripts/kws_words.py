"""The small English keyword-spotting world of ``scripts/train_kws_words.py`` and
``scripts/make_kws_eval_set.py``: the keywords, the other words spoken around and between
them, the espeak-ng voices heard in training and the voices held out for evaluation, and
the sentences made of them (synthesised with ``scripts/espeak_words.Espeak``).

A *positive* sentence holds one or two keywords among 0-3 other words on each side; a
*negative* sentence only other words. The held-out voices share neither accent nor variant
with the training voices.
"""

from __future__ import annotations

import numpy as np

KEYWORDS = (
    "HELLO COMPUTER",
    "LIGHTS ON",
    "LIGHTS OFF",
    "STOP",
    "PLAY MUSIC",
    "NEXT SONG",
    "VOLUME UP",
    "VOLUME DOWN",
    "OPEN THE DOOR",
    "GOOD MORNING",
    "WEATHER",
    "CAMERA",
    "CANCEL",
    "TIMER",
    "CALL HOME",
    "PAUSE",
    "REPEAT",
    "GO BACK",
    "TURN LEFT",
    "TURN RIGHT",
    "KITCHEN",
    "TELEVISION",
    "PICTURE",
    "ORANGE",
)
# never part of a keyword (but THE): the words of carriers and of negative sentences
OTHER_WORDS = (
    "PLEASE", "CAN", "YOU", "NOW", "AGAIN", "I", "SAID", "A", "IT", "WAS", "VERY", "NICE",
    "TODAY", "WE", "WENT", "TO", "THAT", "HOUSE", "GREEN", "RIVER", "STONE", "TABLE",
    "SUMMER", "MONEY", "SISTER", "FATHER", "BREAD", "SIMPLE", "QUIET", "DINNER", "YELLOW",
    "PAPER", "GARDEN", "SEVEN", "COLD", "WATER", "CLEAR", "STILL", "WELL", "TELL", "READ",
    "OUT", "LOUD", "BIRCH", "SMOOTH", "DARK", "BLUE", "BOOK", "CHAIR", "LITTLE", "MAYBE",
    "THINK", "ABOUT", "WHERE", "THIS", "AND", "OF", "THE",
)  # fmt: skip
TRAIN_VOICES = ("en-us", "en", "en-gb-x-rp", "en-us-nyc", "en-gb-scotland", "en-gb-x-gbclan")
TRAIN_VARIANTS = ("", "+m1", "+m2", "+m3", "+m5", "+f1", "+f2", "+f3")
HELD_OUT_VOICES = ("en-029+m4", "en-029+f4", "en-gb-x-gbcwmd+f4", "en-gb-x-gbcwmd+m6")


def _check() -> None:
    keyword_words = {w for k in KEYWORDS for w in k.split()} - {"THE"}
    assert not keyword_words & set(OTHER_WORDS), keyword_words & set(OTHER_WORDS)


_check()


def bpe_corpus() -> list[str]:
    """Text for the SentencePiece model: every keyword and word, weighted, and the
    alphabet (so that any English word can be spelt)."""
    lines = [k for k in KEYWORDS for _ in range(20)]
    lines += [w for w in OTHER_WORDS for _ in range(10)]
    lines += [" ".join("ABCDEFGHIJKLMNOPQRSTUVWXYZ")] * 3
    return lines


def others(rng: np.random.Generator, low: int, high: int) -> list[str]:
    n = int(rng.integers(low, high + 1))
    return [OTHER_WORDS[int(i)] for i in rng.integers(0, len(OTHER_WORDS), n)]


def positive(rng: np.random.Generator, keywords: list[str]) -> list[str]:
    """``keywords`` with 0-3 other words before, between and after them."""
    words = others(rng, 0, 3)
    for k in keywords:
        words += [*k.split(), *others(rng, 0, 3 if k == keywords[-1] else 2)]
    return words


def training_sentence(rng: np.random.Generator) -> list[str]:
    """A positive sentence (one keyword: 55 %, two: 10 %) or a negative one (2-6 words)."""
    draw = rng.random()
    if draw < 0.65:
        count = 1 if draw < 0.55 else 2
        chosen = [KEYWORDS[int(i)] for i in rng.choice(len(KEYWORDS), count, replace=False)]
        return positive(rng, chosen)
    return others(rng, 2, 6)


def training_voice(rng: np.random.Generator) -> tuple[str, int, int]:
    """A training voice with variant, a rate (130-210 words per minute), a pitch (30-70)."""
    voice = TRAIN_VOICES[int(rng.integers(len(TRAIN_VOICES)))]
    voice += TRAIN_VARIANTS[int(rng.integers(len(TRAIN_VARIANTS)))]
    return voice, int(rng.integers(130, 211)), int(rng.integers(30, 71))
