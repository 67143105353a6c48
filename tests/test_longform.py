"""Long audio: windows no longer than the encoder window, cut in pauses, decoded one by one
with a fresh decoder state, timestamps offset and monotonic, no word lost or duplicated."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechport.pipelines.transcriber import Transcriber
from speechport.pipelines.vad import VoiceActivityDetector
from speechport.runtime import load_bundle
from tests.helpers import BundleCache, checkpoint, gigaam_clip

SR = 16000
VAD_DATA = Path(__file__).parent / "data" / "vad"


def _speech_span(audio: np.ndarray, level: float = 1e-3) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(audio) > level)
    return int(loud[0]), int(loud[-1]) + 1


def _long_recording(
    variant: str, seconds: float, seed: int, clip_ids: tuple[int, ...] = (0, 1, 2)
) -> tuple[np.ndarray, list[int], list[tuple[int, int]]]:
    """Fixture clips in random order, separated by 0.4-1.0 s pauses, at least ``seconds``
    long. Returns the audio, the clip order and each clip's speech span."""
    rng = np.random.default_rng(seed)
    clips = {i: gigaam_clip(variant, i).audio for i in clip_ids}
    parts: list[np.ndarray] = []
    order: list[int] = []
    spans: list[tuple[int, int]] = []
    position = 0
    while position < seconds * SR:
        pause = np.zeros(int(rng.uniform(0.4, 1.0) * SR), dtype=np.float32)
        index = int(rng.choice(clip_ids))
        first, last = _speech_span(clips[index])
        position += pause.size
        spans.append((position + first, position + last))
        parts += [pause, clips[index]]
        order.append(index)
        position += clips[index].size
    parts.append(np.zeros(SR // 2, dtype=np.float32))
    return np.concatenate(parts), order, spans


@pytest.fixture(scope="module")
def short_window_bundle(bundle_cache: BundleCache) -> Path:
    return bundle_cache.get(
        "gigaam", checkpoint("v3_e2e_rnnt"), "v3_e2e_rnnt", formats="onnx", window_seconds=6.0
    )


@pytest.mark.slow
def test_ninety_seconds_equal_their_windows_decoded_one_by_one(
    gigaam_bundles: dict[str, Path],
) -> None:
    audio, _, spans = _long_recording("v3_e2e_rnnt", 92.0, seed=1)
    assert audio.size / SR >= 90.0
    transcriber = Transcriber(load_bundle(gigaam_bundles["v3_e2e_rnnt"], "onnx"))
    windows = transcriber.plan(audio)
    assert len(windows) >= 4
    assert windows[0].start == 0 and windows[-1].end == audio.size
    for left, right in itertools.pairwise(windows):
        assert left.end == right.start
    for window in windows:
        assert window.end - window.start <= transcriber.window_samples
    for window in windows[:-1]:
        cut = window.end
        assert not any(a <= cut < b for a, b in spans), f"cut at {cut / SR:.2f} s is in speech"

    transcript = transcriber.transcribe(audio)
    assert len(transcript.segments) == len(windows)
    for segment, window in zip(transcript.segments, windows, strict=True):
        alone = transcriber.transcribe(audio[window.start : window.end])
        assert segment.token_ids == alone.token_ids
        assert segment.frames == alone.segments[0].frames
        offset = window.start / SR
        assert [w.text for w in segment.words] == [w.text for w in alone.words]
        np.testing.assert_allclose(
            [w.start for w in segment.words], [w.start + offset for w in alone.words]
        )
    assert transcript.token_ids, "the model emits tokens on this audio"
    starts = [t.start for t in transcript.tokens]
    assert starts == sorted(starts)
    words = transcript.words
    assert all(w.start <= w.end for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert words[-1].end <= audio.size / SR


def test_every_clip_lands_whole_in_exactly_one_window(short_window_bundle: Path) -> None:
    """No word can be lost or duplicated at a seam when no speech is cut: with a 6 s window
    (about one clip per window) every clip's speech must fall whole inside one window, and
    the transcript must be the windows' transcripts in order, each decoded from a fresh
    state.

    (The transcripts themselves are not compared with upstream's: the tiny fixture models
    were trained on the clips exactly as cut and change their output when a clip is shifted
    by a few tens of milliseconds, which any segmentation does.)"""
    audio, _, spans = _long_recording("v3_e2e_rnnt", 60.0, seed=7)
    transcriber = Transcriber(load_bundle(short_window_bundle, "onnx"))
    windows = transcriber.plan(audio)
    holders = [
        [k for k, w in enumerate(windows) if w.start <= first and last <= w.end]
        for first, last in spans
    ]
    assert all(len(h) == 1 for h in holders), "a clip's speech was split across windows"
    assert len({h[0] for h in holders}) >= len(spans) - 2  # about one clip per window
    transcript = transcriber.transcribe(audio)
    pieces = [transcriber.transcribe(audio[w.start : w.end]).text for w in windows]
    assert transcript.text == " ".join(p for p in pieces if p)


@pytest.mark.slow
def test_vad_windows_never_cut_a_word(
    gigaam_bundles: dict[str, Path], short_window_bundle: Path, vad_bundle: Path
) -> None:
    """Synthesised speech whose every word position is known, five times over (107 s),
    clean and under noise at 10 dB SNR, started at 8 different offsets: windows built from
    the VAD's segments (30 s and 6 s encoder windows) hold every word whole. In noise the
    VAD can split a word at a short dip; windows then end at the clear pauses instead."""
    meta = json.loads((VAD_DATA / "words.json").read_text())
    one = meta["samples"]
    words = [(w["start"] + k * one, w["end"] + k * one) for k in range(5) for w in meta["words"]]
    vad = VoiceActivityDetector(load_bundle(vad_bundle, "onnx"))
    transcribers = [
        Transcriber(load_bundle(bundle, "onnx"), vad=vad)
        for bundle in (gigaam_bundles["v3_e2e_rnnt"], short_window_bundle)
    ]
    for name in ("words.wav", "noisy.wav"):
        long = np.concatenate([_read(VAD_DATA / name)] * 5)
        for offset in range(0, 200_000, 25_013):
            audio = long[offset:]
            spans = [(s - offset, e - offset) for s, e in words if s >= offset]
            for transcriber in transcribers:
                windows = transcriber.plan(audio)
                assert all(w.end - w.start <= transcriber.window_samples for w in windows)
                assert all(a.end <= b.start for a, b in itertools.pairwise(windows))
                for start, end in spans:
                    holders = [w for w in windows if w.start <= start and end <= w.end]
                    assert len(holders) == 1, (
                        f"{name} from {offset}: word at {start / SR:.2f}-{end / SR:.2f} s cut"
                    )
    transcriber = transcribers[0]
    audio = np.concatenate([_read(VAD_DATA / "words.wav")] * 5)
    transcript = transcriber.transcribe(audio)
    windows = transcriber.plan(audio)
    assert [(s.start, s.end) for s in transcript.segments] == [
        (w.start / SR, w.end / SR) for w in windows
    ]
    for segment in transcript.segments:
        assert all(segment.start <= t.start < segment.end for t in segment.tokens)


def test_transcribe_cli_with_vad(
    gigaam_bundles: dict[str, Path], vad_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from speechport.cli import main

    path = VAD_DATA / "words.wav"
    code = main(
        [
            "transcribe",
            str(gigaam_bundles["v3_ctc"]),
            str(path),
            "--vad",
            str(vad_bundle),
            "--output",
            "json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    vad = VoiceActivityDetector(load_bundle(vad_bundle, "onnx"))
    spans = vad.segments(_read_words())
    assert len(data["segments"]) == 1  # 21 s of speech fit one 30 s window
    assert data["segments"][0]["start"] <= spans[0].start / SR
    assert data["segments"][0]["end"] >= spans[-1].end / SR


def _read_words() -> np.ndarray:
    return _read(VAD_DATA / "words.wav")


def _read(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == SR
    return np.asarray(audio)
