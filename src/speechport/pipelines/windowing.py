"""Cut long audio into encoder-sized windows at pauses, so that no word is cut in two.

The plan is greedy. From the start of the current window, the cut is searched for in
``[start + min_samples, start + max_samples]`` (``min_samples`` defaults to
``search_fraction * max_samples``), on a level curve computed once for the whole clip:

1. *Level.* Mean power of ``frame_ms`` frames, averaged (in power, not dB) over a centred
   window of ``smooth_ms`` (an odd number of frames: 11 for the defaults), in dB. This
   steadies the frame-to-frame swing of a noisy pause floor, so a pause stays one quiet run;
   and since power is averaged, one loud frame lifts its neighbourhood, so a pause shorter
   than ``smooth_ms`` (a stop closure inside a word) never looks as quiet as a real pause.
2. *Silence floor.* Levels more than 80 dB below the clip's loud frames (its 95th percentile)
   are clamped to that floor: digital zeros and dither are equally silent, and the length of
   the pause, not a meaningless dB difference, then decides between them.
3. *Quiet frames.* In the search range, the frames within ``tolerance`` of the quietest one,
   where ``tolerance = min(6 dB, 25 % of the loud-to-quietest range)``: 6 dB on clean speech;
   less where the whole range is small (continuous noise, music), so that louder parts
   never count as quiet.
4. *Cut.* The centre of the longest run of consecutive quiet frames (the first if tied): a
   long pause is the safest place, and its centre is farthest from the words on either side.

Windows are contiguous, cover every sample once, and hold at most ``max_samples`` each; all
but the last hold at least ``min_samples``. When the search range holds no whole frame, the
cut falls at its end.

Cost: one pass over the samples (a float32 dot product per frame) plus O(frames) work; for one
hour at 16 kHz (57.6 M samples, 360 k frames) about 50 ms and a few MB beyond the samples.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

_LOUD_PERCENTILE = 95.0
_SILENCE_RANGE_DB = 80.0
_QUIET_TOLERANCE_DB = 6.0
_QUIET_TOLERANCE_SHARE = 0.25
_TINY_POWER = 1e-30


@dataclass(frozen=True)
class Window:
    """Samples ``[start, end)`` of the clip."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"a window needs 0 <= start < end, got [{self.start}, {self.end})")

    @property
    def num_samples(self) -> int:
        """Length in samples."""
        return self.end - self.start

    def offset_seconds(self, sample_rate: int) -> float:
        """Where the window starts in the clip, in seconds."""
        return self.start / sample_rate


def plan_windows(
    samples: np.ndarray,
    sample_rate: int,
    max_samples: int,
    *,
    min_samples: int | None = None,
    frame_ms: float = 10.0,
    smooth_ms: float = 100.0,
    search_fraction: float = 0.5,
) -> list[Window]:
    """Split mono ``samples`` into contiguous windows of at most ``max_samples``, cut at pauses.

    ``min_samples`` is the earliest cut after a window's start (every window but the last is at
    least that long); it defaults to ``search_fraction * max_samples``. Empty input gives ``[]``.
    """
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples of shape [n], got {samples.shape}")
    if frame_ms <= 0 or smooth_ms < 0:
        raise ValueError(f"need frame_ms > 0 and smooth_ms >= 0, got {frame_ms}, {smooth_ms}")
    frame = frame_samples(sample_rate, frame_ms)
    total = int(samples.shape[0])
    power = _frame_power(samples, frame) if total > max_samples > 0 else np.zeros(0)
    return plan_windows_from_power(
        power,
        total,
        sample_rate,
        max_samples,
        min_samples=min_samples,
        frame_ms=frame_ms,
        smooth_ms=smooth_ms,
        search_fraction=search_fraction,
    )


def frame_samples(sample_rate: int, frame_ms: float = 10.0) -> int:
    """Samples per level frame."""
    return max(1, round(frame_ms * sample_rate / 1000))


def plan_windows_from_power(
    power: np.ndarray,
    total: int,
    sample_rate: int,
    max_samples: int,
    *,
    min_samples: int | None = None,
    frame_ms: float = 10.0,
    smooth_ms: float = 100.0,
    search_fraction: float = 0.5,
) -> list[Window]:
    """`plan_windows` of ``total`` samples from the mean power of their whole frames of
    ``frame_samples(sample_rate, frame_ms)`` (`FramePower`), so that the samples need not be
    in memory; the same windows."""
    if frame_ms <= 0 or smooth_ms < 0:
        raise ValueError(f"need frame_ms > 0 and smooth_ms >= 0, got {frame_ms}, {smooth_ms}")
    earliest = _check_arguments(sample_rate, max_samples, min_samples, search_fraction)
    if total == 0:
        return []
    if total <= max_samples:
        return [Window(0, total)]
    frame = frame_samples(sample_rate, frame_ms)
    half_width = max(0, round(smooth_ms / (2 * frame_ms)))
    level, loud = _level_db(power, half_width)
    windows: list[Window] = []
    start = 0
    while total - start > max_samples:
        cut = _choose_cut(level, loud, frame, start + earliest, start + max_samples)
        windows.append(Window(start, cut))
        start = cut
    windows.append(Window(start, total))
    return windows


class FramePower:
    """The mean power of every whole ``frame`` of a stream of samples, fed in blocks of any
    size: the same numbers as computing it on the whole array at once (each frame's dot
    product is computed alone), in 8 bytes per frame."""

    def __init__(self, frame: int) -> None:
        if frame <= 0:
            raise ValueError(f"frame must be positive, got {frame}")
        self.frame = frame
        self._rest = np.zeros(0, dtype=np.float32)
        self._parts: list[np.ndarray] = []

    def feed(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32)
        if self._rest.size:
            take = min(self.frame - self._rest.size, samples.size)
            self._rest = np.concatenate([self._rest, samples[:take]])
            samples = samples[take:]
            if self._rest.size < self.frame:
                return
            self._parts.append(_frame_power(self._rest, self.frame))
            self._rest = np.zeros(0, dtype=np.float32)
        whole = samples.size // self.frame * self.frame
        if whole:
            self._parts.append(_frame_power(samples[:whole], self.frame))
        self._rest = np.array(samples[whole:], dtype=np.float32)

    def result(self) -> np.ndarray:
        """The power of every whole frame fed so far (float64)."""
        if len(self._parts) != 1:
            self._parts = [np.concatenate(self._parts) if self._parts else np.zeros(0)]
        return self._parts[0]


def _check_arguments(
    sample_rate: int,
    max_samples: int,
    min_samples: int | None,
    search_fraction: float,
) -> int:
    """Validate; return the earliest cut offset."""
    if sample_rate <= 0 or max_samples <= 0:
        raise ValueError(
            f"sample_rate and max_samples must be positive: {sample_rate}, {max_samples}"
        )
    if not 0.0 <= search_fraction <= 1.0:
        raise ValueError(f"search_fraction must lie in [0, 1], got {search_fraction}")
    earliest = int(search_fraction * max_samples) if min_samples is None else min_samples
    if min_samples is not None and not 1 <= min_samples <= max_samples:
        raise ValueError(f"min_samples must lie in [1, max_samples], got {min_samples}")
    return max(1, earliest)


def _frame_power(samples: np.ndarray, frame: int) -> np.ndarray:
    """Mean power of each whole frame (a trailing partial frame is never searched)."""
    count = samples.shape[0] // frame
    frames = np.asarray(samples[: count * frame], dtype=np.float32).reshape(count, frame)
    power = np.asarray(np.einsum("ij,ij->i", frames, frames), dtype=np.float64) / frame
    if not np.isfinite(power).all():
        raise ValueError("samples contain NaN or Inf values")
    return power


def _level_db(power: np.ndarray, half_width: int) -> tuple[np.ndarray, float]:
    """Centred moving average of power over ``2 * half_width + 1`` frames in dB, floored; and
    the loud level (dB) it is floored against."""
    if power.shape[0] == 0:
        return power, 0.0
    kernel = np.ones(2 * half_width + 1)
    summed = np.convolve(power, kernel, mode="same")
    counts = np.convolve(np.ones_like(power), kernel, mode="same")
    level = 10.0 * np.log10(summed / counts + _TINY_POWER)
    loud = float(np.percentile(level, _LOUD_PERCENTILE))
    return np.maximum(level, loud - _SILENCE_RANGE_DB), loud


def _choose_cut(level: np.ndarray, loud: float, frame: int, lowest: int, highest: int) -> int:
    """The cut sample in ``[lowest, highest]``: centre of the longest quiet run of frames."""
    first = -(-lowest // frame)  # first frame starting at or after `lowest`
    stop = min(highest // frame, level.shape[0])  # frames ending at or before `highest`
    if stop <= first:
        return highest
    region = level[first:stop]
    quietest = float(region.min())
    tolerance = min(_QUIET_TOLERANCE_DB, _QUIET_TOLERANCE_SHARE * max(loud - quietest, 0.0))
    run_start, run_stop = _longest_run(region <= quietest + tolerance)
    return (first + run_start + first + run_stop) * frame // 2


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """``[start, stop)`` of the first longest run of True (``mask`` has at least one True)."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


def plan_speech_windows(
    spans: list[tuple[int, int]],
    samples: np.ndarray,
    sample_rate: int,
    max_samples: int,
    *,
    margin_ms: float = 250.0,
    clear_pause_ms: float = 300.0,
    frame_ms: float = 10.0,
    smooth_ms: float = 30.0,
) -> list[Window]:
    """Windows of at most ``max_samples`` built from speech ``spans`` (from a VAD).

    Overlapping spans are merged first. Each span is then widened by ``margin_ms`` on both
    sides, but never past the quietest point of the gap to its neighbour: a VAD opens a
    segment a few tens of milliseconds into a soft onset (a fricative), and a recogniser must
    hear it; the quietest point of the gap is the pause, where no word is. A window then
    takes as many spans as fit and ends after the last one followed by a clear pause
    (``clear_pause_ms``), else after the one followed by the longest pause: cuts fall
    between spans, in the pauses, and the audio between windows (silence) is not decoded.
    A span longer than ``max_samples`` is cut inside at its quietest points (`plan_windows`
    on that span, with light smoothing, since pauses inside speech are short).
    """
    samples = np.asarray(samples)
    inner = frame_samples(sample_rate)

    def span_power(long: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        return [_frame_power(samples[a:b], inner) for a, b in long]

    return plan_speech_windows_from_power(
        spans,
        _frame_power(samples, frame_samples(sample_rate, frame_ms)),
        len(samples),
        sample_rate,
        max_samples,
        span_power,
        margin_ms=margin_ms,
        clear_pause_ms=clear_pause_ms,
        frame_ms=frame_ms,
        smooth_ms=smooth_ms,
    )


SpanPower = Callable[[Sequence[tuple[int, int]]], list[np.ndarray]]


def plan_speech_windows_from_power(
    spans: list[tuple[int, int]],
    power: np.ndarray,
    total: int,
    sample_rate: int,
    max_samples: int,
    span_power: SpanPower,
    *,
    margin_ms: float = 250.0,
    clear_pause_ms: float = 300.0,
    frame_ms: float = 10.0,
    smooth_ms: float = 30.0,
) -> list[Window]:
    """`plan_speech_windows` of ``total`` samples from the power of their whole frames of
    ``frame_samples(sample_rate, frame_ms)``; ``span_power(spans)`` gives, for the spans
    longer than ``max_samples`` (all at once, so that a stream is read once more at most),
    the power of their own 10 ms frames counted from each span's start."""
    merged = _merge(spans, total)
    if not merged:
        return []
    frame = frame_samples(sample_rate, frame_ms)
    half_width = max(0, round(smooth_ms / (2 * frame_ms)))
    level, loud = _level_db(power, half_width)
    bounds = (
        [0]
        + [
            _choose_cut(level, loud, frame, end, start)
            for (_, end), (start, _) in itertools.pairwise(merged)
        ]
        + [total]
    )
    margin = round(margin_ms * sample_rate / 1000)
    widened = [
        (max(bounds[i], start - margin), min(bounds[i + 1], end + margin))
        for i, (start, end) in enumerate(merged)
    ]
    long = [(a, b) for a, b in widened if b - a > max_samples]
    inside_power = iter(span_power(long) if long else [])
    # the silence after each span (the last one: unbounded), to choose where windows end
    pauses = [b[0] - a[1] for a, b in itertools.pairwise(merged)] + [total + 1]
    clear_pause = round(clear_pause_ms * sample_rate / 1000)
    windows: list[Window] = []
    i = 0
    while i < len(widened):
        start, end = widened[i]
        if end - start > max_samples:
            inside = plan_windows_from_power(
                next(inside_power), end - start, sample_rate, max_samples, smooth_ms=smooth_ms
            )
            windows += [Window(start + w.start, start + w.end) for w in inside]
            i += 1
            continue
        last = _window_end(widened, pauses, i, max_samples, clear_pause)
        windows.append(Window(start, widened[last][1]))
        i = last + 1
    return windows


def _window_end(
    widened: list[tuple[int, int]],
    pauses: list[int],
    first: int,
    max_samples: int,
    clear_pause: int,
) -> int:
    """The last span of the window opened by span ``first``: of the spans that fit, the
    latest one followed by a clear pause (``clear_pause`` samples or more); failing that,
    the one followed by the longest pause. (A VAD can split a word at a short dip in noise;
    cutting there would cut the word.)"""
    start = widened[first][0]
    fitting = [first]
    for j in range(first + 1, len(widened)):
        if widened[j][1] - start > max_samples:
            break
        fitting.append(j)
    clear = [j for j in fitting if pauses[j] >= clear_pause]
    return clear[-1] if clear else max(fitting, key=lambda j: (pauses[j], j))


def _merge(spans: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """Spans clipped to ``[0, total]``, sorted, with overlapping or touching ones merged."""
    out: list[list[int]] = []
    for start, end in sorted((max(0, s), min(total, e)) for s, e in spans):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]
