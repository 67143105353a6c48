"""Kaldi fbank (speechport.features.kaldi_fbank) against kaldi-native-fbank.

tests/data/kws holds the fbank kaldi-native-fbank's ``OnlineFbank`` computed with sherpa's
options on each clip plus 0.66 s of zeros. Its FFT and sums run in float32, ours in
float64, so the two differ by float32 rounding: at most ~8e-6 of the frame's largest bin
energy (measured on these clips), which is up to ~3e-4 in the log of near-silent bins.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechport.features.kaldi_fbank import (
    KaldiFbankSpec,
    OnlineKaldiFbank,
    compute_fbank,
)
from speechport.features.spec import FeatureSpecError
from tests import kws_data

TAIL = np.zeros(int(0.66 * 16000), dtype=np.float32)


def _clip_samples(clip: str) -> np.ndarray:
    audio, rate = sf.read(kws_data.KWS / "audio" / f"{clip}.wav", dtype="float32")
    assert rate == 16000
    return np.concatenate([audio, TAIL])


@pytest.mark.parametrize("clip", kws_data.clips())
def test_fbank_equals_kaldi_native_fbank_reference(clip: str) -> None:
    reference = kws_data.clip_arrays(clip)["fbank"]
    got = compute_fbank(KaldiFbankSpec(), _clip_samples(clip))
    assert got.shape == reference.shape
    assert np.abs(got - reference).max() < 5e-4
    energy, expected = np.exp(got.astype(np.float64)), np.exp(reference.astype(np.float64))
    frame_peak = expected.max(axis=1, keepdims=True)
    assert (np.abs(energy - expected) / frame_peak).max() < 2e-5


@pytest.mark.parametrize("packet", [1, 160, 517, 16000])
def test_any_packet_size_gives_identical_frames(packet: int) -> None:
    samples = _clip_samples("clip2_turn_on_the_light")
    whole = compute_fbank(KaldiFbankSpec(), samples)
    fbank = OnlineKaldiFbank(KaldiFbankSpec())
    parts = [fbank.accept(samples[i : i + packet]) for i in range(0, len(samples), packet)]
    streamed = np.concatenate([*parts, fbank.finish()])
    np.testing.assert_array_equal(streamed, whole)


def test_frames_become_ready_as_kaldi_says() -> None:
    spec = KaldiFbankSpec()
    fbank = OnlineKaldiFbank(spec)
    # frame f covers samples [160 f - 120, 160 f + 280): the first needs 280 samples
    assert len(fbank.accept(np.zeros(279, np.float32))) == 0
    assert len(fbank.accept(np.zeros(1, np.float32))) == 1
    assert len(fbank.finish()) == spec.num_frames(280, finished=True) - 1 == 1


@pytest.mark.parametrize("n", [1, 100, 399, 400, 1601, 16000])
def test_matches_kaldi_native_fbank_on_short_and_odd_lengths(n: int) -> None:
    knf = pytest.importorskip("kaldi_native_fbank")
    rng = np.random.default_rng(n)
    samples = (0.1 * rng.standard_normal(n)).astype(np.float32)
    options = knf.FbankOptions()
    options.frame_opts.dither = 0
    options.frame_opts.snip_edges = False
    options.frame_opts.samp_freq = 16000
    options.mel_opts.num_bins = 80
    options.mel_opts.high_freq = -400
    online = knf.OnlineFbank(options)
    online.accept_waveform(16000, samples.tolist())
    online.input_finished()
    expected = np.array([online.get_frame(i) for i in range(online.num_frames_ready)])
    got = compute_fbank(KaldiFbankSpec(), samples)
    assert got.shape == expected.reshape(-1, 80).shape
    if len(got):
        assert np.abs(got - expected).max() < 1e-3


def test_spec_round_trips_and_refuses_bad_values() -> None:
    spec = KaldiFbankSpec()
    assert KaldiFbankSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(FeatureSpecError, match="dither"):
        KaldiFbankSpec(dither=1e-5)
    with pytest.raises(FeatureSpecError, match="unknown"):
        KaldiFbankSpec.from_dict({**spec.to_dict(), "vtln_warp": 1.0})
    with pytest.raises(FeatureSpecError, match="window_type"):
        KaldiFbankSpec(window_type="blackman")
