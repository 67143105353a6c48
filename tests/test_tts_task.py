"""The speech-synthesis task: its manifest section checked field by field, the verify
inputs it takes (texts, not audio), and its verify checks on numpy stand-ins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from speechport.errors import BundleError, SpeechportError
from speechport.parity.report import ParityReport, TtsFileResult
from speechport.parity.run import VerifyRun
from speechport.tasks import GateLimits, get_task
from speechport.tasks.tts import PHONEMES_PREFIX, VERIFY_PHONEMES
from speechport.tasks.tts_spec import TtsSpec
from tests.tts_fakes import fake_bundle


def _spec_dict() -> dict[str, Any]:
    return TtsSpec(
        vocab={"a": 1, "b": 2}, voices={"v": "voices/v.npy"}, default_voice="v"
    ).to_dict()


def test_spec_round_trip() -> None:
    data = _spec_dict()
    assert data["token_buckets"] == [128, 512] and data["frame_buckets"] == [200, 600]
    assert TtsSpec.from_dict(data) == TtsSpec.from_dict(dict(data))
    assert TtsSpec.from_dict(data).token_buckets == (128, 512)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sample_rate", "24k", r"tts\.sample_rate must be an integer >= 1"),
        ("samples_per_frame", 0, r"tts\.samples_per_frame must be an integer >= 1"),
        ("token_buckets", [128, 128], r"tts\.token_buckets must be a list of distinct"),
        ("frame_buckets", [], r"tts\.frame_buckets must be a list of distinct"),
        ("frame_buckets", [200, True], r"tts\.frame_buckets must be a list of distinct"),
        ("vocab", {"ab": 1}, r"tts\.vocab must be a mapping of single characters"),
        ("vocab", {"a": 0}, r"tts\.vocab must be a mapping of single characters"),
        ("voices", {"v": "../v.npy"}, r"tts\.voices must be files inside the bundle"),
        ("default_voice", "w", r"tts\.default_voice must be one of the voices \(v\)"),
        ("g2p", {"engine": "espeak-ng"}, r"tts\.g2p must be an object with engine"),
        ("noise_inputs", "noise", r"tts\.noise_inputs must be a list of input names"),
        ("harmonics", 9.0, r"tts\.harmonics must be an integer"),
    ],
)
def test_spec_errors_name_the_field_and_file(field: str, value: Any, message: str) -> None:
    data = _spec_dict()
    data[field] = value
    with pytest.raises(BundleError, match=message) as caught:
        TtsSpec.from_dict(data, where=Path("b/speechport.json"))
    assert str(caught.value).startswith("b/speechport.json: tts.")


def test_spec_missing_and_unknown_fields() -> None:
    data = _spec_dict()
    del data["max_phonemes"]
    with pytest.raises(BundleError, match=r"tts\.max_phonemes is missing"):
        TtsSpec.from_dict(data)
    data = _spec_dict()
    data["pitch"] = 1
    with pytest.raises(BundleError, match=r"unknown field\(s\) pitch"):
        TtsSpec.from_dict(data)


def test_verify_inputs_are_texts() -> None:
    task = get_task("tts")
    inputs = list(task.verify_inputs([], [], 24000))
    assert [i.data for i in inputs] == [PHONEMES_PREFIX + p for p in VERIFY_PHONEMES]
    assert [i.label for i in task.verify_inputs([], ["Hi there."], 24000)] == ["Hi there."]
    with pytest.raises(SpeechportError, match="verified on texts, not audio"):
        list(task.verify_inputs([Path("a.wav")], [], 24000))


def test_audio_tasks_refuse_texts() -> None:
    for name in ("asr", "vad", "kws", "streaming-asr"):
        with pytest.raises(SpeechportError, match="verified on audio, not text"):
            list(get_task(name).verify_inputs([], ["hello"], 16000))
        with pytest.raises(SpeechportError, match="no audio to verify on"):
            list(get_task(name).verify_inputs([], [], 16000))


class _Scaled:
    """A component whose outputs are the inner one's, one of them scaled."""

    def __init__(self, inner: Any, output: int, factor: float) -> None:
        self.spec, self.inner, self.output, self.factor = inner.spec, inner, output, factor

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        out = list(self.inner(*inputs))
        out[self.output] = out[self.output] * self.factor
        return tuple(out)


def _run(tmp_path: Path, perturb: dict[str, tuple[int, float]]) -> TtsFileResult:
    reference, _ = fake_bundle(tmp_path / "ref")
    candidate, _ = fake_bundle(tmp_path / "got")
    for role, (output, factor) in perturb.items():
        candidate.components[role] = _Scaled(candidate.components[role], output, factor)
    task = get_task("tts")
    report = ParityReport(bundle="b", task="tts", reference_engine="fake", engines={})
    run = VerifyRun(reference, {"onnx": candidate}, GateLimits(), report, {"onnx": 0.0})
    task.verify_file(run, PHONEMES_PREFIX + "ðə fɑks.", "fox")
    (result,) = report.files
    assert isinstance(result, TtsFileResult)
    assert run.audio_seconds == pytest.approx(result.seconds)
    return result


def test_verify_identical_stages_pass(tmp_path: Path) -> None:
    r = _run(tmp_path, {})
    assert r.passed and r.durations_equal
    assert r.audio_max_abs == 0 and r.first_frame_max_abs == 0 and r.f0_max_abs == 0
    assert r.spectral_convergence == 0 and r.mel_distance_db == 0
    assert r.bucket_max_abs == 0 and r.frame_buckets == [40, 120]
    assert r.bucket_spectral_convergence == 0 and r.audio_p99_rel == 0
    assert r.frames == sum(r.frames_reference) and r.frames_got == r.frames_reference
    assert len(r.wave_diff_per_frame) == r.frames
    assert "durations exact" in get_task("tts").file_line(r)


def test_verify_catches_audio_error(tmp_path: Path) -> None:
    r = _run(tmp_path, {"acoustic_40": (0, 1.2)})  # 20 % louder audio in the 5 s bucket
    assert r.durations_equal and r.f0_max_abs == 0
    assert r.audio_rel == pytest.approx(0.2, rel=1e-3)
    assert r.audio_p99_rel == pytest.approx(0.2, rel=1e-2)
    assert r.spectral_convergence == pytest.approx(0.2, rel=1e-2)
    assert r.bucket_spectral_convergence == pytest.approx(0.2 / 1.2, rel=1e-2)
    assert r.failures == [
        f"audio spectral convergence {r.spectral_convergence:.2e} > 0.05",
        f"frame buckets differ: spectral convergence {r.bucket_spectral_convergence:.2e} > 0.05",
    ]


def test_small_audio_differences_pass(tmp_path: Path) -> None:
    r = _run(tmp_path, {"acoustic_40": (0, 1.01)})  # 1 %: reported, within the gate
    assert r.passed and r.audio_rel == pytest.approx(0.01, rel=1e-3)
    assert r.spectral_convergence == pytest.approx(0.01, rel=1e-2)


def test_verify_catches_duration_error(tmp_path: Path) -> None:
    r = _run(tmp_path, {"text_stage_16": (0, 1.5)})  # longer durations
    assert not r.durations_equal and r.durations_max_abs > 0.2
    assert r.failures[0] == "durations differ from the reference's"
    assert r.audio_max_abs == 0  # the acoustic stage, fed the reference's frames, agrees


def test_verify_catches_f0_error(tmp_path: Path) -> None:
    r = _run(tmp_path, {"acoustic_40": (1, 1.002)})  # F0 0.2 % off, audio exact
    assert r.audio_max_abs == 0 and r.f0_max_abs > 0
    assert r.failures == ["f0 |d|/peak 2.00e-03 > 0.001"]


def test_plots(tmp_path: Path) -> None:
    from speechport.parity import plots

    if not plots.available():
        pytest.skip("matplotlib is not installed")
    r = _run(tmp_path, {"acoustic_40": (0, 1.01)})
    report = ParityReport(bundle="b", task="tts", reference_engine="t", engines={}, files=[r])
    written = get_task("tts").draw_plots(report, tmp_path / "plots")
    assert [p.name for p in written] == [
        "tts_waveform_diff.png",
        "tts_mel_diff.png",
        "tts_durations.png",
    ]
    assert all(p.stat().st_size > 1000 for p in written)


def test_card_and_report_round_trip(tmp_path: Path) -> None:
    r = _run(tmp_path, {})
    report = ParityReport(bundle="b", task="tts", reference_engine="t", engines={}, files=[r])
    again = ParityReport.from_dict(report.to_dict())
    assert again.files == [r]
    card = get_task("tts").card_fidelity(report)
    assert card[2].startswith("| fox | onnx |") and "exact" in card[2]
