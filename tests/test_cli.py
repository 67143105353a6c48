"""The ``speechport`` command as a user runs it: outputs, formats and clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechport.audio import resample
from speechport.cli import main
from tests.helpers import GIGAAM, checkpoint, gigaam_clip

CLIP0 = GIGAAM / "audio" / "clip0.wav"


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_convert_shows_progress_and_writes_the_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ctc"
    code, stdout, stderr = run(
        capsys,
        "convert",
        "gigaam",
        "--checkpoint",
        checkpoint("v3_ctc"),
        "--out",
        out,
        "--format",
        "onnx",
        "--window",
        "10",
    )
    assert code == 0
    assert re.search(r"\[1\] load .*v3_ctc\.ckpt \.\.\. \d+\.\d s", stderr)
    assert "[2/3] Encoder -> ONNX ..." in stderr
    assert f"wrote {out}" in stdout and "v3_ctc.onnx" in stdout
    manifest = json.loads((out / "speechport.json").read_text())
    assert manifest["window"] == {"samples": 160000, "feature_frames": 999, "encoder_frames": 250}
    assert not (out / "Encoder.mlpackage").exists()

    code, stdout, _ = run(capsys, "info", out)
    assert code == 0
    assert "gigaam v3_ctc  task=asr" in stdout
    assert "in  features     float32  [1, 64, 999]" in stdout
    assert "out log_probs    float32  [1, 250, 34]" in stdout
    code, stdout, _ = run(capsys, "info", out, "--json")
    assert json.loads(stdout)["variant"] == "v3_ctc"


def test_transcribe_formats(
    gigaam_bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = gigaam_bundles["v3_e2e_rnnt"]
    ref = gigaam_clip("v3_e2e_rnnt", 0).expected

    code, stdout, _ = run(capsys, "transcribe", bundle, CLIP0)
    assert (code, stdout) == (0, ref["text"] + "\n")
    code, stdout, _ = run(capsys, "transcribe", bundle, CLIP0, "--threads", "1")
    assert (code, stdout) == (0, ref["text"] + "\n")

    _, stdout, _ = run(capsys, "transcribe", bundle, CLIP0, "--timestamps")
    lines = stdout.splitlines()
    assert len(lines) == len(ref["words"])
    first = ref["words"][0]
    assert lines[0] == f"{first['start']:8.3f} {first['end']:8.3f}  {first['text']}"

    _, stdout, _ = run(capsys, "transcribe", bundle, CLIP0, "--output", "json", "--timestamps")
    data = json.loads(stdout)
    assert data["text"] == ref["text"]
    assert [w["text"] for w in data["segments"][0]["words"]] == [w["text"] for w in ref["words"]]
    assert [t["id"] for t in data["segments"][0]["tokens"]] == ref["token_ids"]
    assert data["engine"].startswith("onnxruntime")

    _, stdout, _ = run(capsys, "transcribe", bundle, CLIP0, "--output", "srt")
    assert stdout.startswith("1\n00:00:00,080 --> 00:00:00,")
    assert ref["words"][0]["text"] in stdout
    _, stdout, _ = run(capsys, "transcribe", bundle, CLIP0, "--output", "vtt")
    assert stdout.startswith("WEBVTT\n\n00:00:00.080 --> ")


def test_transcribe_many_files_and_save_dir(
    gigaam_bundles: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = gigaam_bundles["v3_ctc"]
    clip1 = GIGAAM / "audio" / "clip1.wav"
    code, stdout, _ = run(capsys, "transcribe", bundle, CLIP0, clip1)
    assert code == 0
    assert stdout == (
        f"==> {CLIP0} <==\n{gigaam_clip('v3_ctc', 0).expected['text']}\n"
        f"==> {clip1} <==\n{gigaam_clip('v3_ctc', 1).expected['text']}\n"
    )
    code, _, stderr = run(
        capsys, "transcribe", bundle, CLIP0, clip1, "--output", "vtt", "--save-dir", tmp_path
    )
    assert code == 0
    assert f"{clip1} -> {tmp_path / 'clip1.vtt'}" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip0.vtt", "clip1.vtt"]
    assert (tmp_path / "clip1.vtt").read_text().startswith("WEBVTT")


def test_stereo_44k_audio_is_mixed_down_and_resampled(
    gigaam_bundles: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = gigaam_clip("v3_e2e_rnnt", 1)
    upsampled = resample(ref.audio, 16000, 44100)
    stereo = np.stack([upsampled * 0.9, upsampled * 1.1], axis=1)
    path = tmp_path / "stereo44k.wav"
    sf.write(path, stereo, 44100, subtype="FLOAT")
    code, stdout, _ = run(capsys, "transcribe", gigaam_bundles["v3_e2e_rnnt"], path)
    assert code == 0
    assert stdout.strip() == ref.expected["text"]


def test_torch_backend_finds_its_checkpoint_from_provenance(
    gigaam_bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = run(
        capsys,
        "transcribe",
        gigaam_bundles["v3_rnnt"],
        CLIP0,
        "--backend",
        "torch",
        "--output",
        "json",
    )
    assert code == 0
    data = json.loads(stdout)
    assert data["text"] == gigaam_clip("v3_rnnt", 0).expected["text"]
    assert data["engine"].startswith("torch")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.wav", "missing.wav"),
        (lambda d: _write(d / "notes.wav", b"this is text, not audio"), "notes.wav"),
        (lambda d: _empty_wav(d / "empty.wav"), "no audio samples"),
    ],
)
def test_bad_audio_is_a_clear_error(
    gigaam_bundles: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: object,
    message: str,
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    code, stdout, stderr = run(capsys, "transcribe", gigaam_bundles["v3_ctc"], path)
    assert code == 2
    assert stdout == ""
    assert stderr.startswith("speechport: error: ")
    assert message in stderr
    assert "Traceback" not in stderr


def test_bad_bundle_and_checkpoint_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = run(capsys, "transcribe", tmp_path, CLIP0)
    assert code == 2 and "no speechport.json" in stderr
    (tmp_path / "speechport.json").write_text("{not json")
    code, _, stderr = run(capsys, "info", tmp_path)
    assert code == 2 and "not valid JSON" in stderr
    code, _, stderr = run(
        capsys, "convert", "gigaam", "--checkpoint", tmp_path / "x.ckpt", "--out", tmp_path / "o"
    )
    assert code == 2 and "x.ckpt: file not found" in stderr
    code, _, stderr = run(
        capsys,
        "convert",
        "gigaam",
        "--checkpoint",
        checkpoint("v3_ctc"),
        "--out",
        tmp_path / "o",
        "--format",
        "tflite",
    )
    assert code == 2 and "unknown format" in stderr
    assert not (tmp_path / "o").exists()


def test_torch_backend_refuses_a_different_checkpoint(
    gigaam_bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = run(
        capsys,
        "transcribe",
        gigaam_bundles["v3_rnnt"],
        CLIP0,
        "--backend",
        "torch",
        "--checkpoint",
        checkpoint("v3_ctc"),
    )
    assert code == 2
    assert "not the one the bundle was converted from" in stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _empty_wav(path: Path) -> Path:
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    return path


def test_every_bench_subcommand_has_a_runner() -> None:
    """``bench``'s subcommands and the runners they dispatch to are one list."""
    import argparse

    from speechport.cli import BENCHES, build_parser

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return dict(action.choices)

    assert set(subcommands(subcommands(build_parser())["bench"])) == set(BENCHES)
