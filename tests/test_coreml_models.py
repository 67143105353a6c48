"""The project's own bundles under the MIL interpreter (``--backend coreml`` off macOS):
GigaAM v3 token-exact with upstream, Silero VAD against ONNX Runtime."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechport.coreml import Interpreter, load_program
from speechport.errors import BackendError, BundleError
from speechport.pipelines.transcriber import Transcriber
from speechport.pipelines.vad import VoiceActivityDetector
from speechport.runtime import load_bundle, make_backend
from speechport.runtime.coreml_backend import CoreMLBackend
from tests.helpers import (
    CLIPS,
    DATA,
    VARIANTS,
    BundleCache,
    checkpoint,
    copy_bundle,
    gigaam_clip,
    tokenizer_for,
)

ENCODER_ATOL, ENCODER_RTOL = 2e-4, 1e-5  # as the ONNX encoder test (test_gigaam.py)


@pytest.fixture(scope="module")
def fp32_bundles(bundle_cache: BundleCache) -> dict[str, Path]:
    return {
        variant: bundle_cache.get(
            "gigaam",
            checkpoint(variant),
            variant,
            tokenizer=tokenizer_for(variant),
            formats="coreml",
            precision="fp32",
        )
        for variant in VARIANTS
    }


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_fp32_coreml_bundle_is_token_exact_with_upstream(
    fp32_bundles: dict[str, Path], variant: str
) -> None:
    bundle = load_bundle(fp32_bundles[variant], "coreml")
    assert bundle.engine == "speechport MIL interpreter (numpy), fp32"
    transcriber = Transcriber(bundle)
    for clip in CLIPS:
        ref = gigaam_clip(variant, clip)
        transcript = transcriber.transcribe(ref.audio)
        [segment] = transcript.segments
        assert segment.token_ids == ref.expected["token_ids"]
        assert segment.frames == ref.expected["token_frames"]
        assert transcript.text == ref.expected["text"].strip()
        words = [{"text": w.text, "start": w.start, "end": w.end} for w in transcript.words]
        assert words == ref.expected["words"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["v3_e2e_rnnt", "v3_ctc"])
def test_fp32_coreml_encoder_equals_upstream(fp32_bundles: dict[str, Path], variant: str) -> None:
    encoder = load_bundle(fp32_bundles[variant], "coreml").component("encoder")
    for clip in CLIPS:
        ref = gigaam_clip(variant, clip)
        frames = ref.npz["features"].shape[2]
        padded = np.zeros(encoder.spec.inputs[0].shape, dtype=np.float32)
        padded[:, :, :frames] = ref.npz["features"]
        out, out_len = encoder(padded, np.array([frames], dtype=np.int32))
        n = int(out_len[0])
        assert n == int(ref.npz["encoded_length"][0])
        got, want = (
            (out[:, :n], ref.npz["log_probs"])
            if "ctc" in variant
            else (out[:, :, :n], ref.npz["encoded"])
        )
        np.testing.assert_allclose(got, want, rtol=ENCODER_RTOL, atol=ENCODER_ATOL)


# fp16 emulation moves one token of one clip: same token, emitted 6 encoder frames earlier
# (the RNN-T loop emits it at frame 7 next to the previous token instead of at frame 13).
KNOWN_FP16_FRAME_SHIFTS = {("v3_rnnt", 0): {14: (7, 13)}}


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_fp16_coreml_bundle_tokens_equal_upstream(
    gigaam_bundles: dict[str, Path], variant: str
) -> None:
    """fp16 emulation gives upstream's tokens and text on every clip; token frames are
    upstream's except the known shift above."""
    bundle = load_bundle(gigaam_bundles[variant], "coreml")
    assert bundle.engine == "speechport MIL interpreter (numpy), fp16 emulation"
    transcriber = Transcriber(bundle)
    for clip in CLIPS:
        ref = gigaam_clip(variant, clip)
        transcript = transcriber.transcribe(ref.audio)
        [segment] = transcript.segments
        assert segment.token_ids == ref.expected["token_ids"]
        assert transcript.text == ref.expected["text"].strip()
        pairs = zip(segment.frames, ref.expected["token_frames"], strict=True)
        shifts = {i: (got, want) for i, (got, want) in enumerate(pairs) if got != want}
        assert shifts == KNOWN_FP16_FRAME_SHIFTS.get((variant, clip), {})


@pytest.mark.slow
def test_fp16_encoder_length_is_exact_for_a_full_window(gigaam_bundles: dict[str, Path]) -> None:
    encoder = load_bundle(gigaam_bundles["v3_e2e_rnnt"], "coreml").component("encoder")
    features = np.zeros(encoder.spec.inputs[0].shape, dtype=np.float32)
    for frames, want in ((2999, 750), (2052, 513), (2051, 513), (1, 1)):
        _, length = encoder(features, np.array([frames], dtype=np.int32))
        assert int(length[0]) == want


def test_backend_options_and_errors(gigaam_bundles: dict[str, Path], tmp_path: Path) -> None:
    backend = make_backend("coreml")
    assert isinstance(backend, CoreMLBackend)
    assert backend.engine == "speechport MIL interpreter (numpy)"  # nothing loaded yet
    with pytest.raises(BackendError, match="unknown compute units"):
        CoreMLBackend(compute_units="npu")
    with pytest.raises(BackendError, match="runs only on macOS"):
        CoreMLBackend(engine="framework")
    broken = copy_bundle(gigaam_bundles["v3_ctc"], tmp_path / "bundle")
    shutil.rmtree(broken / "Encoder.mlpackage")
    with pytest.raises(BundleError, match="Core ML package listed in the manifest is missing"):
        load_bundle(broken, "coreml")


# -- Silero VAD -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vad32_bundle(bundle_cache: BundleCache) -> Path:
    pytest.importorskip("silero_vad")
    return bundle_cache.get("silero-vad", None, "silero", formats="coreml", precision="fp32")


def _audio() -> dict[str, np.ndarray]:
    t = np.arange(32000) / 16000
    return {
        "words": sf.read(DATA / "vad" / "words.wav", dtype="float32")[0],
        "noisy": sf.read(DATA / "vad" / "noisy.wav", dtype="float32")[0],
        "square": (0.999 * np.sign(np.sin(2 * np.pi * 1000 * t))).astype(np.float32),
    }


@pytest.mark.slow
def test_vad_fp32_coreml_matches_onnx(vad_bundle: Path, vad32_bundle: Path) -> None:
    """Every form (576, 256 ms, three stages): probabilities within 1e-4 of ONNX Runtime
    (1.4e-5 seen), segments identical."""
    onnx = VoiceActivityDetector(load_bundle(vad_bundle, "onnx"))
    ours = VoiceActivityDetector(load_bundle(vad32_bundle, "coreml"))
    assert ours.paths == ["vad", "vad_long", "stages"]
    for audio in _audio().values():
        want = onnx.probabilities(audio, path="vad")
        for path in ours.paths:
            np.testing.assert_allclose(ours.probabilities(audio, path=path), want, atol=1e-4)
        assert ours.segments(audio) == onnx.segments(audio)


@pytest.fixture(scope="module")
def vad_fp16_stft_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silero VAD with its STFT in fp16 too (the family keeps it fp32 by default)."""
    from speechport.conversion import convert
    from speechport.families.silero_vad import bundle as silero_bundle

    pytest.importorskip("silero_vad")
    out = tmp_path_factory.mktemp("vad16") / "silero"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(silero_bundle, "STFT_COREML_PRECISION", None)
        convert("silero-vad", None, out, formats=("coreml",), precision="fp16", quiet=True)
    return out


@pytest.mark.slow
def test_default_vad_bundle_keeps_the_stft_in_fp32(vad_bundle: Path) -> None:
    """The default (fp16) bundle: components with the STFT are fp32 packages, the encoder
    and decoder stages fp16; every form then matches ONNX Runtime on quiet speech too."""
    from speechport.manifest import read_manifest

    manifest = read_manifest(vad_bundle)
    precisions = {role: c.files["coreml"].precision for role, c in manifest.components.items()}
    assert precisions == {
        "vad": "fp32",
        "vad_long": "fp32",
        "vad_stft": "fp32",
        "vad_encoder": "fp16",
        "vad_decoder": "fp16",
    }
    onnx = VoiceActivityDetector(load_bundle(vad_bundle, "onnx"))
    ours = VoiceActivityDetector(load_bundle(vad_bundle, "coreml"))
    for audio in _audio().values():
        want = onnx.probabilities(audio, path="vad")
        for path in ("vad", "vad_long"):
            np.testing.assert_allclose(ours.probabilities(audio, path=path), want, atol=1e-4)
        assert ours.segments(audio) == onnx.segments(audio)
    # the chain with fp16 encoder and decoder stages: close, and the same segments
    for audio in _audio().values():
        stages = ours.probabilities(audio, path="stages")
        assert np.abs(stages - onnx.probabilities(audio, path="vad")).max() < 0.05
        assert ours.segments(audio, None) == onnx.segments(audio)


@pytest.mark.slow
def test_vad_fp16_stft_underflows_on_quiet_audio(
    vad_fp16_stft_bundle: Path, vad_bundle: Path, vad32_bundle: Path
) -> None:
    """fp16 emulation shows a real fp16 weakness of the Silero export: the STFT power
    re**2 + im**2 of quiet chunks (~1e-7) lies below fp16's normal range (6.1e-5), loses
    20-50 % of its value, and moves some speech probabilities by up to ~0.26 on words.wav,
    enough to change a segment boundary. Loud audio (a full-scale square wave, whose conv
    activations reach ~570, far from fp16's 65504) stays within 1e-4, with no overflow."""
    onnx = VoiceActivityDetector(load_bundle(vad_bundle, "onnx"))
    fp16 = VoiceActivityDetector(load_bundle(vad_fp16_stft_bundle, "coreml"))
    audio = _audio()
    loud = np.abs(fp16.probabilities(audio["square"]) - onnx.probabilities(audio["square"]))
    assert loud.max() < 1e-4
    quiet = np.abs(fp16.probabilities(audio["words"]) - onnx.probabilities(audio["words"]))
    assert 0.1 < quiet.max() < 0.5
    assert fp16.segments(audio["words"]) != onnx.segments(audio["words"])
    # the first large divergence is the fp16 power spectrum of a quiet chunk
    chunk = int(quiet.argmax())
    window = np.zeros(576, np.float32)
    piece = audio["words"][max(chunk * 512 - 64, 0) : chunk * 512 + 512]
    window[576 - piece.size :] = piece
    powers = {}
    for name, bundle in (("fp16", vad_fp16_stft_bundle), ("fp32", vad32_bundle)):
        interpreter = Interpreter(load_program(bundle / "SileroVadStft.mlpackage"))
        interpreter.check_overflow = True
        first_square: list[np.ndarray] = []
        interpreter.observer = lambda op, outs, seen=first_square: (
            seen.append(outs[0].astype(np.float64)) if op.type == "mul" and not seen else None
        )
        interpreter.run({"audio": window[None]})
        assert not interpreter.stats.overflows
        powers[name] = first_square[0]
    assert np.abs(powers["fp32"]).max() < 6.1e-5  # below fp16's smallest normal number
    error = np.abs(powers["fp16"] - powers["fp32"]).max() / np.abs(powers["fp32"]).max()
    assert error > 0.05
