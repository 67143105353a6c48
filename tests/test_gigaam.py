"""GigaAM v3 against upstream's own outputs: the torch reference path and the ONNX bundle give
upstream's token ids, frames and word timestamps exactly; encoders agree to float tolerance;
Core ML packages declare exactly the manifest's contract."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechport.export.coreml import package_io
from speechport.families.gigaam import GigaAMASR, GigaAMFamily
from speechport.features import GIGAAM_V3, LogMelFrontend
from speechport.fsutil import human_size, path_size, sha256_file
from speechport.manifest import MANIFEST_NAME, Manifest, read_manifest
from speechport.nn.subsampling import Conv1dSubsampling
from speechport.pipelines.transcriber import Transcriber
from speechport.runtime import load_bundle
from speechport.runtime.torch_backend import TorchBackend
from tests.helpers import (
    CLIPS,
    GIGAAM,
    VARIANTS,
    BundleCache,
    assert_package_declares,
    checkpoint,
    gigaam_clip,
    length_path_types,
)

# Encoder outputs: the same float32 arithmetic as upstream in a different order (matmul
# attention vs torch SDPA, masked vs unpadded convolutions): differences up to 7e-5 were seen
# on outputs of magnitude up to ~30 (CTC log-probs), i.e. a few float32 ulps accumulated over
# two conformer layers.
ENCODER_ATOL = 2e-4
ENCODER_RTOL = 1e-5


@pytest.fixture(scope="module")
def transcribers(gigaam_bundles: dict[str, Path]) -> dict[tuple[str, str], Transcriber]:
    out = {}
    for variant, bundle in gigaam_bundles.items():
        out[(variant, "onnx")] = Transcriber(load_bundle(bundle, "onnx"))
        out[(variant, "torch")] = Transcriber(
            load_bundle(bundle, TorchBackend(checkpoint=checkpoint(variant)))
        )
    return out


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_tokens_frames_and_words_equal_upstream(
    transcribers: dict[tuple[str, str], Transcriber], variant: str, clip: int, backend: str
) -> None:
    ref = gigaam_clip(variant, clip)
    transcript = transcribers[(variant, backend)].transcribe(ref.audio)
    assert len(transcript.segments) == 1
    segment = transcript.segments[0]
    assert segment.token_ids == ref.expected["token_ids"]
    assert segment.frames == ref.expected["token_frames"]
    assert segment.token_ids == ref.npz["token_ids"].tolist()
    assert transcript.text == ref.expected["text"].strip()
    words = [{"text": w.text, "start": w.start, "end": w.end} for w in transcript.words]
    assert words == ref.expected["words"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_encoder_equals_upstream_on_upstream_features(variant: str) -> None:
    model = GigaAMFamily().load(checkpoint(variant)).model
    assert isinstance(model, GigaAMASR)
    for clip in CLIPS:
        ref = gigaam_clip(variant, clip)
        features = torch.from_numpy(ref.npz["features"])
        length = torch.tensor([features.shape[2]], dtype=torch.int32)
        with torch.no_grad():
            encoded, encoded_len = model.encoder(features, length)
        assert int(encoded_len[0]) == int(ref.npz["encoded_length"][0])
        np.testing.assert_allclose(
            encoded.numpy(), ref.npz["encoded"], rtol=ENCODER_RTOL, atol=ENCODER_ATOL
        )
        if "log_probs" in ref.npz:
            with torch.no_grad():
                log_probs = model.head(encoded)
            np.testing.assert_allclose(
                log_probs.numpy(), ref.npz["log_probs"], rtol=ENCODER_RTOL, atol=ENCODER_ATOL
            )


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_encoder_on_padded_window_equals_upstream(
    transcribers: dict[tuple[str, str], Transcriber], variant: str
) -> None:
    """A clip zero-padded into the 30 s window gives upstream's unpadded encoder frames."""
    transcriber = transcribers[(variant, "onnx")]
    encoder = transcriber.bundle.component("encoder")
    for clip in CLIPS:
        ref = gigaam_clip(variant, clip)
        frames = ref.npz["features"].shape[2]
        padded = np.zeros(encoder.spec.inputs[0].shape, dtype=np.float32)
        padded[:, :, :frames] = ref.npz["features"]
        out, out_len = encoder(padded, np.array([frames], dtype=np.int32))
        n = int(out_len[0])
        assert n == int(ref.npz["encoded_length"][0])
        if "ctc" in variant:
            got, want = out[:, :n], ref.npz["log_probs"]
        else:
            got, want = out[:, :, :n], ref.npz["encoded"]
            assert not np.any(out[:, :, n:]), "frames past encoded_len must be zero"
        np.testing.assert_allclose(got, want, rtol=ENCODER_RTOL, atol=ENCODER_ATOL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_encoder_runs_only_the_valid_frames(
    transcribers: dict[tuple[str, str], Transcriber], variant: str
) -> None:
    """The ONNX file takes its features at any length: the transcriber feeds only the
    valid frames, rounded up to the subsampling factor, and the encoder gives upstream's
    frames (to the tolerance of the padded window); the torch reference keeps the window."""
    transcriber = transcribers[(variant, "onnx")]
    encoder = transcriber.bundle.component("encoder")
    factor = transcriber.decoding.subsampling_factor
    window = encoder.spec.inputs[0].shape[2]
    for clip in CLIPS:
        ref = gigaam_clip(variant, clip)
        inputs = transcriber.encoder_inputs(ref.audio)
        torch_inputs = transcribers[(variant, "torch")].encoder_inputs(ref.audio)
        assert inputs is not None and torch_inputs is not None
        features, length = inputs
        valid = int(length[0])
        assert features.shape[2] == -(-valid // factor) * factor < window
        assert torch_inputs[0].shape[2] == window
        frames = ref.npz["features"].shape[2]
        cut = np.zeros((*features.shape[:2], -(-frames // factor) * factor), dtype=np.float32)
        cut[:, :, :frames] = ref.npz["features"]
        out, out_len = encoder(cut, np.array([frames], dtype=np.int32))
        n = int(out_len[0])
        assert n == int(ref.npz["encoded_length"][0])
        assert out.shape[1 if "ctc" in variant else 2] == cut.shape[2] // factor
        got = out[:, :n] if "ctc" in variant else out[:, :, :n]
        want = ref.npz["log_probs"] if "ctc" in variant else ref.npz["encoded"]
        np.testing.assert_allclose(got, want, rtol=ENCODER_RTOL, atol=ENCODER_ATOL)


def test_full_window_length_is_integer_exact() -> None:
    """2999 feature frames (30 s) -> 750 encoder frames: the length fp16 cannot compute."""
    model = GigaAMFamily().load(checkpoint("v3_e2e_rnnt")).model
    assert isinstance(model, GigaAMASR)
    subsampling = model.encoder.pre_encode
    assert isinstance(subsampling, Conv1dSubsampling)
    lengths = torch.arange(1, 3001, dtype=torch.int32)
    got = subsampling.output_length(lengths)
    expected = [((((n - 1) // 2 + 1) - 1) // 2 + 1) for n in range(1, 3001)]
    assert got.tolist() == expected
    assert int(subsampling.output_length(torch.tensor([2999]))[0]) == 750
    assert got.dtype == torch.int32


@pytest.mark.parametrize("variant", VARIANTS)
def test_coreml_packages_match_manifest(gigaam_bundles: dict[str, Path], variant: str) -> None:
    bundle = gigaam_bundles[variant]
    manifest = read_manifest(bundle)
    roles = ["encoder", "decoder", "joint"] if "rnnt" in variant else ["encoder"]
    assert sorted(manifest.components) == sorted(roles)
    for comp in manifest.components.values():
        assert comp.files["coreml"].path == f"{comp.name}.mlpackage"
        assert comp.files["coreml"].precision == "fp16"
        file = comp.files["coreml"]
        assert [(t.name, t.shape, t.dtype) for t in file.inputs] == [
            (t.name, t.shape, t.dtype) for t in comp.inputs
        ]
        assert [(t.name, t.shape, t.dtype) for t in file.outputs] == [
            (t.name, t.shape, t.dtype) for t in comp.outputs
        ]
        assert_package_declares(bundle / file.path, file)
    encoder = manifest.component("encoder")
    assert encoder.files["coreml"].inputs[0].buckets == {2: (499, 999, 1499, 2999)}
    assert encoder.input("features").shape == (1, 64, 2999)
    assert encoder.input("length").dtype == "int32"
    assert encoder.output("encoded_len").dtype == "int32"
    path_types = length_path_types(bundle / encoder.files["coreml"].path, "encoded_len")
    assert path_types and set(path_types.values()) == {"int32"}, path_types


def test_manifest_describes_the_bundle(gigaam_bundles: dict[str, Path]) -> None:
    bundle = gigaam_bundles["v3_e2e_rnnt"]
    m = read_manifest(bundle)
    # the manifest with both formats' file entries round-trips through JSON
    data = json.loads((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert json.loads(Manifest.from_dict(data).to_json()) == data
    assert m.formats == ["coreml", "onnx"]
    assert m.component("joint").output("logits").shape == (1, 355)
    assert (m.family, m.variant, m.task, m.sample_rate) == ("gigaam", "v3_e2e_rnnt", "asr", 16000)
    window, d, _ = m.require_asr()
    assert (window.samples, window.feature_frames, window.encoder_frames) == (
        480000,
        2999,
        750,
    )
    assert m.frontend == GIGAAM_V3.to_dict()
    assert (d.algorithm, d.blank_id, d.vocab_size, d.max_symbols_per_frame) == (
        "rnnt_greedy",
        354,
        354,
        10,
    )
    assert d.frame_duration == pytest.approx(0.04)
    decoder = m.component("decoder")
    assert [(s.input, s.output, s.init) for s in decoder.state] == [
        ("h_in", "h_out", "zeros"),
        ("c_in", "c_out", "zeros"),
    ]
    prov = m.provenance
    assert prov["checkpoint_sha256"] == sha256_file(checkpoint("v3_e2e_rnnt"))
    assert prov["tokenizer_sha256"] == sha256_file(GIGAAM / "tokenizer.model")
    assert {"torch", "coremltools", "onnx", "speechport"} <= set(prov["converters"])
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    sp.Load(str(GIGAAM / "tokenizer.model"))
    tokens = json.loads((bundle / "tokens.json").read_text(encoding="utf-8"))
    assert tokens == [sp.IdToPiece(i) for i in range(sp.GetPieceSize())]
    assert (bundle / "tokenizer.model").read_bytes() == (GIGAAM / "tokenizer.model").read_bytes()


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_layout_is_upstreams(gigaam_bundles: dict[str, Path], variant: str) -> None:
    import onnxruntime as ort

    bundle = gigaam_bundles[variant]
    config = json.loads((bundle / "config.json").read_text())
    assert config["model_type"] == "gigaam-" + variant.replace("_", "-")
    assert config["version"] == "v3"
    vocab_name = f"{variant}_vocab.txt" if "e2e" in variant else "v3_vocab.txt"
    lines = (bundle / vocab_name).read_text(encoding="utf-8").splitlines()
    blank = read_manifest(bundle).require_asr()[1].blank_id
    assert lines[-1] == f"<blk> {blank}"
    assert len(lines) == blank + 1
    if "e2e" not in variant:
        assert lines[0] == "\u2581 0" and lines[1] == "а 1"
    expected = (
        {
            f"{variant}_encoder.onnx": (["audio_signal", "length"], ["encoded", "encoded_len"]),
            f"{variant}_decoder.onnx": (["x", "h.1", "c.1"], ["dec", "h", "c"]),
            f"{variant}_joint.onnx": (["enc", "dec"], ["joint"]),
        }
        if "rnnt" in variant
        else {
            f"{variant}.onnx": (["features", "feature_lengths"], ["log_probs", "encoded_lengths"])
        }
    )
    for name, (ins, outs) in expected.items():
        session = ort.InferenceSession(str(bundle / name), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ins
        assert [o.name for o in session.get_outputs()] == outs
    assert (bundle / f"{variant}.yaml").is_file()


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_asr_loads_the_bundle_unchanged(
    gigaam_bundles: dict[str, Path], variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnx-asr, an existing GigaAM ONNX runtime, loads the directory as it is and gives
    upstream's transcripts. (It hard-codes the full-size predictor width, 320; the tiny
    fixture models use 48.) Clip 3 is left out: the models were not trained on it and
    onnx-asr's own front end differs from torchaudio's by float rounding, enough to flip
    its borderline frames."""
    import onnx_asr
    from onnx_asr.models.gigaam import GigaamV2Rnnt

    monkeypatch.setattr(GigaamV2Rnnt, "PRED_HIDDEN", 48)
    model = onnx_asr.load_model("gigaam-" + variant.replace("_", "-"), gigaam_bundles[variant])
    for clip in (0, 1, 2):
        ref = gigaam_clip(variant, clip)
        assert model.recognize(str(GIGAAM / ref.expected["audio"])) == ref.expected["text"]


def test_example_script_runs_with_onnxruntime_and_numpy_only(
    gigaam_bundles: dict[str, Path],
) -> None:
    bundle = gigaam_bundles["v3_e2e_rnnt"]
    script = bundle / "example_infer_onnx.py"
    imported = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {
        "__future__",
        "argparse",
        "json",
        "math",
        "sys",
        "wave",
        "pathlib",
        "typing",
        "numpy",
        "onnxruntime",
        "coremltools",
    }
    for clip in (0, 2):
        ref = gigaam_clip("v3_e2e_rnnt", clip)
        result = subprocess.run(
            [sys.executable, str(script), str(GIGAAM / ref.expected["audio"])],
            capture_output=True,
            text=True,
            check=True,
            cwd=bundle.parent,
        )
        assert result.stdout.strip() == ref.expected["text"]
    assert 'DEFAULT_BACKEND = "coreml"' in (bundle / "example_infer.py").read_text()


def test_model_card_lists_every_file_with_its_size(gigaam_bundles: dict[str, Path]) -> None:
    bundle = gigaam_bundles["v3_e2e_rnnt"]
    card = (bundle / "README.md").read_text(encoding="utf-8")
    for path in bundle.iterdir():
        if path.name == "README.md":
            continue
        assert f"| `{path.name}` | {human_size(path_size(path))} |" in card
    assert "float32 [1, 64, 2999]" in card
    assert '"mel_scale": "htk"' in card


def test_frontend_equals_upstream_features() -> None:
    """The runtime front end on the raw clip gives upstream's frame count; the values are
    checked in tests/test_features.py."""
    frontend = LogMelFrontend(GIGAAM_V3)
    for clip in CLIPS:
        ref = gigaam_clip("v3_e2e_rnnt", clip)
        assert frontend(ref.audio).shape == ref.npz["features"].shape[1:]
        assert frontend.num_frames(ref.audio.size) == int(ref.npz["feature_length"][0])


def test_fp32_core_ml_conversion(bundle_cache: BundleCache) -> None:
    out = bundle_cache.get(
        "gigaam", checkpoint("v3_ctc"), "v3_ctc", formats="coreml", precision="fp32"
    )
    manifest = read_manifest(out)
    file = manifest.component("encoder").files["coreml"]
    assert file.precision == "fp32"
    assert manifest.provenance["precision"] == {"coreml": "fp32"}
    inputs, outputs = package_io(out / file.path)
    assert [(t.name, t.shape, t.dtype) for t in inputs] == [
        ("features", (1, 64, 2999), "float32"),
        ("length", (1,), "int32"),
    ]
    assert inputs[0].buckets == {2: (499, 999, 1499, 2999)}
    assert [(t.name, t.shape, t.dtype) for t in outputs] == [
        ("log_probs", (), "float32"),  # its frames follow the features' bucket
        ("encoded_len", (1,), "int32"),
    ]
    assert file.outputs[0].shape == (1, 750, 34) and file.outputs[0].dynamic_axes == {1: "frames"}
    assert not list(out.glob("*.onnx")) and not (out / "config.json").exists()
    assert (out / "example_infer.py").is_file() and not (out / "example_infer_onnx.py").exists()
