"""``verify`` with the Core ML backend (the MIL interpreter here) catches an encoder whose
``encoded_len`` is computed in fp16 (off by one on long windows: fp16 cannot hold every
integer above 2048), and passes the bundle that computes it with integer ops."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechport.parity.report import ParityReport
from speechport.parity.run import verify_bundle
from tests.helpers import GIGAAM, checkpoint, copy_bundle, tokenizer_for

# 2800 feature frames (hop 160, n_fft 320, no centring): 2799 is odd and above 2048, so fp16
# rounds it to 2800 and the first stride-2 stage gives 1401 instead of 1400; the encoder
# then reports 701 frames instead of 700. (A full 2999-frame window is exact in this graph:
# the "- 1" is done in int32 before the cast, and 2998 is representable. Every feature
# length divisible by 4 from 2052 to 2996 is hit: 237 lengths.)
BAD_LENGTH_SAMPLES = (2800 - 1) * 160 + 320


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """28 s of the fixture clips with pauses: one window whose length fp16 gets wrong."""
    parts = []
    for i in range(4):
        audio, _ = sf.read(GIGAAM / f"audio/clip{i}.wav", dtype="float32")
        parts += [audio, np.zeros(8000, np.float32)]
    speech = np.tile(np.concatenate(parts), 3)[:BAD_LENGTH_SAMPLES]
    path = tmp_path_factory.mktemp("audio") / "long.wav"
    sf.write(path, speech, 16000, subtype="FLOAT")
    return path


@pytest.mark.slow
def test_fp16_length_bug_is_caught(
    long_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from speechport.conversion import convert
    from speechport.export import compat

    # Plant the bug: convert without the patch that keeps integer floor division in int32.
    monkeypatch.setattr(compat, "_integer_floor_division", contextlib.nullcontext)
    bundle = tmp_path / "planted"
    convert(
        "gigaam",
        checkpoint("v3_e2e_rnnt"),
        bundle,
        tokenizer=tokenizer_for("v3_e2e_rnnt"),
        formats="coreml",
        precision="fp16",
        quiet=True,
    )
    report = verify_bundle(bundle, [long_clip], backends=["coreml"], latency_runs=1)
    assert "speechport MIL interpreter" in report.engines["coreml"]
    assert not report.passed
    assert report.files[0].failures == [
        "Encoder encoded_len is 701, the reference 700 (window at 0.00 s, 2800 feature frames)"
    ]


@pytest.mark.slow
def test_integer_length_path_passes(gigaam_bundles: dict[str, Path], long_clip: Path) -> None:
    """The bundle converted with integer ops: the same window's length is exact."""
    report = verify_bundle(
        gigaam_bundles["v3_e2e_rnnt"], [long_clip], backends=["coreml"], latency_runs=1
    )
    (encoder, _, _) = report.components[0].components
    assert encoder.outputs["encoded_len"].exact
    assert encoder.failures == []
    assert "Encoder" not in " ".join(report.files[0].failures)


@pytest.mark.slow
def test_verify_cli_runs_both_backends(
    gigaam_bundles: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from speechport.cli import main

    bundle = copy_bundle(gigaam_bundles["v3_ctc"], tmp_path / "ctc")
    clip = GIGAAM / "audio" / "clip0.wav"
    argv = [
        "verify", str(bundle), "--audio", str(clip), "--backends", "coreml,onnx",
        "--latency-runs", "2", "--max-cer", "0.05",
    ]  # fmt: skip
    code = main(argv)
    out = capsys.readouterr().out
    report = ParityReport.load(bundle / "verify" / "parity.json")
    assert sorted(report.engines) == ["coreml", "onnx"]
    assert report.engines["coreml"].startswith("speechport MIL interpreter")
    assert {f.backend for f in report.files} == {"coreml", "onnx"}
    assert set(report.latency) == {"torch", "coreml", "onnx"}
    assert code == (0 if report.passed else 1)
    assert "coreml: speechport MIL interpreter" in out
