"""Long audio's windows encoded ahead on a background thread or in padded batches: the same
transcript as one window after another."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import speechport
from speechport.pipelines.window_encoding import SCHEDULES
from tests.helpers import CLIPS, gigaam_clip


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    """The four clips, each followed by a 0.5 s pause."""
    pause = np.zeros(8000, dtype=np.float32)
    clips = [gigaam_clip("v3_e2e_rnnt", i).audio for i in CLIPS]
    return np.concatenate([part for clip in clips for part in (clip, pause)])


@pytest.mark.parametrize("variant", ["v3_e2e_rnnt", "v3_ctc"])
def test_every_schedule_gives_the_plain_transcript(
    gigaam_onnx: Callable[[str], Path], recording: np.ndarray, variant: str
) -> None:
    model = speechport.load(gigaam_onnx(variant), window_seconds=3.0)
    windows = model.plan(recording)
    lengths = {w.num_samples for w in windows}
    assert len(windows) >= 6 and len(lengths) > 1  # batches pad windows of several lengths
    model.window_schedule = "plain"
    plain = model.transcribe(recording).to_dict()
    assert plain["text"]
    for schedule in SCHEDULES:
        model.window_schedule = schedule
        assert model.transcribe(recording).to_dict() == plain, schedule


def test_a_window_too_short_for_a_frame_decodes_to_nothing_in_a_batch(
    gigaam_onnx: Callable[[str], Path],
) -> None:
    model = speechport.load(gigaam_onnx("v3_e2e_rnnt"))
    audio = gigaam_clip("v3_e2e_rnnt", 0).audio
    windows = [*model.plan(audio), *model.plan(audio[:100])]
    sources = [audio, audio[:100]]
    reads = iter(sources)
    model.window_schedule = "batch2"
    decoded = model.decode_windows(windows, lambda _: next(reads))
    assert decoded[1].hypothesis.token_ids == [] and decoded[1].num_samples == 100
    assert decoded[0].hypothesis.token_ids == model.decode_window(audio).hypothesis.token_ids
