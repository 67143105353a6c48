"""The manifest round-trips through JSON and rejects what a runtime could not use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from speechport.errors import BundleError
from speechport.manifest import MANIFEST_NAME, Manifest, read_manifest


def _manifest_dict(bundles: dict[str, Path]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (bundles["v3_e2e_rnnt"] / MANIFEST_NAME).read_text(encoding="utf-8")
    )
    return data


def test_round_trip(gigaam_bundles: dict[str, Path]) -> None:
    data = _manifest_dict(gigaam_bundles)
    manifest = Manifest.from_dict(data)
    assert json.loads(manifest.to_json()) == data
    assert manifest.formats == ["coreml", "onnx"]
    assert manifest.component("joint").output("logits").shape == (1, 355)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("decoding"), "missing field.*decoding"),
        (lambda d: d.update(schema_version=99), "newer than this speechport reads"),
        (lambda d: d.update(task="translate"), "unknown task 'translate'"),
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
    gigaam_bundles: dict[str, Path], tmp_path: Path, edit: Any, message: str
) -> None:
    data = _manifest_dict(gigaam_bundles)
    edit(data)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match=message) as err:
        read_manifest(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(err.value)


def test_missing_component_file_is_named(gigaam_bundles: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from speechport.runtime import load_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(gigaam_bundles["v3_ctc"], copy)
    (copy / "v3_ctc.onnx").unlink()
    with pytest.raises(BundleError, match=r"v3_ctc\.onnx: Encoder: ONNX file listed"):
        load_bundle(copy, "onnx")


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.onnx", "sub/../../x.onnx", ""])
def test_paths_cannot_leave_the_bundle(
    gigaam_bundles: dict[str, Path], tmp_path: Path, path: str
) -> None:
    data = _manifest_dict(gigaam_bundles)
    data["components"]["joint"]["files"]["onnx"]["path"] = path
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match="leaves the bundle"):
        read_manifest(tmp_path)
    data = _manifest_dict(gigaam_bundles)
    data["tokenizer"]["model_file"] = path or "/abs"
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BundleError, match="leaves the bundle"):
        read_manifest(tmp_path)


def test_window_overlap_is_optional_and_written_only_when_set(
    gigaam_bundles: dict[str, Path],
) -> None:
    """Bundles written before the field existed read as no overlap; a bundle that sets it
    (a family's default for long audio) keeps it through JSON."""
    data = _manifest_dict(gigaam_bundles)
    assert "overlap_seconds" not in data["window"]
    manifest = Manifest.from_dict(data)
    assert manifest.window is not None and manifest.window.overlap_seconds is None
    data["window"]["overlap_seconds"] = 2
    manifest = Manifest.from_dict(data)
    assert manifest.window is not None and manifest.window.overlap_seconds == 2.0
    assert json.loads(manifest.to_json())["window"]["overlap_seconds"] == 2.0
