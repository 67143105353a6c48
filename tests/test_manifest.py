"""The manifest round-trips through JSON and rejects what a runtime could not use."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from speechport.errors import BundleError
from speechport.manifest import MANIFEST_NAME, Manifest, read_manifest
from tests.helpers import copy_bundle


@pytest.fixture(scope="module")
def rnnt(gigaam_onnx: Callable[[str], Path]) -> Path:
    """The e2e RNN-T bundle, ONNX only (the Core ML entries round-trip in test_gigaam.py)."""
    return gigaam_onnx("v3_e2e_rnnt")


def _manifest_dict(bundle: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    return data


def test_round_trip(rnnt: Path) -> None:
    data = _manifest_dict(rnnt)
    manifest = Manifest.from_dict(data)
    assert json.loads(manifest.to_json()) == data
    assert manifest.formats == ["onnx"]
    assert manifest.component("joint").output("logits").shape == (1, 355)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(schema_version=99), "newer than this speechport reads"),
        (lambda d: d["decoding"].update(algorithm="beam"), "unknown decoding algorithm 'beam'"),
        (
            lambda d: d["components"]["joint"]["inputs"][0].update(dtype="complex64"),
            "unknown dtype 'complex64'",
        ),
        (
            lambda d: d["components"]["joint"]["files"].update(tflite={}),
            "unknown format 'tflite'",
        ),
        (lambda d: d["components"]["encoder"].pop("outputs"), "missing field.*outputs"),
        (lambda d: d["window"].update(overlap_seconds=-1), "overlap_seconds must be .* >= 0"),
        (lambda d: d["window"].update(overlap_seconds="2"), "overlap_seconds must be"),
        (lambda d: d["window"].update(overlap_seconds=True), "overlap_seconds must be"),
        (lambda d: d["window"].update(hop=3), "window: unknown field.*hop"),
        (lambda d: d["window"].pop("samples"), "window: missing field.*samples"),
    ],
)
def test_invalid_manifests_name_the_problem(
    rnnt: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    data = _manifest_dict(rnnt)
    edit(data)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match=message) as err:
        read_manifest(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("decoding"), "asr manifest: missing field.*decoding"),
        (lambda d: d.update(task="translate"), "unknown task 'translate'; this speechport runs"),
    ],
)
def test_what_a_task_needs_is_checked_when_a_bundle_is_opened(
    rnnt: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    """The manifest is plain data; its task's plug-in says what the task needs, and
    ``speechport.load`` (and every command) refuses a bundle that lacks it."""
    import speechport

    data = _manifest_dict(rnnt)
    edit(data)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match=message) as err:
        speechport.load(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(err.value)


def test_missing_component_file_is_named(
    gigaam_onnx: Callable[[str], Path], tmp_path: Path
) -> None:
    from speechport.runtime import load_bundle

    copy = copy_bundle(gigaam_onnx("v3_ctc"), tmp_path / "bundle")
    (copy / "v3_ctc.onnx").unlink()
    with pytest.raises(BundleError, match=r"v3_ctc\.onnx: Encoder: ONNX file listed"):
        load_bundle(copy, "onnx")


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.onnx", "sub/../../x.onnx", ""])
def test_paths_cannot_leave_the_bundle(rnnt: Path, tmp_path: Path, path: str) -> None:
    data = _manifest_dict(rnnt)
    data["components"]["joint"]["files"]["onnx"]["path"] = path
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match="leaves the bundle"):
        read_manifest(tmp_path)
    data = _manifest_dict(rnnt)
    data["tokenizer"]["model_file"] = path or "/abs"
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match="leaves the bundle"):
        read_manifest(tmp_path)


def test_window_overlap_is_optional_and_written_only_when_set(rnnt: Path) -> None:
    """Bundles written before the field existed read as no overlap; a bundle that sets it
    (a family's default for long audio) keeps it through JSON."""
    data = _manifest_dict(rnnt)
    assert "overlap_seconds" not in data["window"]
    manifest = Manifest.from_dict(data)
    assert manifest.window is not None and manifest.window.overlap_seconds is None
    data["window"]["overlap_seconds"] = 2
    manifest = Manifest.from_dict(data)
    assert manifest.window is not None and manifest.window.overlap_seconds == 2.0
    assert json.loads(manifest.to_json())["window"]["overlap_seconds"] == 2.0
