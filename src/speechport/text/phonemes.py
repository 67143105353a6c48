"""Kokoro's phoneme alphabet: espeak-ng's IPA mapped the way upstream's espeak path maps it
(misaki's English espeak fallback, American English), punctuation kept as phonemes, and
phoneme strings encoded as the model's token ids.

Upstream's mapping, restated: tied diphthongs and affricates become single letters
(``a^ɪ`` -> ``I``, ``a^ʊ`` -> ``W``, ``e^ɪ`` -> ``A``, ``ɔ^ɪ`` -> ``Y``, ``o^ʊ`` -> ``O``,
``d^ʒ`` -> ``ʤ``, ``t^ʃ`` -> ``ʧ``), rhotic and rare vowels are respelled (``ɚ`` -> ``əɹ``,
``ɜː`` -> ``ɜɹ``, ``ɐ`` -> ``ə``), syllabic consonants get a schwa before them
(``n̩`` -> ``ᵊn``), length marks and remaining ties are dropped, the flap and glottal stop
become ``T`` and ``t`` (the 1.0 vocabulary), and ``o`` becomes ``ɔ`` (espeak-ng < 1.52).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from speechport.errors import SpeechportError
from speechport.text.espeak import TIE, Espeak
from speechport.text.normalize import normalize_text


class PhonemeError(SpeechportError):
    """Text or phonemes that cannot be spoken: empty, nothing speakable, unknown phonemes."""


# Applied longest first, as upstream does; then the American-English rewrites in order.
_REPLACEMENTS: dict[str, str] = {
    "ʔˌn\u0329": "ʔn",
    "ʔn\u0329": "ʔn",
    f"a{TIE}ɪ": "I",
    f"a{TIE}ʊ": "W",
    f"d{TIE}ʒ": "ʤ",
    f"e{TIE}ɪ": "A",
    "e": "A",
    f"t{TIE}ʃ": "ʧ",
    f"ɔ{TIE}ɪ": "Y",
    f"ə{TIE}l": "ᵊl",
    "ʲo": "jo",
    "ʲə": "jə",
    "ʲ": "",
    "ɚ": "əɹ",
    "r": "ɹ",
    "x": "k",
    "ç": "k",
    "ɐ": "ə",
    "ɬ": "l",
    "\u0303": "",
}
_BY_LENGTH = sorted(_REPLACEMENTS.items(), key=lambda kv: -len(kv[0]))
_SYLLABIC = re.compile(r"(\S)\u0329")
_AMERICAN = (
    (f"o{TIE}ʊ", "O"),
    ("ɜːɹ", "ɜɹ"),
    ("ɜː", "ɜɹ"),
    ("ɪə", "iə"),
    ("ː", ""),
    ("o", "ɔ"),
    ("ɾ", "T"),
    ("ʔ", "t"),
    (TIE, ""),
)

# Punctuation espeak-ng does not speak but the model does (phonemizer's default marks); a
# period, comma or colon between digits belongs to a number or a time ("3.5", "1,000", "3:30").
_MARKS = ';!?¡¿—…"«»“”(){}[]'
_PUNCTUATION = re.compile(r"\s*(?:[" + re.escape(_MARKS) + r"]|(?<!\d)[.,:]|[.,:](?!\d))+\s*")


def espeak_to_kokoro(ipa: str) -> str:
    """espeak-ng's IPA (ties written ``^``) in Kokoro's phoneme alphabet."""
    for old, new in _BY_LENGTH:
        ipa = ipa.replace(old, new)
    ipa = _SYLLABIC.sub("ᵊ\\1", ipa).replace("\u0329", "")
    for old, new in _AMERICAN:
        ipa = ipa.replace(old, new)
    return ipa


def speakable(text: str) -> bool:
    """Whether ``text`` has anything to say: a letter or a digit."""
    return any(unicodedata.category(c)[0] in "LN" for c in text)


def prepare_text(text: str) -> str:
    """``text`` normalised for the G2P; a ``PhonemeError`` if it is empty or has nothing to
    say (checked before espeak-ng is needed)."""
    if not text.strip():
        raise PhonemeError("the text is empty", hint="give some words to speak")
    text = normalize_text(text)
    if not speakable(text):
        raise PhonemeError(
            f"the text has no speakable characters: {text[:60]!r}",
            hint="give words or numbers to speak",
        )
    return text


def phonemize(text: str, espeak: Espeak) -> str:
    """Kokoro phonemes of ``text``: normalised, split at punctuation, each phrase through
    espeak-ng, the punctuation put back between them (one space where the text had space)."""
    text = prepare_text(text)
    out: list[str] = []
    position = 0
    for match in [*_PUNCTUATION.finditer(text), None]:
        end = len(text) if match is None else match.start()
        phrase = text[position:end].strip()
        if phrase and speakable(phrase):
            out.append(espeak_to_kokoro(espeak.ipa(phrase)))
        if match is not None:
            run = match.group(0)
            marks = run.strip()
            lead = " " if run[:1].isspace() and out else ""
            tail = " " if run[-1:].isspace() else ""
            out.append(lead + marks + tail)
            position = match.end()
    phonemes = re.sub(r" {2,}", " ", "".join(out)).strip()
    if not any(c.isalpha() for c in phonemes):
        raise PhonemeError(
            f"espeak-ng gives no phonemes for {text[:60]!r}", hint="give words to speak"
        )
    return phonemes


def encode_phonemes(phonemes: str, vocab: Mapping[str, int], *, where: str = "") -> list[int]:
    """The token ids of a phoneme string; a ``PhonemeError`` naming every phoneme the
    vocabulary lacks."""
    if not phonemes.strip():
        raise PhonemeError("the phoneme string is empty", hint="give some phonemes to speak")
    unknown = sorted({c for c in phonemes if c not in vocab})
    if unknown:
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown)
        raise PhonemeError(
            f"unknown phoneme{'s' if len(unknown) > 1 else ''} {shown}",
            path=where or None,
            hint="use only the phonemes in the bundle's vocabulary (speechport.json tts.vocab)",
        )
    return [vocab[c] for c in phonemes]


def in_vocabulary(phonemes: str, vocab: Mapping[str, int]) -> str:
    """``phonemes`` without the characters the vocabulary lacks (upstream drops them from
    G2P output the same way)."""
    return "".join(c for c in phonemes if c in vocab)
