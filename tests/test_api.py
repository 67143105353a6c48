"""The Python API: ``speechport.load`` opens a bundle as its task's runtime object and gives
what the CLI prints; tasks and decoding algorithms are found through their registries."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import speechport
from speechport.audio import load_audio, resample
from speechport.cli import main
from speechport.decoding import DECODERS, decoding_algorithm
from speechport.errors import BundleError
from speechport.manifest import COMPONENT_KINDS, MANIFEST_NAME, read_manifest
from speechport.tasks import TASKS
from tests.helpers import BundleCache

DATA = Path(__file__).parent / "data"
GIGAAM_CLIP = DATA / "gigaam" / "audio" / "clip1.wav"
NEMO_CLIP = DATA / "nemo" / "audio" / "clip2.wav"
SAMPLE = Path(__file__).parents[1] / "samples" / "speech_with_pauses.wav"


@pytest.fixture(scope="module")
def parakeet_bundle(bundle_cache: BundleCache) -> Path:
    return bundle_cache.get(
        "parakeet", DATA / "nemo" / "parakeet_tdt.nemo", "parakeet_tdt", formats="onnx"
    )


@pytest.fixture(scope="module")
def rnnt(gigaam_onnx: Callable[[str], Path]) -> Path:
    return gigaam_onnx("v3_e2e_rnnt")


@pytest.fixture(scope="module")
def ctc(gigaam_onnx: Callable[[str], Path]) -> Path:
    return gigaam_onnx("v3_ctc")


def test_convert_takes_frozen_options(tmp_path: Path) -> None:
    """The library call prints nothing and returns the manifest; options are a dataclass."""
    lines: list[str] = []
    manifest = speechport.convert(
        "gigaam",
        tmp_path / "ctc",
        DATA / "gigaam" / "v3_ctc.ckpt",
        speechport.ConvertOptions(formats=("onnx",)),
        progress=lines.append,
    )
    assert manifest.formats == ["onnx"] and (tmp_path / "ctc" / "v3_ctc.onnx").is_file()
    assert any("ONNX" in line for line in lines)
    with pytest.raises(dataclasses.FrozenInstanceError):
        speechport.ConvertOptions().precision = "fp32"  # type: ignore[misc]


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter, as a user would; returns its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_load_transcribes_like_the_cli(
    rnnt: Path, parakeet_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bundle, clip in (
        (rnnt, GIGAAM_CLIP),
        (parakeet_bundle, NEMO_CLIP),
    ):
        code = f"print(speechport.load({str(bundle)!r}).transcribe({str(clip)!r}).text)"
        said = _python("import speechport; " + code)
        assert main(["transcribe", str(bundle), str(clip)]) == 0
        cli = capsys.readouterr().out
        assert said == cli and said.strip()


def test_load_gives_vad_segments_like_the_cli(
    vad_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    said = _python(
        "import speechport\n"
        f"for s in speechport.load({str(vad_bundle)!r}).segments({str(SAMPLE)!r}):\n"
        "    print(f'{s.start_seconds:8.3f} {s.end_seconds:8.3f}')"
    )
    assert main(["vad", str(vad_bundle), str(SAMPLE)]) == 0
    assert said == capsys.readouterr().out
    assert len(said.splitlines()) == 4


def test_arrays_at_any_rate_are_resampled(ctc: Path) -> None:
    transcriber = speechport.load(ctc)
    assert isinstance(transcriber, speechport.Transcriber)
    samples = load_audio(GIGAAM_CLIP).samples
    from_path = transcriber.transcribe(GIGAAM_CLIP)
    assert from_path.source == str(GIGAAM_CLIP)
    assert transcriber.transcribe(samples).token_ids == from_path.token_ids
    at_48k = resample(samples, 16000, 48000)
    again = transcriber.transcribe(at_48k, sample_rate=48000)
    assert again.token_ids == transcriber.transcribe(resample(at_48k, 48000, 16000)).token_ids
    with pytest.raises(speechport.SpeechportError, match="sample_rate is for arrays"):
        transcriber.transcribe(GIGAAM_CLIP, sample_rate=8000)


def test_vad_options_become_the_detectors_defaults(vad_bundle: Path) -> None:
    strict = speechport.load(vad_bundle, threshold=0.9, min_silence_ms=500)
    assert isinstance(strict, speechport.VoiceActivityDetector)
    assert strict.defaults.threshold == 0.9 and strict.defaults.min_silence_ms == 500
    default = speechport.load(vad_bundle)
    assert default.defaults.threshold == read_manifest(vad_bundle).vad.defaults["threshold"]  # type: ignore[union-attr]


def test_python_m_speechport_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "speechport", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "transcribe" in result.stdout and "verify" in result.stdout


def test_public_names() -> None:
    assert {"load", "convert", "verify", "quantize", "ParityReport", "Transcript"} <= set(
        speechport.__all__
    )
    for name in speechport.__all__:
        assert getattr(speechport, name) is not None
    assert speechport.load.__doc__ and "Example" in speechport.load.__doc__


@pytest.mark.parametrize("task", ["diarization", "translation"])
def test_a_task_without_a_plug_in_is_refused(ctc: Path, tmp_path: Path, task: str) -> None:
    data = json.loads((ctc / MANIFEST_NAME).read_text(encoding="utf-8"))
    data["task"] = task
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(
        BundleError,
        match=f"unknown task '{task}'; this speechport runs: asr, streaming-asr, vad, kws, tts",
    ):
        speechport.load(tmp_path)
    assert main(["transcribe", str(tmp_path), str(GIGAAM_CLIP)]) == 2


def test_registries_cover_every_manifest_name(rnnt: Path, ctc: Path, vad_bundle: Path) -> None:
    assert set(TASKS) == {"asr", "streaming-asr", "vad", "kws", "tts"}
    for name, task in TASKS.items():
        assert task.name == name and task.sections
    assert set(DECODERS) == {"ctc_greedy", "rnnt_greedy", "tdt_greedy"}
    assert decoding_algorithm("ctc_greedy").frames_first
    assert decoding_algorithm("tdt_greedy").transducer
    with pytest.raises(BundleError, match="unknown decoding algorithm 'beam'"):
        decoding_algorithm("beam")
    for bundle in (rnnt, ctc, vad_bundle):
        for component in read_manifest(bundle).components.values():
            assert component.kind in COMPONENT_KINDS


def test_time_major_layouts() -> None:
    ctc = np.arange(12, dtype=np.float32).reshape(1, 4, 3)  # [1, T, V]
    assert decoding_algorithm("ctc_greedy").time_major(ctc).shape == (4, 3)
    rnnt = np.arange(12, dtype=np.float32).reshape(1, 3, 4)  # [1, D, T]
    assert decoding_algorithm("rnnt_greedy").time_major(rnnt).shape == (4, 3)


def test_reports_round_trip(rnnt: Path, vad_bundle: Path, tmp_path: Path) -> None:
    from speechport.parity.report import AsrFileResult, ParityReport, VadFileResult
    from speechport.parity.run import verify_bundle

    asr = verify_bundle(rnnt, [GIGAAM_CLIP], backends=["onnx"])
    vad = verify_bundle(vad_bundle, [SAMPLE], backends=["onnx"], latency_runs=2)
    for report, kind in ((asr, AsrFileResult), (vad, VadFileResult)):
        assert all(isinstance(f, kind) for f in report.files)
        again = ParityReport.load(report.save(tmp_path / f"{report.task}.json"))
        assert again == report
    (encoder, *_) = asr.components[0].components
    assert encoder.kind == "encoder" and encoder.outputs["encoded_len"].exact
    stored = json.loads((tmp_path / "asr.json").read_text(encoding="utf-8"))
    assert stored["schema_version"] == 1 and stored["passed"] is True
    stored["schema_version"] = 0
    (tmp_path / "old.json").write_text(json.dumps(stored), encoding="utf-8")
    with pytest.raises(BundleError, match="report schema 0, this speechport reads 1"):
        ParityReport.load(tmp_path / "old.json")


# Where names of tasks, algorithms and component roles may be compared with a string: their
# registries and the code that defines them (a family knows its own roles and heads).
# Component kinds are the declared vocabulary everything else selects by (COMPONENT_KINDS).
_MAY_COMPARE_NAMES = ("families/", "tasks/", "decoding/registry.py", "export/templates/")
_NAMED = {"task", "algorithm", "role", "head"}


def test_no_task_algorithm_or_role_name_is_compared_outside_its_registry() -> None:
    """Walk every module: a comparison of ``x.task`` / ``x.algorithm`` / ``x.role`` (or a
    variable of that name) with a string literal is dispatch by string, which belongs in a
    registry."""
    import ast

    root = Path(speechport.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(_MAY_COMPARE_NAMES):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            named = any(
                (isinstance(s, ast.Attribute) and s.attr in _NAMED)
                or (isinstance(s, ast.Name) and s.id in _NAMED)
                for s in sides
            )
            literal = any(
                (isinstance(s, ast.Constant) and isinstance(s.value, str))
                or (
                    isinstance(s, (ast.Tuple, ast.Set, ast.List))
                    and any(isinstance(e, ast.Constant) for e in s.elts)
                )
                for s in sides
            )
            if named and literal:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert found == []
