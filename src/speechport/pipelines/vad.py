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

from speechport.errors import AudioError, BundleError
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
    """Speech from ``start`` to ``end`` (samples, end exclusive)."""

    start: int
    end: int

    def seconds(self, sample_rate: int) -> tuple[float, float]:
        return self.start / sample_rate, self.end / sample_rate


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
    return _pad(segments, pad, num_samples)


def _pad(segments: list[list[float]], pad: float, num_samples: int) -> list[SpeechSegment]:
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
    return [SpeechSegment(int(a), int(b)) for a, b in segments]


class VoiceActivityDetector:
    """Run a VAD bundle: probabilities per chunk, segments, streams."""

    def __init__(self, bundle: LoadedBundle) -> None:
        try:
            self.spec: VadSpec = bundle.manifest.require_vad()
        except BundleError as exc:
            raise BundleError(
                exc.message,
                path=bundle.path,
                hint="pass a voice-activity bundle (see `speechport info`)",
            ) from exc
        self.bundle = bundle
        self.sample_rate = bundle.manifest.sample_rate
        self.step = _Stepper(bundle.component("vad"))
        long = bundle.components.get("vad_long")
        self.long_step = None if long is None else _Stepper(long)
        self.defaults = VadParams.from_defaults(self.spec.defaults)

    def params(self, **overrides: Any) -> VadParams:
        return replace(self.defaults, **{k: v for k, v in overrides.items() if v is not None})

    def probabilities(self, samples: np.ndarray, *, use_long: bool = True) -> np.ndarray:
        """Speech probability of every ``chunk_samples`` of ``samples`` (the last chunk
        zero-padded), from a fresh state, the context starting as zeros."""
        audio = _check_audio(samples)
        chunk, context = self.spec.chunk_samples, self.spec.context_samples
        count = -(-audio.size // chunk)
        stepper = self.long_step if use_long and self.long_step is not None else self.step
        per_call = chunk * (self.spec.sub_chunks if stepper is self.long_step else 1)
        calls = -(-count * chunk // per_call)
        padded = np.zeros(context + calls * per_call, dtype=np.float32)
        padded[context : context + audio.size] = audio
        state = stepper.initial_state()
        out = np.empty(calls * (per_call // chunk), dtype=np.float32)
        for k in range(calls):
            window = padded[k * per_call : k * per_call + context + per_call]
            probs, state = stepper(window, state)
            out[k * (per_call // chunk) : (k + 1) * (per_call // chunk)] = probs
        return out[:count]

    def segments(self, samples: np.ndarray, params: VadParams | None = None) -> list[SpeechSegment]:
        audio = _check_audio(samples)
        return speech_segments(
            self.probabilities(audio),
            num_samples=audio.size,
            chunk_samples=self.spec.chunk_samples,
            sample_rate=self.sample_rate,
            params=params or self.defaults,
        )

    def stream(self, params: VadParams | None = None) -> VadStream:
        return VadStream(self, params or self.defaults)


class _Stepper:
    """One VAD component call: window -> per-chunk probabilities, state threaded."""

    def __init__(self, component: Component) -> None:
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
        self.window = spec.inputs[self._audio_in].shape[-1]

    def initial_state(self) -> np.ndarray:
        return np.zeros(self._state_shape, dtype=self._state_dtype)

    def __call__(self, window: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inputs: list[np.ndarray] = [np.empty(0), np.empty(0)]
        inputs[self._audio_in] = window.reshape(1, -1)
        inputs[self._state_in] = state
        outputs = self._component(*inputs)
        return outputs[self._probs_out].reshape(-1), outputs[self._state_out]


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
    ``VADIterator`` semantics (start padded back by ``speech_pad``; end after
    ``min_silence`` below the exit threshold, padded forward)."""

    detector: VoiceActivityDetector
    params: VadParams
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    _context: np.ndarray | None = None
    _state: np.ndarray | None = None
    _current: int = 0
    _triggered: bool = False
    _temp_end: int = 0

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        """Process whole chunks of ``samples`` (the rest waits for the next call)."""
        spec = self.detector.spec
        audio = np.asarray(samples, dtype=np.float32).reshape(-1)
        if audio.size and not np.all(np.isfinite(audio)):
            raise AudioError("audio holds NaN or infinite samples", component="vad stream")
        self._pending = np.concatenate([self._pending, audio])
        events: list[VadEvent] = []
        chunk = spec.chunk_samples
        while self._pending.size >= chunk:
            events += self._step(self._pending[:chunk])
            self._pending = self._pending[chunk:]
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: process the partial chunk (zero-padded) and close an open
        segment at the end of the audio."""
        events: list[VadEvent] = []
        chunk = self.detector.spec.chunk_samples
        if self._pending.size:
            fed = self._pending.size
            events += self._step(np.pad(self._pending, (0, chunk - fed)), fed=fed)
            self._pending = np.zeros(0, dtype=np.float32)
        if self._triggered:
            events.append(VadEvent("end", self._current))
            self._triggered = False
        return events

    def _step(self, chunk: np.ndarray, fed: int | None = None) -> list[VadEvent]:
        spec = self.detector.spec
        stepper = self.detector.step
        if self._state is None or self._context is None:
            self._state = stepper.initial_state()
            self._context = np.zeros(spec.context_samples, dtype=np.float32)
        window = np.concatenate([self._context, chunk])
        probs, self._state = stepper(window, self._state)
        self._context = window[-spec.context_samples :]
        size = chunk.size
        self._current += size if fed is None else fed
        prob = float(probs[0])
        sr = self.detector.sample_rate
        pad = sr * self.params.speech_pad_ms / 1000
        min_silence = sr * self.params.min_silence_ms / 1000
        if prob >= self.params.threshold and self._temp_end:
            self._temp_end = 0
        if prob >= self.params.threshold and not self._triggered:
            self._triggered = True
            return [VadEvent("start", int(max(0, self._current - pad - size)))]
        if prob < self.params.exit_threshold and self._triggered:
            if not self._temp_end:
                self._temp_end = self._current
            if self._current - self._temp_end < min_silence:
                return []
            end = self._temp_end + pad - size
            self._temp_end = 0
            self._triggered = False
            return [VadEvent("end", int(end))]
        return []


def _check_audio(samples: np.ndarray) -> np.ndarray:
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError(f"expected mono samples [n], got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise AudioError(f"audio holds {bad} NaN or infinite samples")
    return audio
