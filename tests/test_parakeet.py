"""Parakeet (NeMo FastConformer TDT and RNN-T) against NeMo 3.0's own outputs.

Token ids, frames and TDT durations from the torch reference and from the ONNX bundle equal
NeMo's exactly; features and encoder frames agree to float tolerance; fused and split
components agree; JointDecision's token and duration are the argmax of JointStep's logits on
every frame; onnx-asr loads the ONNX files unchanged; Core ML packages declare the manifest's
contract.

Tolerances. Encoder: the same float32 arithmetic as NeMo in another order (matmul attention
vs SDPA, masked vs unpadded convolutions, onnxruntime's kernels): on outputs of magnitude up
to ~6.6 the largest difference seen is 1.7e-6 for torch and 1.5e-6 for ONNX in the padded
window (TDT), a few float32 ulps through two layers; ``ENCODER_ATOL`` allows 1e-5 (6x), which a
mapping mistake (a swapped bias, a wrong shift, an unmasked pad frame) exceeds by orders of
magnitude (the unmasked-subsampling variant differs by 0.08). Features: the per-element
float32 noise model of tests/test_features.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from speechport.cli import main
from speechport.families.parakeet import ParakeetConfig, ParakeetFamily, ParakeetModel
from speechport.families.parakeet.config import full_size_config
from speechport.features import PARAKEET_TDT_V3
from speechport.manifest import read_manifest
from speechport.pipelines.transcriber import Transcriber
from speechport.runtime import load_bundle
from speechport.runtime.base import LoadedBundle
from speechport.runtime.torch_backend import TorchBackend
from tests.helpers import (
    BundleCache,
    assert_package_declares,
    assert_within,
    feature_tolerance,
    length_path_types,
)

NEMO = Path(__file__).parent / "data" / "nemo"
VARIANTS = ("parakeet_tdt", "parakeet_rnnt")
CLIPS = (0, 1, 2, 3)
ENCODER_ATOL = 1e-5
ENCODER_RTOL = 1e-6
COREML_ROLES = (
    "preprocessor",
    "encoder",
    "mel_encoder",
    "decoder",
    "joint",
    "joint_decision",
    "joint_decision_frame",
)


def nemo_file(variant: str) -> Path:
    return NEMO / f"{variant}.nemo"


def clip(variant: str, index: int) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    entry = json.loads((NEMO / "index.json").read_text())["variants"][variant]["clips"][index]
    audio, rate = sf.read(NEMO / entry["audio"], dtype="float32")
    assert rate == 16000
    with np.load(NEMO / f"{variant}_clip{index}.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return audio, arrays, entry


@pytest.fixture(scope="module")
def bundles(bundle_cache: BundleCache) -> dict[str, Path]:
    """Both fixtures converted to Core ML (fp16) and ONNX."""
    return {
        variant: bundle_cache.get("parakeet", nemo_file(variant), variant) for variant in VARIANTS
    }


@pytest.fixture(scope="module")
def loaded(bundles: dict[str, Path]) -> dict[tuple[str, str], LoadedBundle]:
    out = {}
    for variant, bundle in bundles.items():
        out[(variant, "onnx")] = load_bundle(bundle, "onnx")
        out[(variant, "coreml")] = load_bundle(bundle, "coreml")
        out[(variant, "torch")] = load_bundle(bundle, TorchBackend(checkpoint=nemo_file(variant)))
    return out


@pytest.mark.parametrize(
    "backend", ["torch", "onnx", pytest.param("coreml", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("index", CLIPS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_tokens_frames_and_durations_equal_nemo(
    loaded: dict[tuple[str, str], LoadedBundle], variant: str, index: int, backend: str
) -> None:
    """NeMo's tokens, frames and durations from the torch path, the ONNX files and the fp16
    Core ML packages (run by the MIL interpreter with fp16 rounding)."""
    audio, npz, entry = clip(variant, index)
    transcript = Transcriber(loaded[(variant, backend)]).transcribe(audio)
    assert len(transcript.segments) == 1
    segment = transcript.segments[0]
    assert segment.token_ids == entry["token_ids"] == npz["token_ids"].tolist()
    assert segment.frames == entry["token_frames"] == npz["token_frames"].tolist()
    if variant == "parakeet_tdt":
        assert segment.durations == entry["token_durations"] == npz["token_durations"].tolist()
    else:
        assert segment.durations is None
    assert transcript.text == entry["text"]
    # Timestamps: frame x 0.08 s.
    assert [t.start for t in segment.tokens] == pytest.approx(
        [0.08 * f for f in entry["token_frames"]]
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_encoder_equals_nemo_on_nemo_features(variant: str) -> None:
    model = ParakeetFamily().load(nemo_file(variant)).model
    assert isinstance(model, ParakeetModel)
    for index in CLIPS:
        _, npz, _ = clip(variant, index)
        with torch.no_grad():
            encoded, length = model.encoder(
                torch.from_numpy(npz["features"]), torch.from_numpy(npz["feature_length"])
            )
        n = int(npz["encoded_length"][0])
        assert int(length[0]) == n
        np.testing.assert_allclose(
            encoded.numpy()[:, :, :n],
            npz["encoded"][:, :, :n],
            rtol=ENCODER_RTOL,
            atol=ENCODER_ATOL,
        )


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_components_on_the_window_equal_nemo(
    loaded: dict[tuple[str, str], LoadedBundle], variant: str
) -> None:
    """The Preprocessor's features and the Encoder's frames for a clip zero-padded into
    the 15 s window equal NeMo's unpadded ones."""
    bundle = loaded[(variant, "onnx")]
    preprocessor, encoder = bundle.component("preprocessor"), bundle.component("encoder")
    for index in CLIPS:
        audio, npz, _ = clip(variant, index)
        padded = np.zeros((1, 240000), dtype=np.float32)
        padded[0, : audio.size] = audio
        mel, mel_length = preprocessor(padded, np.array([audio.size], dtype=np.int32))
        valid = int(npz["feature_length"][0])
        assert int(mel_length[0]) == valid == audio.size // 160
        expected = npz["features"][0]
        assert_within(
            mel[0, :, : expected.shape[1]],
            expected,
            feature_tolerance(PARAKEET_TDT_V3, audio, expected),
        )
        assert not np.any(mel[0, :, valid:])
        features = np.zeros((1, 128, 1501), dtype=np.float32)
        features[:, :, : expected.shape[1]] = npz["features"]
        encoded, encoded_len = encoder(features, np.array([valid], dtype=np.int32))
        n = int(encoded_len[0])
        assert n == int(npz["encoded_length"][0])
        np.testing.assert_allclose(
            encoded[:, :, :n], npz["encoded"][:, :, :n], rtol=ENCODER_RTOL, atol=ENCODER_ATOL
        )
        assert not np.any(encoded[:, :, n:]), "frames past encoded_len must be zero"


def test_fused_mel_encoder_equals_preprocessor_then_encoder(
    loaded: dict[tuple[str, str], LoadedBundle],
) -> None:
    """MelEncoder (Core ML only; its torch module here) gives exactly the split pair's
    frames in torch, and the ONNX split pair's frames to float tolerance."""
    torch_bundle = loaded[("parakeet_tdt", "torch")]
    onnx_bundle = loaded[("parakeet_tdt", "onnx")]
    assert "mel_encoder" not in onnx_bundle.components  # no ONNX file: Core ML only
    fused = torch_bundle.component("mel_encoder")
    for index in CLIPS:
        audio, _, _ = clip("parakeet_tdt", index)
        padded = np.zeros((1, 240000), dtype=np.float32)
        padded[0, : audio.size] = audio
        length = np.array([audio.size], dtype=np.int32)
        encoded, encoded_len = fused(padded, length)
        for bundle in (torch_bundle, onnx_bundle):
            mel, mel_length = bundle.component("preprocessor")(padded, length)
            split, split_len = bundle.component("encoder")(mel, mel_length)
            assert int(split_len[0]) == int(encoded_len[0])
            if bundle is torch_bundle:
                np.testing.assert_array_equal(split, encoded)
            else:
                np.testing.assert_allclose(split, encoded, rtol=ENCODER_RTOL, atol=ENCODER_ATOL)


@pytest.mark.parametrize("variant", VARIANTS)
def test_joint_decision_is_the_argmax_of_joint_step_on_every_frame(
    loaded: dict[tuple[str, str], LoadedBundle], variant: str
) -> None:
    # The decision files against the joint's file, each in ONNX Runtime (the numpy joint
    # is checked against ONNX Runtime in test_numpy_steps.py).
    from speechport.runtime.onnx_backend import OnnxBackend

    bundle = load_bundle(loaded[(variant, "onnx")].path, OnnxBackend(steps="onnx"))
    manifest = bundle.manifest
    decoding = manifest.require_asr()[1]
    durations = decoding.durations
    num_tokens = decoding.vocab_size + 1
    encoder, decoder = bundle.component("encoder"), bundle.component("decoder")
    joint = bundle.component("joint")
    window = bundle.component("joint_decision")
    frame = bundle.component("joint_decision_frame")
    k = int(manifest.extras["top_k"])
    state = [np.zeros(t.shape, dtype=np.float32) for t in decoder.spec.inputs[1:]]
    checked = 0
    for index in CLIPS:
        _, npz, _ = clip(variant, index)
        features = np.zeros((1, 128, 1501), dtype=np.float32)
        features[:, :, : npz["features"].shape[2]] = npz["features"]
        encoded, _ = encoder(features, np.array([npz["feature_length"][0]], dtype=np.int32))
        # The decoder outputs NeMo's path goes through: blank first, then each emitted token.
        h, c = state
        dec_outs = []
        for token in [decoding.blank_id, *npz["token_ids"].tolist()]:
            dec_out, h, c = decoder(np.array([[token]], dtype=np.int32), h, c)
            dec_outs.append(dec_out)
        for dec_out in dec_outs:
            decided = window(encoded, dec_out)
            for t in range(encoded.shape[2]):
                logits = joint(encoded[:, :, t], dec_out)[0][0]
                token_logits = logits[:num_tokens]
                want_token = int(token_logits.argmax())
                probs = np.exp(token_logits - token_logits.max())
                want_prob = probs[want_token] / probs.sum()
                want_top = np.argsort(-token_logits, kind="stable")[:k]
                per_frame = frame(encoded[:, :, t], dec_out)
                for out, at in ((decided, (0, t)), (per_frame, (0,))):
                    assert int(out[0][at]) == want_token
                    assert float(out[1][at]) == pytest.approx(want_prob, rel=1e-5)
                    if durations:
                        want_d = durations[int(logits[num_tokens:].argmax())]
                        assert int(out[2][at]) == want_d
                    np.testing.assert_array_equal(out[-2][at], want_top)
                    np.testing.assert_allclose(out[-1][at], token_logits[want_top], rtol=1e-5)
                checked += 1
    assert checked > 1000


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_encoder_runs_only_the_valid_frames(
    loaded: dict[tuple[str, str], LoadedBundle], variant: str
) -> None:
    """ONNX: the features are cut to the valid frames rounded up to the subsampling factor,
    and the valid encoder frames equal the padded window's bit for bit; Core ML (a few
    fixed shapes) pads to its shortest shape bucket that holds them (5 s here)."""
    onnx = Transcriber(loaded[(variant, "onnx")])
    coreml = Transcriber(loaded[(variant, "coreml")])
    encoder = loaded[(variant, "onnx")].of_kind("encoder")
    factor = onnx.decoding.subsampling_factor
    for index in CLIPS:
        audio, _, _ = clip(variant, index)
        cut_inputs, padded_inputs = onnx.encoder_inputs(audio), coreml.encoder_inputs(audio)
        assert cut_inputs is not None and padded_inputs is not None
        (features, length), (padded, _) = cut_inputs, padded_inputs
        valid = int(length[0])
        assert features.shape[2] == -(-valid // factor) * factor < onnx.window.feature_frames
        assert padded.shape[2] == 501
        np.testing.assert_array_equal(padded[:, :, : features.shape[2]], features)
        window = np.zeros((*padded.shape[:2], onnx.window.feature_frames), np.float32)
        window[:, :, : padded.shape[2]] = padded
        cut, full = encoder(features, length), encoder(window, length)
        n = int(cut[1][0])
        assert n == int(full[1][0]) and cut[0].shape[2] < full[0].shape[2]
        np.testing.assert_array_equal(cut[0][:, :, :n], full[0][:, :, :n])


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_asr_loads_the_bundle_unchanged(bundles: dict[str, Path], variant: str) -> None:
    """onnx-asr (its ``nemo-conformer-*`` model types, its own NeMo front end) gives NeMo's
    transcripts from the directory as it is; no patching was needed."""
    import onnx_asr

    head = variant.split("_")[1]
    model = onnx_asr.load_model(f"nemo-conformer-{head}", bundles[variant])
    for index in CLIPS:
        _, _, entry = clip(variant, index)
        assert model.recognize(str(NEMO / entry["audio"])) == entry["text"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_layout_is_nemos_with_sherpa_metadata(bundles: dict[str, Path], variant: str) -> None:
    import onnx
    import onnxruntime as ort

    bundle = bundles[variant]
    tdt = variant == "parakeet_tdt"
    expected = {
        "encoder-model.onnx": (["audio_signal", "length"], ["outputs", "encoded_lengths"]),
        "decoder.onnx": (
            ["targets", "target_length", "input_states_1", "input_states_2"],
            ["outputs", "prednet_lengths", "output_states_1", "output_states_2"],
        ),
        "joiner.onnx": (["encoder_outputs", "decoder_outputs"], ["outputs"]),
        "decoder_joint-model.onnx": (
            ["encoder_outputs", "targets", "target_length", "input_states_1", "input_states_2"],
            ["outputs", "prednet_lengths", "output_states_1", "output_states_2"],
        ),
    }
    for name, (ins, outs) in expected.items():
        session = ort.InferenceSession(str(bundle / name), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ins
        assert [o.name for o in session.get_outputs()] == outs
    joiner = ort.InferenceSession(str(bundle / "joiner.onnx"), providers=["CPUExecutionProvider"])
    assert joiner.get_outputs()[0].shape[-1] == 183 + 1 + (5 if tdt else 0)
    meta = {p.key: p.value for p in onnx.load(str(bundle / "encoder-model.onnx")).metadata_props}
    assert meta["vocab_size"] == "183"
    assert meta["pred_rnn_layers"] == "2" and meta["pred_hidden"] == "32"
    assert meta["subsampling_factor"] == "8" and meta["feat_dim"] == "128"
    assert meta["normalize_type"] == "per_feature"
    assert ("tdt" in meta["url"]) is tdt  # how sherpa-onnx tells TDT from RNN-T
    tokens = (bundle / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert tokens[-1] == "<blk> 183" and len(tokens) == 184
    assert (bundle / "vocab.txt").read_text() == (bundle / "tokens.txt").read_text()
    assert json.loads((bundle / "config.json").read_text()) == {
        "model_type": f"nemo-conformer-{'tdt' if tdt else 'rnnt'}",
        "features_size": 128,
        "subsampling_factor": 8,
        "max_tokens_per_step": 10,
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_coreml_packages_match_manifest(bundles: dict[str, Path], variant: str) -> None:
    bundle = bundles[variant]
    manifest = read_manifest(bundle)
    with_coreml = [role for role, c in manifest.components.items() if "coreml" in c.files]
    assert sorted(with_coreml) == sorted(COREML_ROLES)
    for role in with_coreml:
        comp = manifest.component(role)
        file = comp.files["coreml"]
        assert file.path == f"{comp.name}.mlpackage"
        fp32 = role in ("preprocessor", "mel_encoder")
        assert file.precision == ("fp32" if fp32 else "fp16")
        assert [(t.name, t.shape, t.dtype) for t in file.inputs] == [
            (t.name, t.shape, t.dtype) for t in comp.inputs
        ]
        assert [(t.name, t.shape, t.dtype) for t in file.outputs] == [
            (t.name, t.shape, t.dtype) for t in comp.outputs
        ]
        assert_package_declares(bundle / file.path, file)
    encoder = manifest.component("encoder")
    assert encoder.files["coreml"].inputs[0].buckets == {2: (501, 1001, 1501)}
    path_types = length_path_types(bundle / encoder.files["coreml"].path, "encoded_len")
    assert path_types and set(path_types.values()) == {"int32"}, path_types


def test_manifest_describes_the_bundle(bundles: dict[str, Path]) -> None:
    m = read_manifest(bundles["parakeet_tdt"])
    assert (m.family, m.variant, m.task, m.sample_rate) == (
        "parakeet",
        "parakeet-tdt",
        "asr",
        16000,
    )
    window, d, tokenizer = m.require_asr()
    assert (window.samples, window.feature_frames, window.encoder_frames) == (240000, 1501, 188)
    assert m.frontend == PARAKEET_TDT_V3.to_dict()
    assert (d.algorithm, d.blank_id, d.vocab_size, d.durations) == (
        "tdt_greedy",
        183,
        183,
        (0, 1, 2, 3, 4),
    )
    assert (d.max_symbols_per_frame, d.subsampling_factor, d.timestamps) == (10, 8, "nominal")
    assert d.frame_duration == pytest.approx(0.08)
    assert (tokenizer.kind, tokenizer.vocab_size) == ("sentencepiece", 183)
    components = {c.name: sorted(c.files) for c in m.components.values()}
    assert components == {
        "Preprocessor": ["coreml", "onnx"],
        "Encoder": ["coreml", "onnx"],
        "MelEncoder": ["coreml"],
        "DecoderStep": ["coreml", "onnx"],
        "JointStep": ["coreml", "onnx"],
        "JointDecision": ["coreml", "onnx"],
        "JointDecisionSingleStep": ["coreml", "onnx"],
        "DecoderJoint": ["onnx"],
    }
    rnnt = read_manifest(bundles["parakeet_rnnt"]).require_asr()[1]
    assert (rnnt.algorithm, rnnt.durations) == ("rnnt_greedy", ())
    outputs = [
        t.name for t in read_manifest(bundles["parakeet_rnnt"]).component("joint_decision").outputs
    ]
    assert outputs == ["token_id", "token_prob", "top_k_ids", "top_k_logits"]


def test_cli_convert_info_transcribe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tdt"
    args = ["convert", "parakeet", "--checkpoint", str(nemo_file("parakeet_tdt"))]
    assert main([*args, "--out", str(out), "--format", "onnx", "--window", "8", "--quiet"]) == 0
    assert read_manifest(out).window is not None
    assert read_manifest(out).window.samples == 128000  # type: ignore[union-attr]
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "parakeet parakeet-tdt" in info and "decoding: tdt_greedy" in info
    _, _, entry = clip("parakeet_tdt", 1)
    assert main(["transcribe", str(out), str(NEMO / entry["audio"])]) == 0
    assert capsys.readouterr().out.strip() == entry["text"]


def test_full_size_config_is_parakeet_tdt_0_6b_v3() -> None:
    config = ParakeetConfig.from_nemo(full_size_config("tdt"))
    assert (config.d_model, config.n_layers, config.n_heads) == (1024, 24, 8)
    assert (config.d_model * config.ff_expansion_factor, config.conv_kernel_size) == (4096, 9)
    assert (config.subsampling_factor, config.subsampling_conv_channels) == (8, 256)
    assert (config.feat_in, config.pred_hidden, config.joint_hidden) == (128, 640, 640)
    assert (config.vocab_size, config.num_outputs, config.durations) == (
        8192,
        8198,
        (0, 1, 2, 3, 4),
    )
    assert config.frontend == PARAKEET_TDT_V3
    assert (config.xscaling, config.use_bias) == (False, False)


def test_example_script_transcribes_with_onnxruntime(bundles: dict[str, Path]) -> None:
    """The bundle's standalone script (numpy + onnxruntime) feeds the decoder's constant
    ``target_length`` and gives NeMo's transcript."""
    import subprocess
    import sys

    bundle = bundles["parakeet_tdt"]
    _, _, entry = clip("parakeet_tdt", 1)
    result = subprocess.run(
        [sys.executable, str(bundle / "example_infer_onnx.py"), str(NEMO / entry["audio"])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == entry["text"]


@pytest.mark.slow
def test_verify_checks_every_component(bundles: dict[str, Path]) -> None:
    """``verify`` covers the components decoding does not call too: the Preprocessor and
    the fused MelEncoder on the audio windows, the decision heads and onnx-asr's
    decoder+joint along the reference's rollout; every length is exact."""
    from speechport.parity.run import verify_bundle

    audio = NEMO / "audio" / "clip1.wav"
    report = verify_bundle(
        bundles["parakeet_tdt"], [audio], backends=["onnx", "coreml"], latency_runs=1
    )
    assert report.passed, report.failures()
    roles = {e.backend: {c.role: c for c in e.components} for e in report.components}
    common = {"encoder", "decoder", "joint", "preprocessor", "joint_decision"}
    assert set(roles["onnx"]) == common | {"joint_decision_frame", "decoder_joint"}
    assert set(roles["coreml"]) == common | {"joint_decision_frame", "mel_encoder"}
    for per_role in roles.values():
        for c in per_role.values():
            assert c.failures == []
            for name, stats in c.outputs.items():
                if name.endswith(("_len", "length")):
                    assert stats.exact, (c.component, name)
    onnx = roles["onnx"]
    assert onnx["joint_decision_frame"].outputs["token_id"].exact
    assert onnx["joint_decision_frame"].outputs["duration"].exact
    assert onnx["decoder_joint"].outputs["logits"].max_abs < 1e-4
    assert onnx["preprocessor"].outputs["mel"].cosine > 0.99999
    # The fused MelEncoder (fp32) equals the reference encoder on the same audio.
    assert roles["coreml"]["mel_encoder"].outputs["encoded"].max_abs < 1e-4
