"""Offline transcription: long audio in windows, greedy decoding, token and word timestamps.

Everything is driven by the manifest: the front end, the window, the decoding algorithm and
its state. The transcriber never asks which family it runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speechport import interrupts
from speechport.audio import AudioInput, AudioSource, BlockReader, open_audio
from speechport.decoding import DecodeSettings, Hypothesis, decoding_algorithm
from speechport.errors import BundleError, SpeechportError
from speechport.features import build_frontend
from speechport.manifest import NP_DTYPES, DecodingSpec
from speechport.pipelines.batch import ManyFiles
from speechport.pipelines.seams import (
    DEFAULT_TOLERANCE,
    WindowTokens,
    merge_windows,
    plan_overlapping_windows,
)
from speechport.pipelines.vad import VadParams, VoiceActivityDetector
from speechport.pipelines.windowing import (
    FramePower,
    Window,
    frame_samples,
    plan_speech_windows,
    plan_speech_windows_from_power,
    plan_windows,
    plan_windows_from_power,
)
from speechport.runtime.base import (
    Component,
    JointProjections,
    LoadedBundle,
    bucket_sizes,
    dynamic_axes,
    joint_projections,
    smallest_bucket,
)
from speechport.runtime.blas import one_blas_thread
from speechport.tokenizer import Tokenizer


@dataclass(frozen=True)
class TokenTiming:
    id: int
    piece: str
    start: float
    end: float


@dataclass(frozen=True)
class WordTiming:
    text: str
    start: float
    end: float


@dataclass
class Segment:
    """The transcript of one window of the input."""

    start: float
    end: float
    text: str
    token_ids: list[int]
    frames: list[int]
    tokens: list[TokenTiming] = field(default_factory=list)
    words: list[WordTiming] = field(default_factory=list)
    durations: list[int] | None = None


@dataclass
class Transcript:
    segments: list[Segment]
    duration: float
    engine: str
    source: str | None = None

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    @property
    def words(self) -> list[WordTiming]:
        return [w for s in self.segments for w in s.words]

    @property
    def tokens(self) -> list[TokenTiming]:
        return [t for s in self.segments for t in s.tokens]

    @property
    def token_ids(self) -> list[int]:
        return [i for s in self.segments for i in s.token_ids]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "text": self.text,
            "duration": round(self.duration, 3),
            "engine": self.engine,
            "segments": [
                {
                    "start": round(s.start, 3),
                    "end": round(s.end, 3),
                    "text": s.text,
                    "words": [
                        {"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}
                        for w in s.words
                    ],
                    "tokens": [
                        {
                            "id": t.id,
                            "piece": t.piece,
                            "start": round(t.start, 3),
                            "end": round(t.end, 3),
                        }
                        for t in s.tokens
                    ],
                }
                for s in self.segments
            ],
        }


@dataclass
class WindowDecode:
    """What one window decodes to: the hypothesis and how many encoder frames were valid."""

    hypothesis: Hypothesis
    encoded_len: int
    num_samples: int


WindowDecoder = Callable[[tuple[np.ndarray, ...]], tuple[Hypothesis, int]]


class Transcriber(ManyFiles):
    """Transcribe audio with a loaded ASR bundle.

    Long audio is cut into windows no longer than the encoder window (or the shorter
    ``window_seconds``), each decoded from a fresh state, in one of three ways:

    - given a voice-activity ``vad``: windows built from its speech segments (merged up to
      the window; silence between them is skipped);
    - with an ``overlap`` of O > 0 seconds: windows that overlap by O seconds (starts on the
      encoder's frame grid), their tokens merged at the seams so that every word comes once
      and whole from the window where it lies farther from the edge
      (`speechport.pipelines.seams`; ``tolerance`` is how far apart in time two windows may
      place the same token);
    - otherwise (O = 0): contiguous windows cut at the quietest points.

    ``overlap=None`` takes the bundle's default (``window.overlap_seconds`` in the manifest;
    absent: 0). With a ``vad`` the overlap must be left at its default, which is ignored.
    """

    def __init__(
        self,
        bundle: LoadedBundle,
        *,
        vad: VoiceActivityDetector | None = None,
        vad_params: VadParams | None = None,
        overlap: float | None = None,
        window_seconds: float | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        manifest = bundle.manifest
        window, decoding, tokenizer = manifest.require_asr(bundle.path)
        self.bundle = bundle
        self.manifest = manifest
        self.window = window
        self.decoding = decoding
        sample_rate = manifest.sample_rate
        self.window_samples = _effective_window(window.samples, sample_rate, window_seconds)
        self.overlap_samples = _overlap_samples(
            overlap, window.overlap_seconds, self.window_samples, sample_rate, vad
        )
        if tolerance < 0:
            raise SpeechportError(f"the seam tolerance must be >= 0 seconds, got {tolerance}")
        self.tolerance = tolerance
        self.frontend = build_frontend(manifest.frontend)
        self.tokenizer = Tokenizer.from_bundle(bundle.path, tokenizer)
        self.algorithm = decoding_algorithm(decoding.algorithm)
        self._encoder = bundle.of_kind("encoder")
        self._features_shape = self._encoder.spec.inputs[0].shape
        # An engine that takes the features at any length runs only the frames there are.
        self._any_length = len(self._features_shape) - 1 in dynamic_axes(self._encoder)
        # An engine that takes them at a few lengths (shape buckets) runs the shortest that fits.
        self._buckets = bucket_sizes(self._encoder).get(len(self._features_shape) - 1, ())
        self._decode_outputs = _window_decoder(decoding, bundle)
        self.vad = vad
        self.vad_params = vad_params
        if vad is not None and vad.sample_rate != manifest.sample_rate:
            raise BundleError(
                f"the VAD runs at {vad.sample_rate} Hz, the ASR model at {manifest.sample_rate}",
                path=vad.bundle.path,
            )

    @property
    def sample_rate(self) -> int:
        return self.manifest.sample_rate

    @property
    def overlap_seconds(self) -> float:
        """The overlap between windows in seconds (0: windows cut at pauses)."""
        return self.overlap_samples / self.sample_rate

    @property
    def frame_samples(self) -> int:
        """Samples per encoder frame: window starts are multiples of it, so that all windows'
        frames fall on one grid."""
        return max(1, round(self.decoding.frame_duration * self.sample_rate))

    def decode_window(self, samples: np.ndarray) -> WindowDecode:
        """Decode up to one window of audio (see ``encoder_inputs``). Once Ctrl-C or
        SIGTERM has arrived (``speechport.interrupts``), the next window raises it again: a
        worker thread of ``transcribe --jobs``, which the signal's exception does not reach,
        stops within a window instead of finishing its file."""
        interrupts.check()
        samples = np.asarray(samples, dtype=np.float32)
        if samples.size > self.window.samples:
            raise ValueError(
                f"{samples.size} samples exceed the {self.window.samples}-sample window"
            )
        inputs = self.encoder_inputs(samples)
        if inputs is None:
            return WindowDecode(Hypothesis([], []), 0, samples.size)
        hypothesis, encoded_len = self.decode_encoded(self._encoder(*inputs))
        return WindowDecode(hypothesis, encoded_len, samples.size)

    def encoder_inputs(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The encoder's inputs for up to one window of audio: features zero-padded to the
        window and the number of valid frames; None when the audio is too short for a frame.

        When the encoder takes its features at any length (an ONNX file with a dynamic time
        axis), they are padded only up to a multiple of the subsampling factor: the valid
        encoder frames are the same, and the frames past them are not computed. When it
        takes them at a few lengths (a Core ML file with shape buckets), they are padded to
        the shortest that holds the valid frames."""
        samples = np.asarray(samples, dtype=np.float32)
        valid = self.frontend.num_frames(samples.size)
        if valid == 0:
            return None
        features = self.frontend(samples)
        frames = self._features_shape[-1]
        if self._any_length:
            factor = max(1, self.decoding.subsampling_factor)
            frames = min(frames, -(-valid // factor) * factor)
        else:
            frames = smallest_bucket(self._buckets, valid, frames)
        width = min(features.shape[1], frames)
        padded = np.zeros((*self._features_shape[:-1], frames), dtype=np.float32)
        padded[0, :, :width] = features[:, :width]
        return padded, np.array([valid], dtype=np.int32)

    def decode_encoded(self, outputs: tuple[np.ndarray, ...]) -> tuple[Hypothesis, int]:
        """Decode the encoder's outputs for one window: the hypothesis and ``encoded_len``."""
        return self._decode_outputs(outputs)

    def plan(self, samples: np.ndarray) -> list[Window]:
        """The windows long audio is cut into: from VAD segments when there is a VAD, else
        overlapping windows when the overlap is positive, else cut at low-energy points."""
        if self.vad is not None:
            segments = self.vad.segments(samples, self.vad_params)
            spans = [(s.start, s.end) for s in segments]
            return plan_speech_windows(spans, samples, self.sample_rate, self.window_samples)
        if self.overlap_samples > 0:
            return plan_overlapping_windows(
                int(np.asarray(samples).shape[0]),
                self.window_samples,
                self.overlap_samples,
                align=self.frame_samples,
            )
        return plan_windows(samples, self.sample_rate, self.window_samples)

    def transcribe(
        self,
        audio: AudioInput,
        *,
        sample_rate: int | None = None,
        source: str | None = None,
    ) -> Transcript:
        """Transcribe audio of any length: a file path (any format ffmpeg or libsndfile
        reads), or mono samples at ``sample_rate`` (default: the bundle's; other rates are
        resampled). ``source`` names it in the transcript (default: the path).

        >>> speechport.load("bundles/parakeet").transcribe("talk.wav").text
        """
        audio_source = open_audio(audio, sample_rate=sample_rate, target_rate=self.sample_rate)
        source = source if source is not None else audio_source.source
        windows, total = self.plan_source(audio_source)
        reader = BlockReader(audio_source.blocks())
        decoded = [self.decode_window(reader.read(w.start, w.end)) for w in windows]
        if self.vad is None and self.overlap_samples > 0:
            segments = self._merge(decoded, windows)
        else:
            segments = [self._segment(d, w) for d, w in zip(decoded, windows, strict=True)]
        return Transcript(
            segments=segments,
            duration=total / self.sample_rate,
            engine=self.bundle.engine,
            source=source,
        )

    def plan_source(self, source: AudioSource) -> tuple[list[Window], int]:
        """`plan` for audio read in blocks (a first pass: the level of every 10 ms frame, and
        the VAD's probabilities when there is a VAD; a VAD span longer than the window costs
        one more pass), and the number of samples: the same windows as `plan` on the whole
        array, holding one block at a time."""
        power = FramePower(frame_samples(self.sample_rate))
        probs = None if self.vad is None else self.vad.probability_stream()
        total = 0
        for block in source.blocks():
            total += block.size
            power.feed(block)
            if probs is not None:
                probs.feed(block)
        if self.vad is not None and probs is not None:
            segments = self.vad.segments_from(probs.finish(), total, self.vad_params)
            spans = [(s.start, s.end) for s in segments]

            def span_power(long: Sequence[tuple[int, int]]) -> list[np.ndarray]:
                return _span_power(source, long, power.frame)

            windows = plan_speech_windows_from_power(
                spans, power.result(), total, self.sample_rate, self.window_samples, span_power
            )
        elif self.overlap_samples > 0:
            windows = plan_overlapping_windows(
                total, self.window_samples, self.overlap_samples, align=self.frame_samples
            )
        else:
            windows = plan_windows_from_power(
                power.result(), total, self.sample_rate, self.window_samples
            )
        return windows, total

    def _merge(self, decoded: list[WindowDecode], windows: list[Window]) -> list[Segment]:
        """One segment per window, holding the tokens the seams give it; a segment spans
        from the seam before it to the seam after it."""
        if not windows:
            return []
        sr = self.sample_rate
        timed = [self._window_tokens(d, w) for d, w in zip(decoded, windows, strict=True)]
        ranges, seams = merge_windows(timed, tolerance=self.tolerance)
        bounds = [windows[0].start / sr, *(s.time for s in seams), windows[-1].end / sr]
        return [
            self._segment(d, w, keep=keep, bounds=(bounds[k], bounds[k + 1]))
            for k, (d, w, keep) in enumerate(zip(decoded, windows, ranges, strict=True))
        ]

    def _window_tokens(self, decoded: WindowDecode, window: Window) -> WindowTokens:
        sr = self.sample_rate
        offset = window.start / sr
        shift = self.frame_shift(decoded.num_samples, decoded.encoded_len)
        hyp = decoded.hypothesis
        word_of = [-1] * len(hyp.token_ids)
        for k, span in enumerate(self.tokenizer.words(hyp.token_ids)):
            word_of[span.first : span.last + 1] = [k] * (span.last - span.first + 1)
        return WindowTokens(
            start=offset,
            end=window.end / sr,
            ids=hyp.token_ids,
            times=[offset + f * shift for f in hyp.frames],
            words=word_of,
        )

    def _segment(
        self,
        decoded: WindowDecode,
        window: Window,
        *,
        keep: tuple[int, int] | None = None,
        bounds: tuple[float, float] | None = None,
    ) -> Segment:
        """The segment of one window: its tokens ``keep`` (default all), spanning ``bounds``
        (seconds) (default the window). A token ends at ``frame + max(duration, 1)`` frames
        when the decoder predicts durations (TDT), else one frame after it starts."""
        sr = self.sample_rate
        offset = window.start / sr
        shift = self.frame_shift(decoded.num_samples, decoded.encoded_len)
        hyp = decoded.hypothesis
        first, stop = (0, len(hyp.token_ids)) if keep is None else keep
        ids = hyp.token_ids[first:stop]
        frames = hyp.frames[first:stop]
        durations = None if hyp.durations is None else hyp.durations[first:stop]
        ends = (
            [f + max(d, 1) for f, d in zip(frames, durations, strict=True)]
            if durations
            else [f + 1 for f in frames]
        )
        tokens = [
            TokenTiming(i, self.tokenizer.piece(i), offset + f * shift, offset + e * shift)
            for i, f, e in zip(ids, frames, ends, strict=True)
        ]
        words = [
            WordTiming(span.text, tokens[span.first].start, tokens[span.last].end)
            for span in self.tokenizer.words(ids)
        ]
        start, end = (offset, window.end / sr) if bounds is None else bounds
        return Segment(
            start=start,
            end=end,
            text=self.tokenizer.decode(ids).strip(),
            token_ids=list(ids),
            frames=list(frames),
            tokens=tokens,
            words=words,
            durations=durations,
        )

    def frame_shift(self, num_samples: int, encoded_len: int) -> float:
        """Seconds per encoder frame in a window, by the manifest's timestamp rule."""
        d = self.decoding
        if d.timestamps == "stretch" and encoded_len > 0:
            return num_samples / self.sample_rate / encoded_len
        return d.frame_duration


def _window_decoder(d: DecodingSpec, bundle: LoadedBundle) -> WindowDecoder:
    """Decode one window's encoder outputs with the manifest's algorithm (see the table in
    ``speechport.decoding.registry``), a transducer's steps as ``transducer_steps`` runs
    them."""
    algorithm = decoding_algorithm(d.algorithm)
    settings = DecodeSettings(d.blank_id, d.max_symbols_per_frame, d.durations)
    steps = transducer_steps(bundle) if algorithm.transducer else None

    def decode(outputs: tuple[np.ndarray, ...]) -> tuple[Hypothesis, int]:
        frames = np.ascontiguousarray(algorithm.time_major(outputs[0]))
        length = int(outputs[1].reshape(-1)[0])
        if steps is None:
            return algorithm.search(frames, length, settings, None, None, None), length
        with one_blas_thread():  # the numpy step kernels' products (see runtime.numpy_steps)
            frames = steps.project(frames[:length])
            hypothesis = algorithm.search(
                frames, length, settings, steps.predict, steps.joint, steps.initial_state
            )
        return hypothesis, length

    return decode


@dataclass(frozen=True)
class TransducerSteps:
    """What a greedy transducer loop calls, built once per model: ``project`` turns a
    window's valid frames ``[T, D]`` into what ``joint`` takes (the joint's encoder
    projection in one product when it runs in parts, else the frames themselves);
    ``predict`` gives what ``joint`` takes for a token (the decoder output, projected when
    the joint runs in parts). Call them inside ``one_blas_thread()``."""

    predict: Any
    joint: Any
    initial_state: Any
    project: Callable[[np.ndarray], np.ndarray]


def transducer_steps(bundle: LoadedBundle) -> TransducerSteps:
    """The bundle's decoder step and joint as a loop calls them. A joint with
    ``JointProjections`` runs in parts: each frame and each decoder output projected once,
    so a step is the rest of the joint."""
    joint_component = bundle.of_kind("joint")
    projections = joint_projections(joint_component)
    predict, initial_state = predictor_for(bundle.of_kind("decoder_step"), projections)
    if projections is not None:
        return TransducerSteps(
            predict, projections.scores, initial_state, projections.project_encoder
        )

    def joint(enc_t: np.ndarray, dec_out: np.ndarray) -> np.ndarray:
        logits: np.ndarray = joint_component(enc_t[None, :], dec_out[None, :])[0][0]
        return logits

    return TransducerSteps(predict, joint, initial_state, _frames_as_they_are)


def _frames_as_they_are(frames: np.ndarray) -> np.ndarray:
    return frames


Predict = Callable[[int, tuple[np.ndarray, ...]], tuple[np.ndarray, tuple[np.ndarray, ...]]]


def predictor_for(
    decoder: Component, projections: JointProjections | None = None
) -> tuple[Predict, tuple[np.ndarray, ...]]:
    """A ``predict(token, state)`` over the decoder component, with state threaded through
    the manifest's state pairs, and the zero initial state; with ``projections`` its output
    goes through the joint's ``project_decoder``. A component that offers its own
    (``predictor()``, e.g. the numpy LSTM step) gives that one, its state opaque to the
    loops, which only pass it back; with projections that offer their ``decoder_affine``
    it fuses the projection into its own products. Run the loop inside
    ``one_blas_thread()``."""
    own = getattr(decoder, "predictor", None)
    affine = getattr(projections, "decoder_affine", None)
    if callable(own) and affine is not None:
        fused: tuple[Predict, tuple[np.ndarray, ...]] = own(output=affine)
        return fused
    predict, initial = own() if callable(own) else _canonical_predictor(decoder)
    if projections is None:
        return predict, initial
    project_decoder = projections.project_decoder

    def projected(token: int, state: tuple[np.ndarray, ...]) -> tuple[np.ndarray, Any]:
        dec_out, state = predict(token, state)
        return project_decoder(dec_out), state

    return projected, initial


def _canonical_predictor(decoder: Component) -> tuple[Predict, tuple[np.ndarray, ...]]:
    """``predict(token, state)`` calling the component with its canonical inputs."""
    spec = decoder.spec
    names_in = [t.name for t in spec.inputs]
    names_out = [t.name for t in spec.outputs]
    state_in = [names_in.index(p.input) for p in spec.state]
    state_out = [names_out.index(p.output) for p in spec.state]
    token_pos = next(i for i in range(len(names_in)) if i not in state_in)
    dec_pos = next(i for i in range(len(names_out)) if i not in state_out)
    token_dtype = NP_DTYPES[spec.inputs[token_pos].dtype]
    for pair in spec.state:
        if pair.init != "zeros":
            raise BundleError(f"unsupported initial state {pair.init!r} for {pair.input}")
    initial = tuple(
        np.zeros(spec.inputs[i].shape, dtype=NP_DTYPES[spec.inputs[i].dtype]) for i in state_in
    )
    arity = len(names_in)

    def predict(
        token: int, state: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        inputs: list[np.ndarray] = [np.empty(0)] * arity
        inputs[token_pos] = np.array([[token]], dtype=token_dtype)
        for pos, value in zip(state_in, state, strict=True):
            inputs[pos] = value
        outputs = decoder(*inputs)
        return outputs[dec_pos][0], tuple(outputs[i] for i in state_out)

    return predict, initial


def _span_power(
    source: AudioSource, spans: Sequence[tuple[int, int]], frame: int
) -> list[np.ndarray]:
    """The power of each span's own frames (counted from its start), in one more pass over
    ``source``; the spans are sorted and disjoint."""
    powers = [FramePower(frame) for _ in spans]
    position = 0
    for block in source.blocks():
        end = position + block.size
        for (a, b), power in zip(spans, powers, strict=True):
            if a < end and b > position:
                power.feed(block[max(a, position) - position : min(b, end) - position])
        position = end
    return [p.result() for p in powers]


# The shortest window long audio may be cut into (shorter ones hold too few frames for a word).
MIN_WINDOW_SECONDS = 1.0


def _effective_window(export_samples: int, sample_rate: int, seconds: float | None) -> int:
    """The window long audio is cut into: the export's, or a shorter one."""
    if seconds is None:
        return export_samples
    if not math.isfinite(seconds) or seconds < MIN_WINDOW_SECONDS:
        raise SpeechportError(
            f"a window of {seconds} s is not a length of at least {MIN_WINDOW_SECONDS:g} s",
            hint=f"pass a window in [{MIN_WINDOW_SECONDS:g} s, the bundle's window]",
        )
    samples = round(seconds * sample_rate)
    if not 0 < samples <= export_samples:
        raise SpeechportError(
            f"a window of {seconds} s does not fit the encoder's "
            f"{export_samples / sample_rate:g} s",
            hint="pass a window_seconds in (0, the bundle's window]",
        )
    return samples


def _overlap_samples(
    overlap: float | None,
    default: float | None,
    window_samples: int,
    sample_rate: int,
    vad: VoiceActivityDetector | None,
) -> int:
    """The overlap in samples (0: cut at pauses); checked against the window."""
    if vad is not None:
        if overlap:
            raise SpeechportError(
                "a VAD builds windows from its speech segments; it takes no overlap",
                hint="drop the overlap (--overlap) or the VAD (--vad)",
            )
        return 0
    seconds = default if overlap is None else overlap
    if not seconds:
        return 0
    if not math.isfinite(seconds):
        raise SpeechportError(f"the overlap must be a finite number of seconds, got {seconds}")
    samples = round(seconds * sample_rate)
    if not 0 < samples <= window_samples // 2:
        raise SpeechportError(
            f"an overlap of {seconds} s does not fit windows of {window_samples / sample_rate:g} s",
            hint="the overlap must lie in (0, half the window]; 0 cuts at pauses",
        )
    return samples
