"""How far synthesized audio is from the reference's, as a listener would notice: the
spectral convergence of the STFT magnitudes and the mean log-mel distance (dB), frame by
frame. numpy only."""

from __future__ import annotations

import numpy as np

from speechport.features.numpy_frontend import mel_filterbank, window_array
from speechport.features.spec import LogMelSpec

N_FFT, HOP, N_MELS = 1024, 256, 80
_FLOOR = 1e-10
_TOP_DB = 1e-8  # bands more than 80 dB below the reference's peak count as that level


def _spec(sample_rate: int) -> LogMelSpec:
    return LogMelSpec(
        sample_rate=sample_rate,
        n_fft=N_FFT,
        win_length=N_FFT,
        hop_length=HOP,
        n_mels=N_MELS,
        f_max=sample_rate / 2,
    )


def magnitude(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """|STFT| of ``audio`` ([frames, N_FFT // 2 + 1], Hann window, zero-padded ends)."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    x = np.pad(x, (N_FFT // 2, N_FFT // 2 + (-x.size) % HOP))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    return np.abs(np.fft.rfft(frames * window_array(_spec(sample_rate)), axis=1))


def spectral_convergence(reference: np.ndarray, got: np.ndarray, sample_rate: int) -> float:
    """‖|S_ref| − |S_got|‖_F / ‖|S_ref|‖_F."""
    a, b = magnitude(reference, sample_rate), magnitude(got, sample_rate)
    norm = float(np.linalg.norm(a))
    return float(np.linalg.norm(a - b) / norm) if norm > 0 else float(np.linalg.norm(b) > 0)


def mel_distance(
    reference: np.ndarray, got: np.ndarray, sample_rate: int
) -> tuple[float, np.ndarray]:
    """Mean |Δ log-mel| in dB over all frames and bands (levels floored 80 dB below the
    reference's peak, as librosa's ``top_db``), and its mean per frame."""
    bank = mel_filterbank(_spec(sample_rate)).astype(np.float64)
    mel_a = magnitude(reference, sample_rate) ** 2 @ bank
    mel_b = magnitude(got, sample_rate) ** 2 @ bank
    floor = max(float(mel_a.max(initial=0.0)) * _TOP_DB, _FLOOR)  # 80 dB below the peak
    a = 10 * np.log10(np.maximum(mel_a, floor))
    b = 10 * np.log10(np.maximum(mel_b, floor))
    per_frame = np.abs(a - b).mean(axis=1)
    return float(per_frame.mean()) if per_frame.size else 0.0, per_frame
