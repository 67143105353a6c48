"""Speech synthesis end to end on the tiny Kokoro bundle (tests/data/tts, ONNX): the host
loop against upstream kokoro's numbers, bucket invariance, speak on text, and verify against
the torch reference."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import speechport
from speechport.cli import main
from speechport.parity.report import TtsFileResult
from speechport.parity.run import verify_bundle
from speechport.pipelines.speaker import Speaker
from speechport.pipelines.synthesis import run_acoustic_stage, run_text_stage, style_row
from speechport.text.phonemes import encode_phonemes

DATA = Path(__file__).parent / "data" / "tts"
SENTENCES = ("short", "fox", "fast", "long")


def _stages(bundle: Path, name: str) -> tuple[Speaker, dict[str, np.ndarray]]:
    speaker = speechport.load(bundle)
    assert isinstance(speaker, Speaker)
    with np.load(DATA / f"{name}.npz") as z:
        ref = {k: z[k] for k in z.files}
    return speaker, ref


@pytest.mark.parametrize("name", SENTENCES)
def test_durations_and_f0_are_upstreams(kokoro_onnx_bundle: Path, name: str) -> None:
    speaker, ref = _stages(kokoro_onnx_bundle, name)
    ids = encode_phonemes(str(ref["phonemes"]), speaker.spec.vocab)
    style = style_row(speaker.voice_pack(str(ref["voice"])), len(ids))
    np.testing.assert_array_equal(style, ref["style"])  # upstream's row, len(ps) - 1
    text = run_text_stage(speaker.stages, ids, style, float(ref["speed"]))
    np.testing.assert_array_equal(text.frames, ref["durations"][0])  # exact
    audio = run_acoustic_stage(speaker.stages, text, style, seed=int(ref["seed"]))
    assert audio.audio.shape == (ref["audio"].shape[1],)
    # measured: 3e-4..5e-4 Hz (F0 about 150 Hz)
    assert np.abs(audio.f0 - ref["f0"][0]).max() < 2e-3


@pytest.mark.parametrize("name", ["short", "fox"])
def test_5_s_and_15_s_buckets_give_the_same_audio(kokoro_onnx_bundle: Path, name: str) -> None:
    speaker, ref = _stages(kokoro_onnx_bundle, name)
    ids = encode_phonemes(str(ref["phonemes"]), speaker.spec.vocab)
    style = style_row(speaker.voice_pack(str(ref["voice"])), len(ids))
    text = run_text_stage(speaker.stages, ids, style, float(ref["speed"]))
    small = run_acoustic_stage(speaker.stages, text, style, seed=1)
    large = run_acoustic_stage(speaker.stages, text, style, seed=1, frame_bucket=600)
    assert (small.frame_bucket, large.frame_bucket) == (200, 600)
    np.testing.assert_allclose(large.audio, small.audio, rtol=0, atol=1e-6)
    np.testing.assert_allclose(large.f0, small.f0, rtol=0, atol=1e-6)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_speak_text_to_a_wav(kokoro_onnx_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    text = "Hello, world! This is Kokoro."
    assert (
        main(["speak", str(kokoro_onnx_bundle), text, "--voice", "bm_tiny", "--out", str(out)]) == 0
    )
    speech = speechport.load(kokoro_onnx_bundle).speak(text, voice="bm_tiny")
    info = sf.info(out)
    assert info.samplerate == 24000 and info.frames == speech.samples.size
    assert [c.phonemes for c in speech.chunks] == ["həlˈO, wˈɜɹld!", "ðɪs ɪz kəkˈɔɹO."]
    assert 0.01 < np.abs(speech.samples).max() < 1.0


def test_verify_against_the_torch_reference(kokoro_onnx_bundle: Path) -> None:
    report = verify_bundle(
        kokoro_onnx_bundle,
        [],
        backends=["onnx"],
        texts=["phonemes:ɪts nˈIs."],
        latency_runs=1,
        time_reference=False,
    )
    (result,) = report.files
    assert isinstance(result, TtsFileResult)
    assert report.passed, report.failures()
    assert result.durations_equal and result.frame_buckets == [200, 600]
    # measured: F0 |d| ~5e-4 Hz, spectral convergence ~1e-2, buckets bitwise equal
    assert result.f0_max_abs < 2e-3
    assert result.spectral_convergence < 0.05
    assert result.bucket_spectral_convergence < 1e-5
    assert report.rtfx["onnx"] > 0
