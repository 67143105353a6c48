"""Hostile and careless inputs: each ends in one clear line (exit 2 from the CLI, naming the
file or the field) or is handled correctly; no traceback, nothing left behind, bounded
memory and disk. Every file is crafted here and small: a bomb's size is in its header."""

from __future__ import annotations

import copy
import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import speechport
from speechport.audio import load_audio, open_audio
from speechport.cli import main
from speechport.errors import AudioError, CheckpointError, SpeechportError
from speechport.families.nemo_archive import read_nemo_archive
from speechport.families.torch_checkpoint import load_torch_checkpoint
from speechport.fsutil import atomic_directory
from speechport.limits import MAX_JSON_DEPTH, MAX_PICKLE_BYTES, MAX_YAML_BYTES
from tests import hostile_files as craft
from tests.helpers import checkpoint

MB = 1 << 20
REPO = Path(__file__).resolve().parents[1]


def peak_rss() -> int:
    """This process's peak resident memory so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    """Run the CLI in-process; argparse's own exits count as their status."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def one_line_error(err: str) -> str:
    """The error line (progress may share its line: the message starts at 'speechport:')."""
    last = err.strip().splitlines()[-1]
    assert "speechport" in last, err
    return last[last.index("speechport") :]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "ctc"
    speechport.convert(
        "gigaam", out, checkpoint("v3_ctc"), speechport.ConvertOptions(formats=("onnx",))
    )
    return out


@pytest.fixture(scope="module")
def manifest(bundle: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((bundle / "speechport.json").read_text())
    return data


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "speech.wav"
    sf.write(path, (rng.standard_normal(16000 * 2) * 0.05).astype(np.float32), 16000)
    return path


def bundle_copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target)
    return target


# --- audio files ----------------------------------------------------------------------------

BAD_RATES = [1, 4, 100, 7999, 192001, 1_000_000]


@pytest.mark.parametrize("rate", BAD_RATES)
def test_wav_with_an_impossible_rate_is_refused_before_decoding(tmp_path: Path, rate: int) -> None:
    path = craft.wav_file(tmp_path / "a.wav", rate, frames=20000)
    before = peak_rss()
    with pytest.raises(AudioError, match=f"sample rate of {rate} Hz") as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert peak_rss() - before < 50 * MB


@pytest.mark.parametrize("rate", [8000, 11025, 44100, 48000, 96000, 192000])
def test_wav_at_any_usual_rate_is_read(tmp_path: Path, rate: int) -> None:
    path = craft.wav_file(tmp_path / "a.wav", rate, frames=rate // 10)
    audio = load_audio(path)
    assert audio.original_sample_rate == rate and abs(audio.duration - 0.1) < 1e-3


def test_wav_with_too_many_channels_is_refused(tmp_path: Path) -> None:
    path = craft.wav_file(tmp_path / "a.wav", 16000, channels=100, frames=10)
    with pytest.raises(AudioError, match="100 channels"):
        load_audio(path)


def test_wav_declaring_more_data_than_it_holds_reads_what_is_there(tmp_path: Path) -> None:
    path = craft.wav_file(tmp_path / "a.wav", 16000, frames=1600, declared=1 << 30)
    try:
        audio = load_audio(path)
    except AudioError as exc:
        assert str(path) in str(exc)
    else:
        assert audio.num_samples <= 1600


def test_fifo_without_a_writer_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(fifo)
    with pytest.raises(AudioError, match="not a regular file"):
        list(open_audio(fifo).blocks())
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_device_files_are_refused(device: str) -> None:
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(device)


@pytest.mark.parametrize(
    ("content", "suffix"),
    [
        (b"", ".wav"),
        (b"RIFF", ".wav"),
        (b"not audio at all" * 10, ".wav"),
        (b"\x00" * 1000, ".flac"),
        (b"ID3" + b"\x00" * 100, ".mp3"),
        (b"{}", ".ogg"),
    ],
)
def test_garbage_audio_is_a_clear_error(
    tmp_path: Path, content: bytes, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"x{suffix}"
    path.write_bytes(content)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_named_with_their_time(tmp_path: Path, bad: float) -> None:
    samples = np.zeros(32000, dtype=np.float32)
    samples[24000] = bad
    path = tmp_path / "x.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"the first at 1\.500 s"):
        list(open_audio(path, block_seconds=0.5).blocks())


@pytest.mark.parametrize(
    "array",
    [
        np.array([0.0, np.nan], dtype=np.float32),
        np.zeros((10, 2, 2), dtype=np.float32),
        np.array([[np.inf]], dtype=np.float32).reshape(-1),
    ],
)
def test_bad_arrays_are_refused(array: np.ndarray) -> None:
    with pytest.raises(AudioError):
        open_audio(array)


def test_missing_audio_is_exit_2(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = cli(capsys, "transcribe", bundle, tmp_path / "none.wav")
    assert code == 2 and "none.wav" in one_line_error(err)


def test_directory_without_audio_is_exit_2(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code, _err = cli(capsys, "transcribe", bundle, tmp_path / "empty")
    assert code == 2


def test_low_rate_wav_on_the_cli_is_exit_2(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = craft.wav_file(tmp_path / "a.wav", 1, frames=20000)
    code, err = cli(capsys, "transcribe", bundle, path)
    assert code == 2 and "1 Hz" in one_line_error(err) and "a.wav" in err


# --- checkpoints: pickles and zips ----------------------------------------------------------


def test_deflate_bomb_pickle_is_refused_before_inflating(tmp_path: Path) -> None:
    path = craft.zip_checkpoint(tmp_path / "bomb.ckpt", b"\x80\x02N." + b"\0" * (64 * MB))
    assert path.stat().st_size < 200_000
    before = peak_rss()
    with pytest.raises(CheckpointError, match=r"data\.pkl") as info:
        load_torch_checkpoint(path)
    assert "allowed" in str(info.value) and str(path) in str(info.value)
    assert peak_rss() - before < 2 * MAX_PICKLE_BYTES + 50 * MB


def test_pickle_just_under_the_budget_is_parsed(tmp_path: Path) -> None:
    data = pickle.dumps({"x": [1, 2, 3]}, protocol=2)
    path = craft.zip_checkpoint(tmp_path / "ok.ckpt", data)
    assert load_torch_checkpoint(path) == {"x": [1, 2, 3]}


def test_byteorder_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.ckpt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(1, protocol=2))
        archive.writestr("archive/byteorder", b"little" + b" " * (8 * MB))
    with pytest.raises(CheckpointError, match="byteorder"):
        load_torch_checkpoint(path)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x80\x02",
        b"garbage",
        pickle.dumps(print, protocol=2),
        b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.",
        b"(" * 100_000 + b".",
        b"]" * 200_000,  # no STOP opcode
    ],
)
def test_hostile_pickles_are_clear_errors(tmp_path: Path, payload: bytes) -> None:
    path = craft.zip_checkpoint(tmp_path / "p.ckpt", payload)
    with pytest.raises(CheckpointError) as info:
        load_torch_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04", b"\x00" * 100, b"not a zip"])
def test_not_a_checkpoint_on_the_cli_is_exit_2(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "x.ckpt"
    path.write_bytes(content)
    code, err = cli(capsys, "convert", "gigaam", "--checkpoint", path, "--out", tmp_path / "o")
    assert code == 2 and "x.ckpt" in one_line_error(err)
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob(".o.partial-*"))


# --- .nemo archives -------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_nemo_member_declaring_gigabytes_is_refused_before_copying(
    tmp_path: Path, compress: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    path = craft.nemo_with_declared_member(
        tmp_path / "bomb.nemo", "model_weights.ckpt", 2 << 30, compress=compress
    )
    assert path.stat().st_size < 10_000
    with pytest.raises(CheckpointError, match=r"model_weights\.ckpt") as info:
        read_nemo_archive(path)
    assert "bomb.nemo" in str(info.value)
    assert not any(scratch.rglob("*"))


@pytest.mark.parametrize("compress", [True, False])
def test_nemo_sparse_member_is_refused(tmp_path: Path, compress: bool) -> None:
    path = craft.nemo_with_declared_member(
        tmp_path / "s.nemo", "model_weights.ckpt", 4096, compress=compress, typeflag=b"S"
    )
    with pytest.raises(CheckpointError, match=r"sparse|declared|corrupt"):
        read_nemo_archive(path)


def test_nemo_config_over_the_budget_is_refused_by_its_declared_size(tmp_path: Path) -> None:
    path = craft.nemo_with_declared_member(
        tmp_path / "c.nemo", "model_config.yaml", MAX_YAML_BYTES + 1, compress=True
    )
    with pytest.raises(CheckpointError, match=r"model_config\.yaml|declared"):
        read_nemo_archive(path)


def test_nemo_large_real_config_is_refused_quickly(tmp_path: Path) -> None:
    config = b"a: [" + b"1," * (MAX_YAML_BYTES // 2) + b"1]\n"
    path = craft.nemo_archive(
        tmp_path / "c.nemo", {"model_config.yaml": config, "model_weights.ckpt": b""}, compress=True
    )
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=r"model_config\.yaml"):
        read_nemo_archive(path)
    assert time.monotonic() - start < 5


YAML_BOMBS = {
    "billion laughs": "a: &a ['x','x','x','x','x','x','x','x','x','x']\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    ),
    "deep nesting": "x: " + "[" * (MAX_JSON_DEPTH + 10) + "]" * (MAX_JSON_DEPTH + 10) + "\n",
    "not a mapping": "- 1\n- 2\n",
    "invalid yaml": "a: [\n",
    "python tag": "a: !!python/object/apply:os.system ['id']\n",
    "not utf-8": "a: \udcff\n",
}


@pytest.mark.parametrize("name", list(YAML_BOMBS))
def test_hostile_nemo_configs_are_clear_errors(tmp_path: Path, name: str) -> None:
    text = YAML_BOMBS[name].encode("utf-8", "surrogateescape")
    path = craft.nemo_archive(
        tmp_path / "c.nemo", {"model_config.yaml": text, "model_weights.ckpt": b""}
    )
    before = peak_rss()
    with pytest.raises(CheckpointError) as info:
        read_nemo_archive(path)
    assert "c.nemo" in str(info.value)
    assert peak_rss() - before < 100 * MB


def test_nemo_with_too_many_members_is_refused(tmp_path: Path) -> None:
    members = {f"f{i}": b"" for i in range(10_001)}
    path = craft.nemo_archive(tmp_path / "m.nemo", members, compress=True)
    with pytest.raises(CheckpointError, match="more than 10000 members"):
        read_nemo_archive(path)


# --- manifests ------------------------------------------------------------------------------


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

MANIFEST_CASES: list[tuple[str, Any, str]] = [
    ("window.samples", 0, "window: samples"),
    ("window.samples", -5, "window: samples"),
    ("window.samples", 1e13, "window: samples"),
    ("window.samples", 10**13, "window: samples"),
    ("window.samples", "160000", "window: samples"),
    ("window.samples", True, "window: samples"),
    ("window.feature_frames", 0, "feature_frames"),
    ("window.encoder_frames", -1, "encoder_frames"),
    ("window.overlap_seconds", -1, "overlap_seconds"),
    ("window", [], "window must be a mapping"),
    ("components", [], "components must be a mapping"),
    ("components", "encoder", "components must be a mapping"),
    ("components", None, "components must be a mapping"),
    ("decoding.blank_id", -1, "blank_id"),
    ("decoding.blank_id", 10_000, "blank_id"),
    ("decoding.blank_id", 1.5, "blank_id"),
    ("decoding.vocab_size", -3, "vocab_size"),
    ("decoding.frame_duration", 0, "frame_duration"),
    ("decoding.frame_duration", -0.04, "frame_duration"),
    ("decoding.algorithm", "magic", "decoding algorithm"),
    ("decoding", "ctc", "decoding must be a mapping"),
    ("sample_rate", 0, "sample_rate"),
    ("sample_rate", 1, "sample_rate"),
    ("sample_rate", "16000", "sample_rate"),
    ("sample_rate", 10**9, "sample_rate"),
    ("schema_version", 99, "schema version"),
    ("task", "", "task"),
    ("task", "translate", "translate"),
    ("frontend", "mel", "frontend must be a mapping"),
    ("provenance", [], "provenance must be a mapping"),
    ("tokenizer", 3, "tokenizer must be a mapping"),
    ("family", _DELETE, "missing field(s) family"),
    ("components", {}, "no onnx files"),
]


@pytest.mark.parametrize(("field", "value", "message"), MANIFEST_CASES)
def test_bad_manifest_fields_are_named(
    bundle: Path,
    manifest: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    speech: Path,
    field: str,
    value: Any,
    message: str,
) -> None:
    target = bundle_copy(bundle, tmp_path)
    data = copy.deepcopy(manifest)
    _set(data, field, value)
    craft.write_manifest(target, data)
    code, err = cli(capsys, "transcribe", target, speech)
    line = one_line_error(err)
    assert code == 2, err
    assert message in line and ("speechport.json" in line or str(target) in line)


def _component(manifest: dict[str, Any]) -> str:
    return str(next(iter(manifest["components"])))


@pytest.mark.parametrize(
    ("part", "value", "message"),
    [
        ("files", "Encoder.onnx", "files must be a mapping of format -> file"),
        ("files", ["Encoder.onnx"], "files must be a mapping of format -> file"),
        ("inputs", "features", "inputs must be a list"),
        ("outputs", {}, "outputs must be a list"),
        ("state", "none", "state must be a list"),
        ("state", [1], "state: expected an object"),
        ("kind", "teleporter", "unknown kind"),
    ],
)
def test_bad_component_fields_are_named(
    bundle: Path,
    manifest: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    part: str,
    value: Any,
    message: str,
) -> None:
    target = bundle_copy(bundle, tmp_path)
    data = copy.deepcopy(manifest)
    data["components"][_component(manifest)][part] = value
    craft.write_manifest(target, data)
    code, err = cli(capsys, "info", target)
    assert code == 2 and message in one_line_error(err) and "speechport.json" in err


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda io: io.update(shape=[1, -64, 10]), "shape must be a list"),
        (lambda io: io.update(shape="1x64"), "shape must be a list"),
        (lambda io: io.update(shape=[1, 2**40]), "shape must be a list"),
        (lambda io: io.update(dtype="complex128"), "unknown dtype"),
        (lambda io: io.pop("name"), "missing field(s) name"),
    ],
)
def test_bad_tensor_specs_are_named(
    bundle: Path,
    manifest: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutate: Any,
    message: str,
) -> None:
    target = bundle_copy(bundle, tmp_path)
    data = copy.deepcopy(manifest)
    mutate(data["components"][_component(manifest)]["inputs"][0])
    craft.write_manifest(target, data)
    code, err = cli(capsys, "info", target)
    assert code == 2 and message in one_line_error(err)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (craft.nested_json(50_000), "nests deeper"),
        (craft.nested_json(MAX_JSON_DEPTH + 1), "nests deeper"),
        ('{"a": ' * 5000 + "1" + "}" * 5000, "nests deeper"),
        ("[]", "expected an object"),
        ("null", "expected an object"),
        ("{", "not valid JSON"),
        ("\xff\xfe", "not valid JSON"),
        ("", "not valid JSON"),
    ],
)
def test_hostile_manifest_documents(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    target = bundle_copy(bundle, tmp_path)
    (target / "speechport.json").write_text(text, encoding="latin-1")
    code, err = cli(capsys, "info", target)
    assert code == 2 and message in one_line_error(err) and "speechport.json" in err


def test_oversized_manifest_is_refused(
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import speechport.limits as limits

    monkeypatch.setattr(limits, "MAX_JSON_BYTES", 1000)
    target = bundle_copy(bundle, tmp_path)
    code, err = cli(capsys, "info", target)
    assert code == 2 and "larger than" in one_line_error(err)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ([1, 2, 3], "list of strings"),
        ({"a": 1}, "list of strings"),
        ("abc", "list of strings"),
        (None, "list of strings"),
        ([["a"]], "list of strings"),
    ],
)
def test_bad_tokens_json(
    bundle: Path,
    manifest: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    speech: Path,
    tokens: Any,
    message: str,
) -> None:
    target = bundle_copy(bundle, tmp_path)
    (target / manifest["tokenizer"]["tokens_file"]).write_text(json.dumps(tokens))
    code, err = cli(capsys, "transcribe", target, speech)
    assert code == 2 and message in one_line_error(err) and "tokens" in err


def test_deep_tokens_json(
    bundle: Path,
    manifest: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    speech: Path,
) -> None:
    target = bundle_copy(bundle, tmp_path)
    (target / manifest["tokenizer"]["tokens_file"]).write_text(craft.nested_json(100_000))
    code, err = cli(capsys, "transcribe", target, speech)
    assert code == 2 and "nests deeper" in one_line_error(err)


def test_onnx_file_of_another_model_is_named(
    bundle: Path,
    manifest: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    speech: Path,
) -> None:
    import onnx
    from onnx import TensorProto, helper

    target = bundle_copy(bundle, tmp_path)
    role = _component(manifest)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, target / manifest["components"][role]["files"]["onnx"]["path"])
    code, err = cli(capsys, "transcribe", target, speech)
    line = one_line_error(err)
    assert code == 2 and "not the model the manifest describes" in line
    assert manifest["components"][role]["files"]["onnx"]["path"] in line


def test_onnx_file_that_is_not_onnx(
    bundle: Path, manifest: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = bundle_copy(bundle, tmp_path)
    path = target / manifest["components"][_component(manifest)]["files"]["onnx"]["path"]
    path.write_bytes(b"\x00" * 100)
    code, _err = cli(capsys, "transcribe", target, tmp_path / "none.wav")
    assert code == 2


# --- CLI values -----------------------------------------------------------------------------

VAD_VALUES = [
    ("--threshold", "2"),
    ("--threshold", "-1"),
    ("--threshold", "nan"),
    ("--threshold", "inf"),
    ("--threshold", "x"),
    ("--neg-threshold", "1.5"),
    ("--neg-threshold", "nan"),
    ("--min-speech-ms", "-1"),
    ("--min-speech-ms", "nan"),
    ("--min-silence-ms", "-5"),
    ("--min-silence-ms", "inf"),
    ("--speech-pad-ms", "-30"),
    ("--max-speech-s", "0"),
    ("--max-speech-s", "-1"),
    ("--max-speech-s", "nan"),
]


@pytest.mark.parametrize(("option", "value"), VAD_VALUES)
def test_vad_values_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    code, err = cli(capsys, "vad", tmp_path / "b", tmp_path / "a.wav", f"{option}={value}")
    assert code == 2 and option in err and "expected" in err


def test_neg_threshold_above_threshold_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = cli(
        capsys, "vad", tmp_path / "b", tmp_path / "a.wav", "--threshold", "0.5",
        "--neg-threshold", "0.7",
    )  # fmt: skip
    assert code == 2 and "--neg-threshold 0.7 must not be above the threshold 0.5" in err


@pytest.mark.parametrize(
    "args",
    [
        ["transcribe", "B", "a.wav", "--window", "nan"],
        ["transcribe", "B", "a.wav", "--window", "inf"],
        ["transcribe", "B", "a.wav", "--window", "0"],
        ["transcribe", "B", "a.wav", "--window", "-3"],
        ["transcribe", "B", "a.wav", "--overlap", "nan"],
        ["transcribe", "B", "a.wav", "--overlap", "inf"],
        ["transcribe", "B", "a.wav", "--overlap", "-1"],
        ["verify", "B", "--audio", "a.wav", "--latency-runs", "-1"],
        ["verify", "B", "--audio", "a.wav", "--latency-runs", "0"],
        ["verify", "B", "--audio", "a.wav", "--latency-runs", "2.5"],
        ["verify", "B", "--audio", "a.wav", "--max-cer", "-1"],
        ["verify", "B", "--audio", "a.wav", "--max-prob-diff", "nan"],
        ["convert", "gigaam", "--out", "o", "--max-cer", "-1"],
        ["convert", "gigaam", "--out", "o", "--max-cer", "nan"],
        ["convert", "gigaam", "--out", "o", "--window", "nan"],
        ["convert", "gigaam", "--out", "o", "--window", "0"],
        ["quantize", "B", "--out", "o", "--max-cer", "-0.5"],
        ["quantize", "B", "--out", "o", "--weight-threshold", "-1"],
        ["quantize", "B", "--out", "o", "--latency-runs", "-1"],
    ],
)
def test_cli_numbers_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, err = cli(capsys, *args)
    assert code == 2 and "expected" in err and "error" in err


def test_tiny_window_is_refused(
    bundle: Path, speech: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = cli(capsys, "transcribe", bundle, speech, "--window", "0.001")
    assert code == 2 and "at least 1 s" in one_line_error(err)


# --- outputs --------------------------------------------------------------------------------


def test_save_dir_that_is_a_file(
    bundle: Path, speech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_text("x")
    code, err = cli(capsys, "transcribe", bundle, speech, "--save-dir", tmp_path / "f")
    assert code == 2 and "is a file" in one_line_error(err)
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.parametrize("place", ["/proc/1/speechport-out", "/proc/self/x/y"])
def test_save_dir_in_an_unwritable_place(
    bundle: Path, speech: Path, capsys: pytest.CaptureFixture[str], place: str
) -> None:
    code, err = cli(capsys, "transcribe", bundle, speech, "--save-dir", place)
    assert code == 2 and "save-dir" in one_line_error(err)


def test_convert_out_in_an_unwritable_place(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli(
        capsys, "convert", "gigaam", "--checkpoint", checkpoint("v3_ctc"), "--format", "onnx",
        "--out", "/proc/1/speechport-bundle", "--quiet",
    )  # fmt: skip
    assert code == 2 and "/proc/1" in one_line_error(err)


def test_two_inputs_with_one_stem_are_refused_before_work(
    bundle: Path, speech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    other = shutil.copy(speech, tmp_path / "a" / "speech.wav")
    out = tmp_path / "out"
    code, err = cli(capsys, "transcribe", bundle, speech, other, "--save-dir", out)
    assert code == 2 and "would both be saved as speech.txt" in one_line_error(err)
    assert not list(out.iterdir())


def test_full_disk_while_saving_is_a_clear_error(
    bundle: Path,
    speech: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    import speechport.fsutil as fsutil

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(fsutil, "atomic_write_bytes", full)
    code, err = cli(capsys, "transcribe", bundle, speech, "--save-dir", tmp_path / "o")
    assert code == 2 and "No space left on device" in one_line_error(err)


def test_full_disk_anywhere_is_a_clear_error(
    bundle: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import speechport.cli as cli_module

    def full(args: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/file")

    monkeypatch.setattr(cli_module, "_info", full)
    code, err = cli(capsys, "info", bundle)
    assert code == 2 and one_line_error(err).endswith("/somewhere/file: No space left on device")


def test_quantize_failure_leaves_no_empty_variants(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    code, _err = cli(capsys, "quantize", bundle, "--out", out, "--quiet")
    assert code == 2
    assert not (out / "variants").exists()


def test_failed_atomic_directory_removes_the_parents_it_made(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    with pytest.raises(RuntimeError), atomic_directory(target):
        raise RuntimeError("boom")
    assert not (tmp_path / "a").exists()


# --- interrupts -----------------------------------------------------------------------------

_SLOW_WRITER = """
import sys, time
from pathlib import Path
from speechport import interrupts
from speechport.fsutil import atomic_directory
interrupts.install()
try:
    with atomic_directory(Path(sys.argv[1])) as tmp:
        (tmp / "half").write_text("x")
        print("ready", flush=True)
        time.sleep(30)
except KeyboardInterrupt:
    sys.exit(130)
except interrupts.Terminated as exc:
    sys.exit(interrupts.exit_status(exc.signum))
"""


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_remove_the_partial_output(tmp_path: Path, signum: int, status: int) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    target = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"ready"
    assert list(tmp_path.glob(".out.partial-*"))
    process.send_signal(signum)
    assert process.wait(timeout=10) == status
    assert not list(tmp_path.iterdir())


def test_stale_partials_of_dead_runs_are_removed(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    stale = tmp_path / f".out.partial-{process.pid}-abcd"
    stale.mkdir()
    (stale / "x").write_text("x")
    alive = tmp_path / f".out.partial-{os.getppid()}-abcd"
    alive.mkdir()
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "speechport.json").write_text("{}")
    assert not stale.exists() and alive.exists()


def test_swallowed_interrupt_does_not_replace_the_output(tmp_path: Path) -> None:
    from speechport import interrupts

    target = tmp_path / "out"
    target.mkdir()
    (target / "speechport.json").write_text("old")
    interrupts._received = signal.SIGINT  # what the handler records before raising
    try:
        with pytest.raises(KeyboardInterrupt), atomic_directory(target, overwrite=True) as tmp:
            (tmp / "speechport.json").write_text("new")  # a converter swallowed the Ctrl-C
    finally:
        interrupts._received = None
    assert (target / "speechport.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- weights --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_conversion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: float
) -> None:
    source = zipfile.ZipFile(checkpoint("v3_ctc"))
    path = tmp_path / "nan.ckpt"
    poisoned = False
    with source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/data/2") and not poisoned:  # an encoder weight
                data = np.array([bad], dtype="<f4").tobytes() + data[4:]
                poisoned = True
            target.writestr(info.filename, data)
    out = tmp_path / "o"
    code, err = cli(capsys, "convert", "gigaam", "--checkpoint", path, "--out", out, "--quiet")
    line = one_line_error(err)
    assert code == 2 and "nan.ckpt" in line and "NaN" in line
    assert not out.exists() and not list(tmp_path.glob(".o.*"))


# --- long audio holds one block -------------------------------------------------------------


def test_transcribe_array_and_file_agree(bundle: Path, speech: Path) -> None:
    model = speechport.load(bundle)
    samples, _ = sf.read(speech, dtype="float32")
    assert model.transcribe(speech).text == model.transcribe(samples).text


def test_speechport_error_is_one_line() -> None:
    error = SpeechportError("boom", path="/x", hint="do this")
    assert "\n" not in str(error)


def test_convert_out_that_is_a_file_is_refused_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f").write_text("x")
    code, err = cli(
        capsys, "convert", "gigaam", "--checkpoint", checkpoint("v3_ctc"), "--out",
        tmp_path / "f", "--force",
    )  # fmt: skip
    assert code == 2 and "is a file" in one_line_error(err) and "load" not in err
    assert (tmp_path / "f").read_text() == "x"
