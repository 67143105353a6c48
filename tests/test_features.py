"""Front ends: the spec, the numpy runtime front end and the torch export front end.

References: upstream GigaAM (torchaudio, fp32) and NeMo 3.0 (fp32) features for real clips,
the mel filterbank stored in GigaAM's checkpoint, and librosa.

How close is close enough. Every reference computes its STFT in float32. Its rounding
perturbs each DFT bin by about eps32 times the frame's spectral norm, so a mel energy ``m``
in a frame whose mel energies sum to ``S`` moves by about ``eps32 * sqrt(S * m)``: its log by
``eps32 * sqrt(S * m) / (m + guard)``, large only in bins some 100 dB below the frame (we
see 4e-3 there; the numpy front end computes in float64, so this is the reference's own
noise). `feature_tolerance` (tests/helpers.py) allows twice that, plus the worst-case
float32 rounding of the mel projection (``n_freqs * eps32`` relative) and of the compared
value itself, divided by the per-bin standard deviation when the features are normalised,
plus a bound on what a difference between two filterbanks can change (`_filterbank_bound`).
The largest fraction of this tolerance used on the reference clips is 0.95 of the noise term.
"""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from speechport.errors import AudioError, SpeechportError
from speechport.export.coreml import jit_trace
from speechport.families.omegaconf_compat import omegaconf_globals
from speechport.families.torch_checkpoint import load_torch_checkpoint
from speechport.features import (
    GIGAAM_V3,
    PARAKEET_TDT_V3,
    FeatureSpecError,
    LogMelFrontend,
    LogMelSpec,
    build_frontend,
    mel_filterbank,
    nemo_spec,
    numpy_frontend,
    window_array,
)
from speechport.features.numpy_frontend import mel_bands
from speechport.features.torch_frontend import TorchLogMel
from tests.helpers import assert_within, feature_tolerance

DATA = Path(__file__).parent / "data"
GIGAAM = DATA / "gigaam"
NEMO = DATA / "nemo"
CLIPS = [0, 1, 2, 3]


def read_clip(path: Path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return np.asarray(samples)


def gigaam_clip(index: int) -> tuple[np.ndarray, np.ndarray, int]:
    reference = np.load(GIGAAM / f"v3_e2e_rnnt_clip{index}.npz")
    samples = read_clip(GIGAAM / "audio" / f"clip{index}.wav")
    return samples, reference["features"][0], int(reference["feature_length"][0])


def nemo_clip(index: int) -> tuple[np.ndarray, np.ndarray, int]:
    reference = np.load(NEMO / f"parakeet_tdt_clip{index}.npz")
    samples = read_clip(NEMO / "audio" / f"clip{index}.wav")
    return samples, reference["features"][0], int(reference["feature_length"][0])


def checkpoint_tensor(path: Path, name: str) -> np.ndarray:
    """A float32 tensor of a GigaAM checkpoint's ``state_dict``, read by the project's
    restricted unpickler (no torch.load, no code from the file)."""
    raw = load_torch_checkpoint(path, extra_globals=omegaconf_globals())
    return np.asarray(raw["state_dict"][name], dtype=np.float32)


# --- Tolerances ------------------------------------------------------------------------


def _filterbank_bound(ours: np.ndarray, theirs: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Largest change of log mel energy that the filterbank difference can cause.

    ``|Δm| / m <= (|fb_a - fb_b|ᵀ P) / (fb_bᵀ P)`` for a power spectrum ``P [n_freqs, T]``.
    """
    difference = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    bound: np.ndarray = (difference.T @ power) / (theirs.astype(np.float64).T @ power)
    return bound


def _power_spectrum(samples: np.ndarray, spec: LogMelSpec) -> np.ndarray:
    """librosa's power spectrum ``[n_freqs, T]`` (an implementation independent of ours)."""
    stft = librosa.stft(
        samples,
        n_fft=spec.n_fft,
        hop_length=spec.hop_length,
        win_length=spec.win_length,
        window="hann",
        center=spec.center,
    )
    power: np.ndarray = np.abs(stft.astype(np.complex128)) ** 2
    return power


# --- GigaAM ----------------------------------------------------------------------------


def test_gigaam_window_equals_checkpoint() -> None:
    stored = checkpoint_tensor(
        GIGAAM / "v3_e2e_rnnt.ckpt", "preprocessor.featurizer.0.spectrogram.window"
    )
    ours = window_array(GIGAAM_V3)
    assert stored.shape == ours.shape == (320,)
    # torch evaluates cos in float32 on a float32 angle (rounding ≤ ulp(2π)/2 ≈ 2.4e-7,
    # halved by the 0.5 factor) and rounds the result: a few float32 steps at most.
    np.testing.assert_allclose(ours, stored, rtol=0, atol=3e-7)


def test_gigaam_filterbank_equals_checkpoint() -> None:
    stored = checkpoint_tensor(
        GIGAAM / "v3_e2e_rnnt.ckpt", "preprocessor.featurizer.0.mel_scale.fb"
    )
    ours = mel_filterbank(GIGAAM_V3)
    assert ours.shape == stored.shape == (161, 64)
    assert ours.dtype == np.float32
    # torchaudio's float32 arithmetic is reproduced exactly; only torch's float32 pow
    # (not correctly rounded) puts mel points 8 and 28 one float32 step elsewhere.
    # Those points bound filters 6-8 and 26-28: every other weight is bit-identical.
    _, columns = np.nonzero(ours != stored)
    assert set(columns.tolist()) <= {6, 7, 8, 26, 27, 28}
    # One step of a mel point (1.5e-5 Hz at 254 Hz, 1.2e-4 Hz at 1373 Hz) moves weights
    # by at most ~2e-6 through the slopes.
    np.testing.assert_allclose(ours, stored, rtol=0, atol=2e-6)


@pytest.mark.parametrize("index", CLIPS)
def test_gigaam_features_equal_upstream(index: int) -> None:
    samples, expected, length = gigaam_clip(index)
    frontend = LogMelFrontend(GIGAAM_V3)
    features = frontend(samples)
    assert features.dtype == np.float32
    assert features.shape == expected.shape
    assert frontend.num_frames(samples.shape[0]) == length == expected.shape[1]
    stored = checkpoint_tensor(
        GIGAAM / "v3_e2e_rnnt.ckpt", "preprocessor.featurizer.0.mel_scale.fb"
    )
    power = _power_spectrum(samples, GIGAAM_V3)
    tolerance = feature_tolerance(GIGAAM_V3, samples, expected)
    tolerance += _filterbank_bound(frontend.filterbank, stored, power)
    assert_within(features, expected, tolerance)


# --- librosa ---------------------------------------------------------------------------


@pytest.mark.parametrize("index", CLIPS)
def test_htk_features_agree_with_librosa(index: int) -> None:
    samples, _, _ = gigaam_clip(index)
    spec = GIGAAM_V3
    mel = librosa.feature.melspectrogram(
        y=samples,
        sr=spec.sample_rate,
        n_fft=spec.n_fft,
        hop_length=spec.hop_length,
        win_length=spec.win_length,
        window="hann",  # scipy's "hann" with fftbins=True: periodic, as the spec says
        center=False,
        power=2.0,
        n_mels=spec.n_mels,
        htk=True,
        norm=None,
    )
    expected = np.log(np.clip(mel, spec.log_floor, spec.log_ceil))
    ours = LogMelFrontend(spec)(samples)
    # librosa builds the same HTK filters in float64, ours follow torchaudio's float32
    # arithmetic: bound that difference exactly; the rest is float32 rounding.
    librosa_bank = librosa.filters.mel(
        sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels, htk=True, norm=None
    ).T
    bound = _filterbank_bound(mel_filterbank(spec), librosa_bank, _power_spectrum(samples, spec))
    assert_within(ours, expected, feature_tolerance(spec, samples, expected) + bound)


def test_htk_filterbank_close_to_librosa() -> None:
    ours = mel_filterbank(GIGAAM_V3)
    theirs = librosa.filters.mel(sr=16000, n_fft=320, n_mels=64, htk=True, norm=None).T
    # Hz mel points rounded to float32 (ulp 4.9e-4 Hz near 8 kHz) over filter half-widths
    # of 30-340 Hz, through a few float32 operations: a few 1e-6.
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=6e-6)


@pytest.mark.parametrize(
    ("n_fft", "n_mels", "f_min", "f_max", "norm"),
    [
        (512, 80, 0.0, None, "slaney"),
        (512, 128, 0.0, None, "slaney"),
        (400, 64, 20.0, 7600.0, "slaney"),
        (512, 40, 0.0, 4000.0, None),
    ],
)
def test_slaney_filterbank_equals_librosa(
    n_fft: int, n_mels: int, f_min: float, f_max: float | None, norm: Literal["slaney"] | None
) -> None:
    spec = nemo_spec(n_mels, n_fft=n_fft, win_length=min(400, n_fft), f_min=f_min, f_max=f_max)
    spec = dataclasses.replace(spec, mel_norm=norm)
    theirs = librosa.filters.mel(
        sr=16000, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max, norm=norm
    )
    np.testing.assert_array_equal(mel_filterbank(spec), theirs.T)


def test_htk_slaney_normalised_filterbank_close_to_librosa() -> None:
    spec = dataclasses.replace(GIGAAM_V3, mel_norm="slaney")
    theirs = librosa.filters.mel(sr=16000, n_fft=320, n_mels=64, htk=True, norm="slaney").T
    # The unnormalised case's 6e-6, scaled by each filter's area factor (peak weight).
    np.testing.assert_allclose(mel_filterbank(spec), theirs, rtol=0, atol=6e-6 * theirs.max())


VARIANTS: list[dict[str, Any]] = [
    {},
    {"window": "hamming"},
    {"center": True, "pad_mode": "reflect"},
    {"center": True, "n_fft": 512, "win_length": 400, "periodic_window": False},
    {"n_fft": 400, "win_length": 301, "window": "hamming", "periodic_window": False},
    {"power": 1.0, "mel_norm": "slaney"},
    {"preemphasis": 0.97, "normalize": "per_feature", "pad_value": 0.0},
]


@pytest.mark.parametrize("changes", VARIANTS)
def test_framing_and_window_equal_torch_stft(changes: dict[str, Any]) -> None:
    spec = dataclasses.replace(GIGAAM_V3, **changes)
    plain = dataclasses.replace(spec, preemphasis=None, normalize=None, pad_value=None)
    samples = np.random.default_rng(1).normal(0.0, 0.1, 9000).astype(np.float32)
    window_fn = torch.hann_window if spec.window == "hann" else torch.hamming_window
    window = window_fn(spec.win_length, periodic=spec.periodic_window, dtype=torch.float64)
    spectrum = torch.stft(
        torch.from_numpy(samples).double(),
        spec.n_fft,
        spec.hop_length,
        spec.win_length,
        window,
        center=spec.center,
        pad_mode=spec.pad_mode,
        return_complex=True,
    )
    bank = torch.from_numpy(mel_filterbank(spec)).double()
    mel = bank.T @ spectrum.abs() ** spec.power
    expected = torch.log(torch.clamp(mel, spec.log_floor, spec.log_ceil)).numpy()
    # Both in float64; ours is returned as float32: half a step of |x| < 21 is < 1e-6.
    np.testing.assert_allclose(LogMelFrontend(plain)(samples), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("changes", VARIANTS)
def test_torch_front_end_equals_numpy_for_spec_options(changes: dict[str, Any]) -> None:
    spec = dataclasses.replace(GIGAAM_V3, **changes)
    samples = np.random.default_rng(2).normal(0.0, 0.1, 9000).astype(np.float32)
    expected = LogMelFrontend(spec)(samples)
    with torch.no_grad():
        features, length = TorchLogMel(spec)(torch.from_numpy(samples)[None], torch.tensor([9000]))
    assert length.tolist() == [spec.num_frames(9000)]
    assert features.shape[2] == expected.shape[1]
    assert_within(features[0].numpy(), expected, feature_tolerance(spec, samples, expected))


# --- NeMo ------------------------------------------------------------------------------


@pytest.mark.parametrize("index", CLIPS)
def test_nemo_features_equal_nemo(index: int) -> None:
    samples, expected, length = nemo_clip(index)
    frontend = LogMelFrontend(PARAKEET_TDT_V3)
    features = frontend(samples)
    assert features.shape == expected.shape
    assert features.shape[1] == PARAKEET_TDT_V3.num_stft_frames(samples.shape[0])
    assert frontend.num_frames(samples.shape[0]) == length == samples.shape[0] // 160
    # Past the valid length NeMo writes pad_value (0): exactly, in both.
    assert length < expected.shape[1]
    assert np.all(expected[:, length:] == 0.0)
    assert np.all(features[:, length:] == 0.0)
    # The filterbank is librosa's, bit for bit (test above), so no filterbank term.
    assert_within(features, expected, feature_tolerance(PARAKEET_TDT_V3, samples, expected))


def test_nemo_length_rules() -> None:
    spec = PARAKEET_TDT_V3
    for n in [0, 1, 159, 160, 161, 319, 320, 39520]:
        assert spec.num_stft_frames(n) == n // 160 + 1  # center=True, n_fft even
        assert spec.num_frames(n) == n // 160  # NeMo's get_seq_len


def test_nemo_single_valid_frame_normalises_to_zero() -> None:
    # 200 samples: 2 STFT frames, 1 valid; NeMo's std of one frame is 0 (its NaN → 0),
    # so the frame becomes (x - x) / eps = 0, and the other frame is padding.
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, 200).astype(np.float32)
    features = LogMelFrontend(PARAKEET_TDT_V3)(samples)
    assert features.shape == (128, 2)
    assert np.all(features == 0.0)
    torch_features, length = TorchLogMel(PARAKEET_TDT_V3)(
        torch.from_numpy(samples)[None], torch.tensor([200])
    )
    assert length.tolist() == [1]
    assert torch.all(torch_features == 0.0)


# --- GigaAM lengths and the spec ---------------------------------------------------------


def test_gigaam_length_rules() -> None:
    spec = GIGAAM_V3
    assert spec.n_freqs == 161
    for n in [0, 1, 319]:
        assert spec.num_frames(n) == 0
    for n in [320, 479, 480, 72739]:
        assert spec.num_frames(n) == spec.num_stft_frames(n) == (n - 320) // 160 + 1
    assert LogMelFrontend(spec)(np.zeros(100, dtype=np.float32)).shape == (64, 0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=3000),
    preset=st.sampled_from(["gigaam", "nemo"]),
)
def test_frame_counts_match_both_front_ends(n: int, preset: str) -> None:
    spec = GIGAAM_V3 if preset == "gigaam" else PARAKEET_TDT_V3
    samples = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
    assert LogMelFrontend(spec)(samples).shape == (spec.n_mels, spec.num_stft_frames(n))
    # The torch front end's integer length rule, for this length in a longer batch.
    module = TorchLogMel(spec)
    assert module.feature_length(torch.tensor([n])).tolist() == [spec.num_frames(n)]


def test_spec_round_trips_through_json() -> None:
    for spec in (GIGAAM_V3, PARAKEET_TDT_V3, nemo_spec(80)):
        data = spec.to_dict()
        assert list(data) == [field.name for field in dataclasses.fields(LogMelSpec)]
        assert data["kind"] == "log_mel"
        restored = LogMelSpec.from_dict(json.loads(json.dumps(data)))
        assert restored == spec


def test_spec_accepts_json_integers_for_floats() -> None:
    data = GIGAAM_V3.to_dict() | {"f_min": 0, "f_max": 8000, "power": 2}
    spec = LogMelSpec.from_dict(data)
    assert spec.f_max == 8000.0 and isinstance(spec.f_max, float)


def test_spec_rejects_unknown_key() -> None:
    with pytest.raises(FeatureSpecError, match="'dither'") as caught:
        LogMelSpec.from_dict(GIGAAM_V3.to_dict() | {"dither": 1e-5})
    assert "Allowed keys" in str(caught.value)
    assert isinstance(caught.value, SpeechportError)


def test_spec_rejects_missing_key() -> None:
    data = GIGAAM_V3.to_dict()
    del data["hop_length"]
    with pytest.raises(FeatureSpecError, match="hop_length"):
        LogMelSpec.from_dict(data)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("mel_scale", "mel", "'htk', 'slaney'"),
        ("normalize", "all_features", "null, 'per_feature'"),
        ("log", "log10", "'clamp', 'add'"),
        ("window", "povey", "'hann', 'hamming'"),
        ("kind", "fbank", "'log_mel'"),
        ("n_fft", 0, "positive integer"),
        ("n_fft", 320.0, "an integer"),
        ("hop_length", True, "an integer"),
        ("win_length", 400, "at most n_fft"),
        ("center", "yes", "true or false"),
        ("f_max", 9000.0, "at most sample_rate / 2"),
        ("preemphasis", 1.5, "in (0, 1)"),
        ("log_floor", 0.0, "positive number"),
        ("power", "2", "a number"),
        ("normalize_eps", float("nan"), "finite"),
    ],
)
def test_spec_rejects_bad_value_naming_the_key(key: str, value: object, allowed: str) -> None:
    with pytest.raises(FeatureSpecError) as caught:
        LogMelSpec.from_dict(GIGAAM_V3.to_dict() | {key: value})
    message = str(caught.value)
    assert f"'{key}'" in message
    assert allowed in message


def test_build_frontend_reads_a_manifest_spec() -> None:
    samples, _, _ = nemo_clip(0)
    frontend = build_frontend(json.loads(json.dumps(PARAKEET_TDT_V3.to_dict())))
    np.testing.assert_array_equal(frontend(samples), LogMelFrontend(PARAKEET_TDT_V3)(samples))


@pytest.mark.parametrize("spec", [GIGAAM_V3, PARAKEET_TDT_V3, nemo_spec(80)])
def test_mel_bands_hold_every_weight_of_the_filterbank(spec: LogMelSpec) -> None:
    bank = mel_filterbank(spec)
    bands = mel_bands(bank)
    rebuilt = np.zeros(bank.shape, dtype=np.float64)
    for band in bands:
        rebuilt[band.first_bin : band.stop_bin, band.first_mel : band.stop_mel] = band.weights
    np.testing.assert_array_equal(rebuilt, bank.astype(np.float64))
    assert [b.first_mel for b in bands] == list(range(0, spec.n_mels, 8))
    # 8 adjacent triangles span a fraction of the spectrum: the projection multiplies
    # less than a third of the dense product's weights.
    weights = sum(b.weights.size for b in bands)
    assert weights < bank.size / 3


@pytest.mark.parametrize("spec", [GIGAAM_V3, PARAKEET_TDT_V3])
def test_features_do_not_depend_on_blocks_or_threads(
    spec: LogMelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 25 s: four blocks of 256 frames and a partial one.
    clips = [
        np.random.default_rng(k).normal(0.0, 0.1, 25 * 16000).astype(np.float32) for k in range(4)
    ]
    frontend = LogMelFrontend(spec)
    blocked = [frontend(clip) for clip in clips]
    with ThreadPoolExecutor(4) as pool:  # each thread its own arrays
        threaded = list(pool.map(frontend, clips))
    monkeypatch.setattr(numpy_frontend, "_FRAMES_PER_BLOCK", 4096)
    whole = [LogMelFrontend(spec)(clip) for clip in clips]
    for a, b, c in zip(blocked, threaded, whole, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("spec", [GIGAAM_V3, PARAKEET_TDT_V3])
def test_frontend_leaves_no_thread_spinning(spec: LogMelSpec) -> None:
    # The encoder runs right after the front end: no BLAS thread of the front end's may
    # spin on in the meantime (OpenBLAS's spin a core for some 100 ms after a product).
    from speechport.bench.compare import settle

    frontend = LogMelFrontend(spec)
    samples = np.random.default_rng(0).normal(0.0, 0.1, 4 * 16000).astype(np.float32)
    frontend(samples)
    settle()
    frontend(samples)
    cpu = time.process_time()
    time.sleep(0.1)
    assert time.process_time() - cpu < 0.01


def test_frontend_rejects_bad_audio() -> None:
    frontend = LogMelFrontend(GIGAAM_V3)
    with pytest.raises(AudioError, match="mono"):
        frontend(np.zeros((2, 1000), dtype=np.float32))
    with pytest.raises(AudioError, match="int16"):
        frontend(np.zeros(1000, dtype=np.int16))
    with pytest.raises(AudioError, match="NaN"):
        frontend(np.full(1000, np.nan, dtype=np.float32))


# --- Torch front end --------------------------------------------------------------------


def _batch(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips zero-padded to the longest, with their lengths."""
    width = max(clip.shape[0] for clip in clips)
    audio = np.zeros((len(clips), width), dtype=np.float32)
    for row, clip in enumerate(clips):
        audio[row, : clip.shape[0]] = clip
    lengths = torch.tensor([clip.shape[0] for clip in clips], dtype=torch.int64)
    return torch.from_numpy(audio), lengths


@pytest.mark.parametrize("preset", ["gigaam", "nemo"])
def test_torch_batch_equals_numpy_per_clip(preset: str) -> None:
    if preset == "gigaam":
        spec, long_clip, short_clip = GIGAAM_V3, gigaam_clip(1)[0], gigaam_clip(3)[0]
    else:
        spec, long_clip, short_clip = PARAKEET_TDT_V3, nemo_clip(2)[0], nemo_clip(0)[0]
    # Non-zero samples past the short clip's end must not leak into its features.
    audio, lengths = _batch([long_clip, short_clip])
    audio[1, short_clip.shape[0] :] = 0.5
    with torch.no_grad():
        features, feature_length = TorchLogMel(spec)(audio, lengths)
    assert features.dtype == torch.float32
    assert features.shape == (2, spec.n_mels, spec.num_stft_frames(long_clip.shape[0]))
    assert feature_length.dtype == torch.int64
    assert feature_length.tolist() == [spec.num_frames(c.shape[0]) for c in (long_clip, short_clip)]
    frontend = LogMelFrontend(spec)
    for row, clip in enumerate((long_clip, short_clip)):
        expected = frontend(clip)
        actual = features[row].numpy()
        assert_within(actual, expected, feature_tolerance(spec, clip, expected))
        if spec.pad_value is not None:
            assert torch.all(features[row, :, int(feature_length[row]) :] == spec.pad_value)


def _export_onnx(module: TorchLogMel, path: Path) -> None:
    example = (torch.zeros(2, 8000), torch.tensor([8000, 5000]))
    torch.onnx.export(
        module,
        example,
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["audio", "length"],
        output_names=["features", "feature_length"],
        dynamic_axes={
            "audio": {0: "batch", 1: "samples"},
            "length": {0: "batch"},
            "features": {0: "batch", 2: "frames"},
            "feature_length": {0: "batch"},
        },
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("preset", ["gigaam", "nemo"])
def test_torch_front_end_traces_and_exports_to_onnx(preset: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if preset == "gigaam":
        spec, clips = GIGAAM_V3, [gigaam_clip(0)[0], gigaam_clip(2)[0][:30000]]
    else:
        spec, clips = PARAKEET_TDT_V3, [nemo_clip(1)[0], nemo_clip(3)[0]]
    module = TorchLogMel(spec).eval()
    audio, lengths = _batch(clips)
    with torch.no_grad():
        expected, expected_length = module(audio, lengths)
        traced = jit_trace(module, (torch.zeros(1, 4000), torch.tensor([4000])))
        # Traced on one shape, run on another: sizes and lengths stay symbolic.
        traced_features, traced_length = traced(audio, lengths)
    torch.testing.assert_close(traced_features, expected, rtol=0, atol=0)
    assert torch.equal(traced_length, expected_length)

    path = tmp_path / "frontend.onnx"
    _export_onnx(module, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features, feature_length = session.run(
        None, {"audio": audio.numpy(), "length": lengths.numpy()}
    )
    assert features.shape == tuple(expected.shape)
    np.testing.assert_array_equal(feature_length, expected_length.numpy())
    for row, clip in enumerate(clips):
        reference = expected[row].numpy()
        # Two float32 DFT-by-convolution kernels (torch's and onnxruntime's): the same
        # float32 noise model as against the references.
        assert_within(features[row], reference, feature_tolerance(spec, clip, reference))
        valid = int(feature_length[row])
        if spec.pad_value is not None:
            assert np.all(features[row, :, valid:] == spec.pad_value)


@pytest.mark.filterwarnings("ignore")
def test_torch_front_end_converts_to_core_ml_with_real_ops() -> None:
    ct = pytest.importorskip("coremltools")
    module = TorchLogMel(PARAKEET_TDT_V3).eval()
    traced = jit_trace(module, (torch.zeros(1, 16000), torch.tensor([12000])))
    model = ct.convert(
        traced,
        inputs=[
            ct.TensorType(name="audio", shape=(1, 16000), dtype=np.float32),
            ct.TensorType(name="length", shape=(1,), dtype=np.int32),
        ],
        convert_to="milinternal",
        compute_precision=ct.precision.FLOAT32,
    )
    op_types = {op.op_type for op in model.functions["main"].operations}
    assert "conv" in op_types
    assert not op_types & {"stft", "complex", "fft", "rfft", "complex_abs"}
