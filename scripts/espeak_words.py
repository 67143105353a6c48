"""English speech of a small vocabulary from espeak-ng, with each word's place in the audio.

Used by ``scripts/train_parakeet_words.py`` (training examples, synthesised on the fly)
and ``scripts/make_parakeet_words_clips.py`` (the held-out test clips). libespeak-ng is
called through ctypes in synchronous mode: its synth callback hands over the samples and
the word events, whose ``sample`` field is where each word begins in the output (22050 Hz);
the audio is resampled to 16 kHz. A word spans from its own start to the next word's start
(the last to the end of the audio), and its *loud part* is where that span is above -60 dB.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import resample_poly

SR = 16000
# 41 words that the fixture tokenizer (tests/data/nemo/parakeet_tdt.nemo, 183 BPE pieces)
# spells without <unk>; most of them come from the sentences it was made with.
VOCABULARY = [
    "the",
    "birch",
    "canoe",
    "slid",
    "on",
    "smooth",
    "planks",
    "glue",
    "sheet",
    "to",
    "dark",
    "blue",
    "background",
    "then",
    "read",
    "verse",
    "out",
    "loud",
    "is",
    "easy",
    "tell",
    "depth",
    "of",
    "well",
    "when",
    "water",
    "clear",
    "and",
    "still",
    "green",
    "red",
    "cold",
    "river",
    "stone",
    "house",
    "garden",
    "seven",
    "morning",
    "yellow",
    "window",
    "paper",
]
VOICES = ("en-us", "en", "en-gb-x-rp", "en-us-nyc")
VARIANTS = ("", "+m3", "+f3")
LOUD = 1e-3  # -60 dBFS

_ESPEAK_RATE, _ESPEAK_PITCH = 1, 3
_AUDIO_OUTPUT_SYNCHRONOUS, _EVENT_LIST_TERMINATED, _EVENT_WORD = 2, 0, 1


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Spoken:
    """A synthesised sentence: 16 kHz float32 audio, its words, and per word the sample
    where it starts and the loud part ``(first, stop)`` of its span (words spoken as one
    share both)."""

    audio: np.ndarray
    words: list[str]
    starts: list[int]
    loud: list[tuple[int, int]]


class Espeak:
    """One libespeak-ng instance (the library is process-global: make one)."""

    def __init__(self) -> None:
        self._lib = ctypes.CDLL("libespeak-ng.so.1")
        self.rate = int(self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0))
        if self.rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int]] = []
        self._callback = _Callback(self._on_audio)  # kept alive as long as self
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav: Any, n: int, events: Any) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).astype(np.float32) / 32768)
        k = 0
        while events[k].type != _EVENT_LIST_TERMINATED:
            if events[k].type == _EVENT_WORD and events[k].length > 0:  # (a 0-length one ends)
                self._words.append((int(events[k].text_position), int(events[k].sample)))
            k += 1
        return 0

    def say(self, words: list[str], voice: str, rate: int, pitch: int) -> Spoken:
        """``words`` spoken as one sentence by ``voice`` at ``rate`` words per minute."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        self._lib.espeak_SetParameter(_ESPEAK_RATE, rate, 0)
        self._lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
        self._chunks, self._words = [], []
        text = " ".join(words).encode()
        self._lib.espeak_Synth(text, len(text) + 1, 0, 0, 0, 0, None, None)
        self._lib.espeak_Synchronize()
        raw = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        # text positions count from 1; espeak-ng may speak two words as one ("of the"):
        # a word without an event of its own shares the span of the word before it
        offsets = np.cumsum([0, *(len(w) + 1 for w in words[:-1])]) + 1
        at = dict(self._words)
        if offsets[0] not in at or not set(at) <= set(offsets.tolist()):
            raise RuntimeError(f"espeak-ng's word events {self._words} do not fit {words}")
        audio = resample_poly(raw, SR, self.rate).astype(np.float32)
        groups = [k for k, o in enumerate(offsets) if int(o) in at]
        group_starts = [round(at[int(offsets[k])] * SR / self.rate) for k in groups]
        group_stops = [*group_starts[1:], audio.size]
        loud_of = []
        for first, stop in zip(group_starts, group_stops, strict=True):
            hot = np.flatnonzero(np.abs(audio[first:stop]) > LOUD)
            if hot.size == 0:
                raise RuntimeError(f"a silent word in {words} ({voice})")
            loud_of.append((first + int(hot[0]), first + int(hot[-1]) + 1))
        owner = np.searchsorted(groups, np.arange(len(words)), side="right") - 1
        starts = [group_starts[g] for g in owner]
        loud = [loud_of[g] for g in owner]
        return Spoken(audio, list(words), starts, loud)


def random_sentence(rng: np.random.Generator, low: int = 3, high: int = 9) -> list[str]:
    """``low``..``high`` words of the vocabulary, uniformly, repeats allowed."""
    n = int(rng.integers(low, high + 1))
    return [VOCABULARY[int(i)] for i in rng.integers(0, len(VOCABULARY), n)]


def random_voice(rng: np.random.Generator) -> tuple[str, int, int]:
    """A voice (with variant), a rate (140-200 words per minute) and a pitch (35-65)."""
    voice = VOICES[int(rng.integers(len(VOICES)))] + VARIANTS[int(rng.integers(len(VARIANTS)))]
    return voice, int(rng.integers(140, 201)), int(rng.integers(35, 66))
