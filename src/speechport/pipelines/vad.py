"""Voice activity: speech probability per chunk, speech segments, and a streaming detector.

Segmentation follows Silero's ``get_speech_timestamps`` rules exactly (threshold and
negative threshold with hysteresis, minimum speech, minimum silence, padding shared between
close segments, and the optional maximum segment length with its cut at the longest
silence), so a bundle gives the segments upstream gives. Everything is driven by the
bundle's manifest (chunk, context and state); numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from speechport.audio import AudioInput, AudioSource, open_audio
from speechport.errors import AudioError, BundleError, SpeechportError
from speechport.manifest import NP_DTYPES, VadSpec
from speechport.runtime.base import Component, LoadedBundle


@dataclass(frozen=True)
class VadParams:
    """Segmentation parameters, in Silero's terms (``neg_threshold`` None: threshold - 0.15,
    at least 0.01)."""

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_ms: float = 250.0
    min_silence_ms: float = 100.0
    speech_pad_ms: float = 30.0
    max_speech_s: float = math.inf
    min_silence_at_max_speech_ms: float = 98.0
    use_max_possible_silence_at_max_speech: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, wanted: str) -> SpeechportError:
            return SpeechportError(f"VAD parameter {name} must be {wanted}, got {value!r}")

        if not 0.0 <= self.threshold <= 1.0:
            raise bad("threshold", self.threshold, "a probability in [0, 1]")
        # any neg_threshold in [0, 1] segments as upstream does (the CLI also asks that it
        # not exceed the threshold: above it, speech ends as soon as it starts)
        if self.neg_threshold is not None and not 0.0 <= self.neg_threshold <= 1.0:
            raise bad("neg_threshold", self.neg_threshold, "a probability in [0, 1]")
        for name in ("min_speech_ms", "min_silence_ms", "speech_pad_ms"):
            value = getattr(self, name)
            if not 0.0 <= value < math.inf:
                raise bad(name, value, "a finite number >= 0")
        if not self.max_speech_s > 0:
            raise bad("max_speech_s", self.max_speech_s, "> 0 seconds (inf: no limit)")
        if not 0.0 <= self.min_silence_at_max_speech_ms < math.inf:
            raise bad("min_silence_at_max_speech_ms", self.min_silence_at_max_speech_ms, ">= 0")

    @classmethod
    def from_defaults(cls, defaults: dict[str, float], **overrides: Any) -> VadParams:
        known: dict[str, Any] = {k: v for k, v in defaults.items() if k in cls.__dataclass_fields__}
        known.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**known)

    @property
    def exit_threshold(self) -> float:
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True)
class SpeechSegment:
    """Speech from ``start`` to ``end`` (samples at ``sample_rate``, end exclusive)."""

    start: int
    end: int
    sample_rate: int = 16000

    def seconds(self, sample_rate: int | None = None) -> tuple[float, float]:
        rate = sample_rate or self.sample_rate
        return self.start / rate, self.end / rate

    @property
    def start_seconds(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_seconds(self) -> float:
        return self.end / self.sample_rate

    def __str__(self) -> str:
        return f"{self.start_seconds:.3f}-{self.end_seconds:.3f} s"


def speech_segments(
    probs: Iterable[float],
    *,
    num_samples: int,
    chunk_samples: int,
    sample_rate: int,
    params: VadParams = VadParams(),
) -> list[SpeechSegment]:
    """Speech segments from per-chunk probabilities (Silero's rules; see the module doc)."""
    p = params
    min_speech = sample_rate * p.min_speech_ms / 1000
    pad = sample_rate * p.speech_pad_ms / 1000
    max_speech = sample_rate * p.max_speech_s - chunk_samples - 2 * pad
    min_silence = sample_rate * p.min_silence_ms / 1000
    min_silence_at_max = sample_rate * p.min_silence_at_max_speech_ms / 1000
    exit_threshold = p.exit_threshold

    segments: list[list[float]] = []  # [start, end]
    start: float | None = None  # the open segment's start while triggered
    temp_end = 0
    prev_end = next_start = 0
    possible_ends: list[tuple[int, int]] = []

    def close(end: float) -> None:
        nonlocal start
        assert start is not None
        segments.append([start, end])
        start = None

    for i, prob in enumerate(probs):
        sample = chunk_samples * i
        if prob >= p.threshold and temp_end:
            silence = sample - temp_end
            if silence > min_silence_at_max:
                possible_ends.append((temp_end, silence))
            temp_end = 0
            if next_start < prev_end:
                next_start = sample
        if prob >= p.threshold and start is None:
            start = sample
            continue
        if start is not None and sample - start > max_speech:
            if p.use_max_possible_silence_at_max_speech and possible_ends:
                prev_end, duration = max(possible_ends, key=lambda e: e[1])
                close(prev_end)
                next_start = prev_end + duration
                if next_start < prev_end + sample:
                    start = next_start
                prev_end = next_start = temp_end = 0
                possible_ends = []
            elif prev_end:
                close(prev_end)
                if next_start >= prev_end:
                    start = next_start
                prev_end = next_start = temp_end = 0
                possible_ends = []
            else:
                close(sample)
                prev_end = next_start = temp_end = 0
                possible_ends = []
                continue
        if prob < exit_threshold and start is not None:
            if not temp_end:
                temp_end = sample
            silence_now = sample - temp_end
            if not p.use_max_possible_silence_at_max_speech and silence_now > min_silence_at_max:
                prev_end = temp_end
            if silence_now < min_silence:
                continue
            if temp_end - start > min_speech:
                segments.append([start, temp_end])
            start = None
            prev_end = next_start = temp_end = 0
            possible_ends = []

    if start is not None and num_samples - start > min_speech:
        segments.append([start, num_samples])
    return _pad(segments, pad, num_samples, sample_rate)


def _pad(
    segments: list[list[float]], pad: float, num_samples: int, sample_rate: int
) -> list[SpeechSegment]:
    """Widen each segment by ``pad``; close neighbours share the silence between them."""
    for i, segment in enumerate(segments):
        if i == 0:
            segment[0] = int(max(0, segment[0] - pad))
        if i != len(segments) - 1:
            following = segments[i + 1]
            silence = following[0] - segment[1]
            if silence < 2 * pad:
                segment[1] += int(silence // 2)
                following[0] = int(max(0, following[0] - silence // 2))
            else:
                segment[1] = int(min(num_samples, segment[1] + pad))
                following[0] = int(max(0, following[0] - pad))
        else:
            segment[1] = int(min(num_samples, segment[1] + pad))
    return [SpeechSegment(int(a), int(b), sample_rate) for a, b in segments]


# The forms a VAD bundle may compute probabilities with (``auto``: the fastest it has).
ONE_CHUNK, BATCHED, STAGES = "vad", "vad_long", "stages"
PATHS = ("auto", ONE_CHUNK, BATCHED, STAGES)


class VoiceActivityDetector:
    """Run a VAD bundle: probabilities per chunk, segments, streams.

    The bundle's components are three forms of the same model; ``path`` picks which one
    computes probabilities: ``vad`` (one chunk per call), ``vad_long`` (``sub_chunks`` per
    call), ``stages`` (the three-stage split, chained), or ``auto`` (``vad_long`` where the
    bundle has it). All give the same numbers; `verify` checks each.
    """

    def __init__(self, bundle: LoadedBundle, **params: Any) -> None:
        """``params`` override the bundle's segmentation defaults (``threshold``,
        ``min_silence_ms``, ...; see ``VadParams``)."""
        self.spec: VadSpec = bundle.manifest.require_vad(bundle.path)
        self.bundle = bundle
        self.sample_rate = bundle.manifest.sample_rate
        spec = self.spec
        if spec.chunk_samples <= 0 or spec.context_samples < 0 or spec.sub_chunks <= 0:
            raise BundleError(f"invalid vad section {spec}", path=bundle.path)
        self.step = _Stepper(bundle.of_kind("vad"), spec.window_samples)
        self.steppers: dict[str, Any] = {ONE_CHUNK: self.step}
        if bundle.has_kind("vad_batch"):
            width = spec.context_samples + spec.sub_chunks * spec.chunk_samples
            self.steppers[BATCHED] = _Stepper(bundle.of_kind("vad_batch"), width)
        stages = ("frontend", "vad_encoder", "vad_decoder")
        if all(bundle.has_kind(kind) for kind in stages):
            stft, encoder, decoder = (bundle.of_kind(kind) for kind in stages)
            self.steppers[STAGES] = _StageChain(stft, encoder, decoder, spec.window_samples)
        self.defaults = self.params(VadParams.from_defaults(spec.defaults), **params)

    @property
    def paths(self) -> list[str]:
        """The component paths this bundle can compute probabilities with."""
        return list(self.steppers)

    def params(self, base: VadParams | None = None, /, **overrides: Any) -> VadParams:
        """Segmentation parameters: ``base`` (default: this detector's) with the overrides
        that are not None."""
        base = self.defaults if base is None else base
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def probabilities(self, samples: np.ndarray, *, path: str = "auto") -> np.ndarray:
        """Speech probability of every ``chunk_samples`` of ``samples`` (the last chunk
        zero-padded), from a fresh state, the context starting as zeros."""
        stream = self.probability_stream(path=path)
        stream.feed(_check_audio(samples))
        return stream.finish()

    def probability_stream(self, *, path: str = "auto") -> ProbabilityStream:
        """`probabilities` for audio fed in blocks of any size: the same numbers."""
        if path == "auto":
            path = BATCHED if BATCHED in self.steppers else ONE_CHUNK
        if path not in self.steppers:
            raise BundleError(
                f"no {path!r} components in this bundle (has {self.paths})", path=self.bundle.path
            )
        return ProbabilityStream(
            self.steppers[path], self.spec.chunk_samples, self.spec.context_samples
        )

    def scan(self, source: AudioSource) -> tuple[np.ndarray, int]:
        """The probabilities of every chunk of ``source`` (read block by block) and its
        number of samples."""
        stream = self.probability_stream()
        for block in source.blocks():
            stream.feed(block)
        return stream.finish(), stream.fed

    def segments(
        self,
        audio: AudioInput,
        params: VadParams | None = None,
        *,
        sample_rate: int | None = None,
    ) -> list[SpeechSegment]:
        """The speech segments of ``audio``: a file path (read in blocks), or samples at
        ``sample_rate`` (default: the bundle's; other rates are resampled).

        >>> for s in speechport.load("bundles/silero-vad").segments("talk.wav"):
        ...     print(s.start_seconds, s.end_seconds)
        """
        source = open_audio(audio, sample_rate=sample_rate, target_rate=self.sample_rate)
        probs, total = self.scan(source)
        return self.segments_from(probs, total, params)

    def segments_from(
        self, probs: np.ndarray, num_samples: int, params: VadParams | None = None
    ) -> list[SpeechSegment]:
        """Speech segments from this detector's chunk probabilities of ``num_samples``."""
        return speech_segments(
            probs,
            num_samples=num_samples,
            chunk_samples=self.spec.chunk_samples,
            sample_rate=self.sample_rate,
            params=params or self.defaults,
        )

    def stream(self, params: VadParams | None = None) -> VadStream:
        return VadStream(self, params or self.defaults)


class _Stepper:
    """One VAD component call: window -> per-chunk probabilities, state threaded."""

    def __init__(self, component: Component, width: int) -> None:
        spec = component.spec
        if not spec.state:
            raise BundleError(f"component {spec.name} declares no state")
        pair = spec.state[0]
        names_in = [t.name for t in spec.inputs]
        names_out = [t.name for t in spec.outputs]
        self._component = component
        self._state_in = names_in.index(pair.input)
        self._state_out = names_out.index(pair.output)
        self._audio_in = next(i for i in range(len(names_in)) if i != self._state_in)
        state_spec = spec.inputs[self._state_in]
        self._state_shape = state_spec.shape
        self._state_dtype = NP_DTYPES[state_spec.dtype]
        # per-chunk probabilities: "probs" where the component has it, else "prob"
        self._probs_out = (
            names_out.index("probs") if "probs" in names_out else names_out.index("prob")
        )
        self.width = spec.inputs[self._audio_in].shape[-1]
        if self.width != width:
            raise BundleError(
                f"component {spec.name} takes {self.width} samples, the manifest's vad "
                f"section implies {width}"
            )

    def initial_state(self) -> np.ndarray:
        return np.zeros(self._state_shape, dtype=self._state_dtype)

    def __call__(self, window: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inputs: list[np.ndarray] = [np.empty(0), np.empty(0)]
        inputs[self._audio_in] = window.reshape(1, -1)
        inputs[self._state_in] = state
        outputs = self._component(*inputs)
        return outputs[self._probs_out].reshape(-1), outputs[self._state_out]


class ProbabilityStream:
    """Chunk probabilities of audio fed in blocks: the calls `probabilities` makes on the
    whole array (a window of context + new samples per call, advancing by the new samples;
    the last one zero-padded), holding one window and the probabilities (4 bytes a chunk)."""

    def __init__(self, stepper: _Stepper | _StageChain, chunk: int, context: int) -> None:
        self._stepper = stepper
        self._chunk = chunk
        self._per_call = stepper.width - context
        self._chunks_per_call = self._per_call // chunk
        if self._per_call <= 0 or self._per_call % chunk:
            raise BundleError(
                f"a VAD call of {stepper.width} samples is not {context} context samples and "
                f"whole chunks of {chunk}"
            )
        self._buffer = np.zeros(context, dtype=np.float32)
        self._state = stepper.initial_state()
        self._out: list[np.ndarray] = []
        self._calls = 0
        self.fed = 0

    def feed(self, samples: np.ndarray) -> None:
        audio = _check_audio(samples)
        self.fed += audio.size
        self._buffer = np.concatenate([self._buffer, audio])
        width = self._stepper.width
        while self._buffer.size >= width:
            self._call(self._buffer[:width])
            self._buffer = self._buffer[self._per_call :]

    def finish(self) -> np.ndarray:
        """The probability of every chunk fed (the last one zero-padded)."""
        count = -(-self.fed // self._chunk)
        calls = -(-count // self._chunks_per_call)
        width = self._stepper.width
        while self._calls < calls:
            window = np.zeros(width, dtype=np.float32)
            head = self._buffer[:width]
            window[: head.size] = head
            self._call(window)
            self._buffer = self._buffer[self._per_call :]
        out = np.concatenate(self._out) if self._out else np.zeros(0, dtype=np.float32)
        return np.asarray(out[:count], dtype=np.float32)

    def _call(self, window: np.ndarray) -> None:
        probs, self._state = self._stepper(window, self._state)
        self._out.append(np.asarray(probs, dtype=np.float32))
        self._calls += 1
        if len(self._out) >= 4096:  # one array, not a Python object per call
            self._out = [np.concatenate(self._out)]


class _StageChain:
    """The three-stage form as one step: STFT, encoder, then the stateful decoder."""

    def __init__(self, stft: Component, encoder: Component, decoder: Component, width: int):
        self._stft, self._encoder = stft, encoder
        self._decoder = _Stepper(decoder, decoder.spec.inputs[0].shape[-1])
        self.width = stft.spec.inputs[0].shape[-1]
        if self.width != width:
            raise BundleError(
                f"component {stft.spec.name} takes {self.width} samples, the "
                f"manifest's vad section implies {width}"
            )

    def initial_state(self) -> np.ndarray:
        return self._decoder.initial_state()

    def __call__(self, window: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (magnitude,) = self._stft(window.reshape(1, -1))
        (features,) = self._encoder(magnitude)
        return self._decoder(features, state)


@dataclass(frozen=True)
class VadEvent:
    """A segment starts or ends at ``sample`` (as Silero's ``VADIterator`` reports it)."""

    kind: str  # "start" | "end"
    sample: int

    def seconds(self, sample_rate: int) -> float:
        return self.sample / sample_rate


@dataclass
class VadStream:
    """Feed audio as it arrives; get segment start and end events, with Silero's
    ``VADIterator`` semantics: a start is the chunk's start padded back by ``speech_pad``;
    an end comes after ``min_silence`` below the exit threshold and is the first silent
    chunk's start padded forward. As in ``VADIterator``, the exit threshold defaults to
    ``threshold - 0.15`` with no floor (the offline segmentation floors it at 0.01).
    `flush` ends the stream (closing an open segment at the end of the audio) and resets it.
    """

    detector: VoiceActivityDetector
    params: VadParams
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    _context: np.ndarray | None = None
    _state: np.ndarray | None = None
    _current: int = 0
    _triggered: bool = False
    _temp_end: int = 0
    _silence_start: int = 0

    @property
    def exit_threshold(self) -> float:
        p = self.params
        return p.neg_threshold if p.neg_threshold is not None else p.threshold - 0.15

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        """Process whole chunks of ``samples`` (the rest waits for the next call)."""
        audio = _check_audio(samples)
        self._pending = np.concatenate([self._pending, audio])
        events: list[VadEvent] = []
        chunk = self.detector.spec.chunk_samples
        while self._pending.size >= chunk:
            events += self._step(self._pending[:chunk], chunk)
            self._pending = self._pending[chunk:]
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: process the partial chunk (zero-padded), close an open segment at
        the end of the audio, and start afresh."""
        events: list[VadEvent] = []
        chunk = self.detector.spec.chunk_samples
        if self._pending.size:
            fed = self._pending.size
            events += self._step(np.pad(self._pending, (0, chunk - fed)), fed)
        if self._triggered:
            events.append(VadEvent("end", self._current))
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = self._state = None
        self._current = self._temp_end = self._silence_start = 0
        self._triggered = False
        return events

    def _step(self, chunk: np.ndarray, fed: int) -> list[VadEvent]:
        spec = self.detector.spec
        stepper = self.detector.step
        if self._state is None or self._context is None:
            self._state = stepper.initial_state()
            self._context = np.zeros(spec.context_samples, dtype=np.float32)
        window = np.concatenate([self._context, chunk])
        probs, self._state = stepper(window, self._state)
        self._context = window[-spec.context_samples :]
        chunk_start = self._current
        self._current += fed
        prob = float(probs[0])
        sr = self.detector.sample_rate
        pad = sr * self.params.speech_pad_ms / 1000
        min_silence = sr * self.params.min_silence_ms / 1000
        if prob >= self.params.threshold and self._temp_end:
            self._temp_end = 0
        if prob >= self.params.threshold and not self._triggered:
            self._triggered = True
            return [VadEvent("start", int(max(0, chunk_start - pad)))]
        if prob < self.exit_threshold and self._triggered:
            if not self._temp_end:
                self._temp_end = self._current
                self._silence_start = chunk_start
            if self._current - self._temp_end < min_silence:
                return []
            self._temp_end = 0
            self._triggered = False
            return [VadEvent("end", int(self._silence_start + pad))]
        return []


def _check_audio(samples: np.ndarray) -> np.ndarray:
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError(f"expected mono samples [n], got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise AudioError(f"audio holds {bad} NaN or infinite samples")
    return audio
