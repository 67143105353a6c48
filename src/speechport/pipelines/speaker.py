"""Speech synthesis from a two-stage bundle (Kokoro): text or phonemes in, 24 kHz audio out.

Text goes through the G2P (espeak-ng) to phonemes; the phonemes are split into chunks that
fit the largest token bucket (``text.split``: sentences, then phrases, words); each chunk
runs the text stage, and a chunk whose frames exceed the largest frame bucket is split
again; each chunk's audio is faded in and out over ``FADE_SECONDS`` and followed by a pause
after a sentence or a phrase. ``stream`` yields the audio piece by piece (memory bounded by
one chunk), ``speak`` returns it whole.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speechport.errors import BundleError, SpeechportError
from speechport.pipelines.synthesis import (
    BucketError,
    ChunkAudio,
    Stage,
    StageBuckets,
    TextStageResult,
    run_acoustic_stage,
    run_text_stage,
    style_row,
)
from speechport.text.phonemes import encode_phonemes, in_vocabulary, phonemize, prepare_text
from speechport.text.split import PHRASE, SENTENCE, Piece, split_phonemes

if TYPE_CHECKING:
    from speechport.runtime.base import Component, LoadedBundle
    from speechport.tasks.tts_spec import TtsSpec
    from speechport.text.espeak import Espeak

TEXT_KIND = "tts_text"
ACOUSTIC_KIND = "tts_acoustic"
MIN_SPEED, MAX_SPEED = 0.5, 2.0
FADE_SECONDS = 0.005
PAUSES = {SENTENCE: 0.2, PHRASE: 0.08}  # seconds of silence after a chunk that ends so
RESPLIT_MARGIN = 0.9  # a re-split aims below the frame limit by this factor


@dataclass(frozen=True)
class SpokenChunk:
    """One chunk of a spoken text: its phonemes, where its audio lies in the output
    (samples), what ends it, and the buckets that ran it."""

    phonemes: str
    start: int
    end: int
    boundary: str
    token_bucket: int
    frame_bucket: int
    frames: int


@dataclass
class Speech:
    """Spoken text: float32 samples at ``sample_rate``, the phonemes used, the chunks."""

    samples: np.ndarray
    sample_rate: int
    phonemes: str
    chunks: list[SpokenChunk] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.samples.size / self.sample_rate


@dataclass(frozen=True)
class SpeechPart:
    """A piece of a stream: audio to append (a chunk's or a pause) and the chunk, if any."""

    samples: np.ndarray
    chunk: SpokenChunk | None = None
    result: ChunkAudio | None = None


@dataclass(frozen=True)
class PlannedChunk:
    """A piece of the text with its token ids, voice style and text-stage result."""

    piece: Piece
    ids: list[int]
    style: np.ndarray
    text: TextStageResult


def chunk_seed(seed: int, index: int) -> int | tuple[int, int]:
    """The noise seed of chunk ``index``: ``seed`` itself for the first (so a one-chunk
    text draws exactly ``default_rng(seed)``), ``(seed, index)`` for the others."""
    return seed if index == 0 else (seed, index)


def named_stage(component: Component) -> Stage:
    """A component called with named inputs, returning named outputs (matched by the
    manifest's tensor names, so their order in the file does not matter)."""
    names = [t.name for t in component.spec.inputs]
    outputs = [t.name for t in component.spec.outputs]

    def call(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        missing = [n for n in names if n not in inputs]
        if missing:
            raise BundleError(
                f"the host has no value for input(s) {', '.join(missing)}",
                component=component.spec.name,
                hint="this bundle needs a newer speechport",
            )
        return dict(zip(outputs, component(*(inputs[n] for n in names)), strict=True))

    return call


class Speaker:
    """A loaded text-to-speech bundle: ``speak(text)`` -> ``Speech``, ``voices``."""

    def __init__(self, bundle: LoadedBundle, spec: TtsSpec) -> None:
        self.bundle = bundle
        self.spec = spec
        self.sample_rate = spec.sample_rate
        manifest = bundle.manifest
        text = {_bucket(bundle, r, "input_ids", 1): r for r in manifest.roles_of(TEXT_KIND)}
        acoustic = {
            _bucket(bundle, r, "prosody_aligned", 2): r for r in manifest.roles_of(ACOUSTIC_KIND)
        }
        for what, have, declared in (
            ("token_buckets", text, spec.token_buckets),
            ("frame_buckets", acoustic, spec.frame_buckets),
        ):
            if sorted(have) != sorted(declared):
                raise BundleError(
                    f"tts.{what} lists {list(declared)} but the components hold {sorted(have)}",
                    path=bundle.path,
                )
        self.stages = StageBuckets(
            text={n: named_stage(bundle.component(r)) for n, r in text.items()},
            acoustic={n: named_stage(bundle.component(r)) for n, r in acoustic.items()},
            samples_per_frame=spec.samples_per_frame,
            harmonics=spec.harmonics,
            random_names=spec.noise_inputs,
        )
        self.max_phonemes = min(spec.max_phonemes, self.stages.max_tokens - 2)
        self._packs: dict[str, np.ndarray] = {}
        self._espeak: Espeak | None = None

    @property
    def voices(self) -> list[str]:
        return list(self.spec.voices)

    def voice_pack(self, voice: str | None = None) -> np.ndarray:
        """The style pack of ``voice`` ([rows, style_dim] float32); an error listing the
        voices otherwise."""
        name = self.spec.default_voice if voice is None else voice
        if name not in self.spec.voices:
            raise SpeechportError(
                f"unknown voice {name!r}; this bundle has {', '.join(self.spec.voices)}",
                hint="pick one of those (--voice NAME)",
            )
        if name not in self._packs:
            path = self.bundle.path / self.spec.voices[name]
            try:
                pack = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise BundleError(f"cannot read voice {name!r} ({exc})", path=path) from None
            pack = np.asarray(pack, dtype=np.float32).reshape(pack.shape[0], -1)
            if pack.shape[1] != self.spec.style_dim or pack.shape[0] < 1:
                raise BundleError(
                    f"voice {name!r} has shape {list(pack.shape)}, expected "
                    f"[rows, {self.spec.style_dim}]",
                    path=path,
                )
            self._packs[name] = pack
        return self._packs[name]

    def phonemes(self, text: str) -> str:
        """The phonemes of ``text`` (the G2P's, restricted to the vocabulary)."""
        prepare_text(text)  # empty or unspeakable text is refused before espeak-ng is needed
        return in_vocabulary(phonemize(text, self._g2p()), self.spec.vocab)

    def speak(
        self,
        text: str,
        voice: str | None = None,
        speed: float = 1.0,
        seed: int = 0,
        phonemes: bool = False,
    ) -> Speech:
        """``text`` spoken (``phonemes=True``: ``text`` is a phoneme string already)."""
        parts: list[np.ndarray] = []
        chunks: list[SpokenChunk] = []
        for part in self.stream(text, voice=voice, speed=speed, seed=seed, phonemes=phonemes):
            parts.append(part.samples)
            if part.chunk is not None:
                chunks.append(part.chunk)
        samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        spoken = " ".join(c.phonemes for c in chunks)
        return Speech(samples, self.sample_rate, spoken, chunks)

    def stream(
        self,
        text: str,
        voice: str | None = None,
        speed: float = 1.0,
        seed: int = 0,
        phonemes: bool = False,
    ) -> Iterator[SpeechPart]:
        """The audio of ``text`` chunk by chunk (and the pauses between), in order. Input
        is checked before anything is yielded."""
        if not (MIN_SPEED <= speed <= MAX_SPEED) or math.isnan(speed):
            raise SpeechportError(
                f"speed {speed:g} is out of range", hint=f"pick {MIN_SPEED:g} to {MAX_SPEED:g}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpeechportError(f"seed must be an integer >= 0, got {seed!r}")
        pack = self.voice_pack(voice)
        if phonemes:
            ps = " ".join(text.split())
            encode_phonemes(ps, self.spec.vocab)  # names any unknown phoneme
        else:
            ps = self.phonemes(text)
        return self._run(self.pieces(ps), pack, speed, seed)

    def pieces(self, phonemes: str) -> list[Piece]:
        """``phonemes`` split into pieces that fit the largest token bucket."""
        return split_phonemes(phonemes, lambda s: len(s) <= self.max_phonemes)

    def plan(
        self, pieces: Sequence[Piece], pack: np.ndarray, speed: float
    ) -> Iterator[PlannedChunk]:
        """Each piece through the text stage, in order; a piece whose frames exceed the
        largest frame bucket is split again and its parts run instead."""
        queue = deque(pieces)
        while queue:
            piece = queue.popleft()
            ids = encode_phonemes(piece.phonemes, self.spec.vocab)
            style = style_row(pack, len(ids))
            text = run_text_stage(self.stages, ids, style, speed)
            if text.total_frames > self.stages.max_frames:
                queue.extendleft(reversed(self._resplit(piece, text.total_frames)))
                continue
            yield PlannedChunk(piece, ids, style, text)

    def _run(
        self, pieces: Sequence[Piece], pack: np.ndarray, speed: float, seed: int
    ) -> Iterator[SpeechPart]:
        position = 0
        fade = round(FADE_SECONDS * self.sample_rate)
        for index, planned in enumerate(self.plan(pieces, pack, speed)):
            piece, text = planned.piece, planned.text
            result = run_acoustic_stage(
                self.stages, text, planned.style, seed=chunk_seed(seed, index)
            )
            audio = _faded(result.audio, fade)
            chunk = SpokenChunk(
                phonemes=piece.phonemes,
                start=position,
                end=position + audio.size,
                boundary=piece.boundary,
                token_bucket=result.token_bucket,
                frame_bucket=result.frame_bucket,
                frames=text.total_frames,
            )
            yield SpeechPart(audio, chunk, result)
            position += audio.size
            pause = round(PAUSES.get(piece.boundary, 0.0) * self.sample_rate)
            if pause:
                yield SpeechPart(np.zeros(pause, np.float32))
                position += pause

    def _resplit(self, piece: Piece, frames: int) -> list[Piece]:
        """``piece`` (too many frames for the largest bucket) in smaller pieces."""
        limit = math.floor(len(piece.phonemes) * self.stages.max_frames / frames * RESPLIT_MARGIN)
        smaller = split_phonemes(
            piece.phonemes, lambda s: len(s) <= max(limit, 1), last=piece.boundary
        )
        if len(smaller) < 2:
            raise BucketError(
                f"{piece.phonemes!r} needs {frames} frames, more than the largest frame "
                f"bucket ({self.stages.max_frames}), and cannot be split",
                hint="speak faster (--speed) or use a bundle with a larger frame bucket",
            )
        return smaller

    def _g2p(self) -> Espeak:
        if self._espeak is None:
            from speechport.text.espeak import Espeak

            g2p = self.spec.g2p
            self._espeak = Espeak(g2p["language"])
            if self._espeak.info.version != g2p["version"]:
                warnings.warn(
                    f"espeak-ng {self._espeak.info.version} is installed; this bundle's "
                    f"phonemes were checked with {g2p['version']} (some words may differ)",
                    stacklevel=3,
                )
        return self._espeak


def _bucket(bundle: LoadedBundle, role: str, tensor: str, axis: int) -> int:
    spec = bundle.manifest.component(role)
    try:
        return spec.input(tensor).shape[axis]
    except (KeyError, IndexError, BundleError):
        raise BundleError(
            f"component {role!r} has no {tensor} input with a bucket size on axis {axis}",
            path=bundle.path / Path("speechport.json"),
        ) from None


def _faded(audio: np.ndarray, fade: int) -> np.ndarray:
    """``audio`` with a raised-cosine fade-in and fade-out of ``fade`` samples (fewer for a
    very short chunk), so that chunks and pauses join without clicks."""
    out = np.array(audio, dtype=np.float32)
    n = min(fade, out.size // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        out[:n] *= ramp
        out[-n:] *= ramp[::-1]
    return out
