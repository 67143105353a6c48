"""Cutting long audio into windows at pauses (speechport.pipelines.windowing)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechport.pipelines.windowing import Window, plan_speech_windows, plan_windows

RATE = 16000
FRAME = 160  # 10 ms, the default frame


def speech_like(
    rng: np.random.Generator, total_s: float, rate: int = RATE
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Bursts of noise or tone (0.5-4 s, with short 20-60 ms dips inside, like stop closures)
    separated by 0.2-1.0 s gaps of -60 dB noise. Returns the samples and the gaps."""
    total = int(total_s * rate)
    samples = (rng.standard_normal(total) * 1e-3).astype(np.float32)  # -60 dB floor
    gaps: list[tuple[int, int]] = []
    position = int(rng.uniform(0.2, 1.0) * rate)
    gaps.append((0, position))
    while position < total:
        burst = min(int(rng.uniform(0.5, 4.0) * rate), total - position)
        samples[position : position + burst] = _burst(rng, burst, rate)
        position += burst
        gap = int(rng.uniform(0.2, 1.0) * rate)
        gaps.append((position, min(position + gap, total)))
        position += gap
    return samples, gaps


def _burst(rng: np.random.Generator, num: int, rate: int) -> np.ndarray:
    if rng.random() < 0.5:
        burst = 0.3 * rng.standard_normal(num)
    else:
        burst = 0.4 * np.sin(2 * np.pi * rng.uniform(100, 400) * np.arange(num) / rate)
    for _ in range(num // rate):  # about one closure a second
        dip = int(rng.uniform(0.02, 0.06) * rate)
        at = int(rng.integers(0, max(1, num - dip)))
        burst[at : at + dip] = 1e-3 * rng.standard_normal(len(burst[at : at + dip]))
    return burst.astype(np.float32)


def assert_valid(windows: list[Window], total: int, max_samples: int, earliest: int) -> None:
    assert windows[0].start == 0
    assert windows[-1].end == total
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start
    assert all(w.num_samples <= max_samples for w in windows)
    assert all(w.num_samples >= earliest for w in windows[:-1])


def gap_containing(cut: int, gaps: list[tuple[int, int]]) -> tuple[int, int] | None:
    return next((gap for gap in gaps if gap[0] < cut < gap[1]), None)


@pytest.mark.parametrize("seed", range(5))
def test_cuts_fall_in_the_middle_of_gaps(seed: int) -> None:
    samples, gaps = speech_like(np.random.default_rng(seed), 95.0)
    max_samples = 30 * RATE
    windows = plan_windows(samples, RATE, max_samples)
    assert_valid(windows, len(samples), max_samples, max_samples // 2)
    assert len(windows) >= 4  # 95 s in windows of at most 30 s
    for window in windows[:-1]:
        gap = gap_containing(window.end, gaps)
        assert gap is not None, f"cut at {window.end / RATE:.3f} s is inside a burst"
        # The smoothed level is quiet only where its 110 ms window misses the bursts, so the
        # cut keeps at least 50 ms from each burst even in a 200 ms gap.
        assert min(window.end - gap[0], gap[1] - window.end) >= RATE * 0.05


def silence_then(samples: np.ndarray, start_s: float, length_s: float, level: float) -> None:
    begin, end = int(start_s * RATE), int((start_s + length_s) * RATE)
    noise = np.random.default_rng(7).standard_normal(end - begin)
    samples[begin:end] = (level * noise).astype(np.float32)


def continuous_noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)


def test_the_longest_pause_wins() -> None:
    samples = continuous_noise(40)
    silence_then(samples, 18.0, 0.3, 1e-3)
    silence_then(samples, 24.0, 0.8, 1e-3)
    windows = plan_windows(samples, RATE, 30 * RATE)
    assert abs(windows[0].end - int(24.4 * RATE)) <= FRAME


def test_a_deeper_pause_beats_a_longer_louder_one() -> None:
    samples = continuous_noise(40)
    silence_then(samples, 18.0, 0.3, 1e-3)  # -60 dB
    silence_then(samples, 24.0, 1.0, 1e-2)  # -40 dB: 20 dB above the deeper pause
    windows = plan_windows(samples, RATE, 30 * RATE)
    assert abs(windows[0].end - int(18.15 * RATE)) <= FRAME


def test_digital_silence_and_dither_are_equally_silent() -> None:
    """Both lie over 80 dB below the speech, so the longer pause wins, not the zeros."""
    samples = continuous_noise(40)
    silence_then(samples, 18.0, 0.3, 0.0)  # digital zeros
    silence_then(samples, 24.0, 0.8, 1e-5)  # -100 dB dither
    windows = plan_windows(samples, RATE, 30 * RATE)
    assert abs(windows[0].end - int(24.4 * RATE)) <= FRAME


def crackle(seconds: float, seed: int) -> np.ndarray:
    """A pause floor of clicks, about 5 per 10 ms frame: frame levels swing by over 20 dB."""
    rng = np.random.default_rng(seed)
    num = int(seconds * RATE)
    clicks = rng.random(num) < 5 / FRAME
    return (clicks * rng.uniform(-0.01, 0.01, num)).astype(np.float32)


def test_smoothing_keeps_a_fluctuating_pause_in_one_piece() -> None:
    """Frame by frame, the clicks split both pauses into random quiet fragments; averaged over
    110 ms they are steady, and the cut lands at the centre of the longer pause."""
    samples = continuous_noise(40)
    samples[18 * RATE : int(18.4 * RATE)] = crackle(0.4, seed=1)
    samples[24 * RATE : 25 * RATE] = crackle(1.0, seed=2)
    windows = plan_windows(samples, RATE, 30 * RATE)
    assert abs(windows[0].end - int(24.5 * RATE)) <= FRAME


def test_continuous_noise_still_gives_valid_windows() -> None:
    samples = continuous_noise(95)
    windows = plan_windows(samples, RATE, 30 * RATE)
    assert_valid(windows, len(samples), 30 * RATE, 15 * RATE)
    assert 4 <= len(windows) <= 7


def test_all_zeros_gives_valid_windows() -> None:
    samples = np.zeros(65 * RATE, dtype=np.float32)
    windows = plan_windows(samples, RATE, 30 * RATE)
    assert_valid(windows, len(samples), 30 * RATE, 15 * RATE)
    # One quiet run spans the whole search range: the cut is at its centre, 22.5 s in.
    assert windows[0].end == int(22.5 * RATE)


def test_short_signal_is_one_window() -> None:
    assert plan_windows(continuous_noise(3), RATE, 30 * RATE) == [Window(0, 3 * RATE)]


def test_exactly_max_samples_is_one_window() -> None:
    samples = continuous_noise(30)
    assert plan_windows(samples, RATE, len(samples)) == [Window(0, len(samples))]
    windows = plan_windows(samples, RATE, len(samples) - 1)
    assert len(windows) == 2
    assert_valid(windows, len(samples), len(samples) - 1, (len(samples) - 1) // 2)


def test_empty_signal_has_no_windows() -> None:
    assert plan_windows(np.zeros(0, np.float32), RATE, 100) == []


def test_min_samples_sets_the_earliest_cut() -> None:
    samples = continuous_noise(40)
    silence_then(samples, 12.0, 0.8, 1e-3)  # before the earliest cut: ignored
    silence_then(samples, 26.0, 0.3, 1e-3)
    windows = plan_windows(samples, RATE, 30 * RATE, min_samples=25 * RATE)
    assert abs(windows[0].end - int(26.15 * RATE)) <= FRAME
    windows = plan_windows(samples, RATE, 30 * RATE, search_fraction=0.3)
    assert abs(windows[0].end - int(12.4 * RATE)) <= FRAME


def test_tiny_max_samples_falls_back_to_the_bound() -> None:
    windows = plan_windows(continuous_noise(0.01), RATE, 50)  # 160 samples, frames of 160
    assert [(w.start, w.end) for w in windows] == [(0, 50), (50, 100), (100, 150), (150, 160)]


def test_window() -> None:
    window = Window(16000, 48000)
    assert window.num_samples == 32000
    assert window.offset_seconds(16000) == 1.0
    with pytest.raises(ValueError, match="start < end"):
        Window(5, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_samples": 0}, "positive"),
        ({"min_samples": 0}, "min_samples"),
        ({"min_samples": 101}, "min_samples"),
        ({"search_fraction": 1.5}, "search_fraction"),
        ({"frame_ms": 0.0}, "frame_ms"),
        ({"smooth_ms": -1.0}, "smooth_ms"),
    ],
)
def test_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    arguments: dict[str, float] = {"max_samples": 100, **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_windows(np.zeros(1000, np.float32), RATE, **arguments)  # type: ignore[arg-type]


def test_stereo_and_non_finite_are_rejected() -> None:
    with pytest.raises(ValueError, match="mono"):
        plan_windows(np.zeros((1000, 2), np.float32), RATE, 100)
    samples = np.zeros(1000, np.float32)
    samples[500] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plan_windows(samples, RATE, 100)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[np.ndarray, int, int, int | None, float, float]:
    """A random bursts-and-gaps signal at 8 kHz and random planning parameters."""
    rate = 8000
    pieces = draw(st.lists(st.tuples(st.integers(1, 8000), st.floats(0.0, 1.0)), max_size=12))
    seed = draw(st.integers(0, 2**16))
    noise = np.random.default_rng(seed).standard_normal(sum(n for n, _ in pieces) + 1)
    gains = np.concatenate([np.full(n, gain) for n, gain in pieces] + [np.ones(1)])
    samples = (noise * gains).astype(np.float32)
    max_samples = draw(st.integers(1, max(1, len(samples))))
    min_samples = draw(st.one_of(st.none(), st.integers(1, max_samples)))
    frame_ms = draw(st.sampled_from([1.0, 10.0, 25.0]))
    smooth_ms = draw(st.sampled_from([0.0, 50.0, 100.0]))
    return samples, rate, max_samples, min_samples, frame_ms, smooth_ms


@settings(max_examples=200, deadline=None)
@given(layouts(), st.floats(0.0, 1.0))
def test_windows_are_contiguous_cover_everything_and_respect_the_bound(
    layout: tuple[np.ndarray, int, int, int | None, float, float], search_fraction: float
) -> None:
    samples, rate, max_samples, min_samples, frame_ms, smooth_ms = layout
    windows = plan_windows(
        samples,
        rate,
        max_samples,
        min_samples=min_samples,
        frame_ms=frame_ms,
        smooth_ms=smooth_ms,
        search_fraction=search_fraction,
    )
    earliest = max(1, int(search_fraction * max_samples)) if min_samples is None else min_samples
    assert_valid(windows, len(samples), max_samples, earliest)
    assert windows == plan_windows(
        samples,
        rate,
        max_samples,
        min_samples=min_samples,
        frame_ms=frame_ms,
        smooth_ms=smooth_ms,
        search_fraction=search_fraction,
    )


# --- windows from speech spans (a VAD) ------------------------------------------------


def _speech(spans: list[tuple[int, int]], total: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal(total) * 1e-4).astype(np.float32)
    for start, end in spans:
        audio[start:end] = (rng.standard_normal(end - start) * 0.3).astype(np.float32)
    return audio


def test_speech_windows_merge_spans_up_to_the_window() -> None:
    sr = 16000
    spans = [(1 * sr, 3 * sr), (4 * sr, 6 * sr), (7 * sr, 9 * sr), (12 * sr, 14 * sr)]
    audio = _speech(spans, 16 * sr)
    windows = plan_speech_windows(spans, audio, sr, 6 * sr, margin_ms=200)
    assert [(w.start / sr, w.end / sr) for w in windows] == [
        (0.8, 6.2),
        (6.8, 9.2),
        (11.8, 14.2),
    ]


def test_speech_windows_merge_overlapping_and_contained_spans() -> None:
    sr = 16000
    audio = _speech([(0, 30_000)], 40_000)
    windows = plan_speech_windows(
        [(5000, 10_000), (0, 30_000), (29_000, 31_000)], audio, sr, 50_000, margin_ms=0
    )
    assert [(w.start, w.end) for w in windows] == [(0, 31_000)]


def test_speech_windows_widen_only_to_the_quietest_point_between_spans() -> None:
    """The VAD opened late: the next span's soft onset lies in the 'gap'. The margin must
    not reach into it; the boundary is the quiet part of the gap."""
    sr = 16000
    words = [(8000, 24000), (30000, 46000)]  # a 6000-sample pause, then the next word
    audio = _speech(words, 60000)
    vad_spans = [(8000, 24000), (31600, 46000)]  # opened 100 ms into the second word
    windows = plan_speech_windows(vad_spans, audio, sr, 32000, margin_ms=250)
    assert len(windows) == 2
    assert 24000 <= windows[0].end <= 30000
    assert windows[1].start <= 30000


def test_speech_windows_split_a_span_longer_than_the_window() -> None:
    sr = 16000
    words = [(i * 8000, i * 8000 + 7000) for i in range(12)]  # one long span, 1000-sample gaps
    audio = _speech(words, 12 * 8000)
    windows = plan_speech_windows([(0, 12 * 8000)], audio, sr, 30000, margin_ms=0)
    assert all(w.end - w.start <= 30000 for w in windows)
    assert [w.start for w in windows[1:]] == [w.end for w in windows[:-1]]
    for window in windows[:-1]:
        assert any(
            end <= window.end <= start for (_, end), (start, _) in itertools.pairwise(words)
        ), f"cut at {window.end} is inside a word"
