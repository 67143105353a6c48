"""The torch front end: the same features as the numpy runtime, in ops that export.

`TorchLogMel` computes the STFT as a strided ``conv1d`` against a real DFT basis (cosine
and sine rows with the window folded in), so the graph has no complex tensors and no
``stft`` op: it traces with `torch.jit.trace` and converts to ONNX and Core ML. Lengths
are computed with integer ops. Everything else runs in float32, like the references; on
Core ML keep this component in float32, since float16 cannot represent ``log_floor``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechport.features.numpy_frontend import mel_filterbank, window_array
from speechport.features.spec import LogMelSpec


def dft_basis(spec: LogMelSpec) -> np.ndarray:
    """``[2 * n_freqs, 1, n_fft]`` float32 conv weights: ``w·cos`` rows, then ``-w·sin`` rows.

    Angles are reduced modulo ``n_fft`` in integers before scaling, so every entry is the
    correctly rounded float32 of the exact product.
    """
    n = np.arange(spec.n_fft, dtype=np.int64)
    k = np.arange(spec.n_freqs, dtype=np.int64)
    angle = 2.0 * np.pi * ((k[:, np.newaxis] * n[np.newaxis, :]) % spec.n_fft) / spec.n_fft
    window = window_array(spec)
    basis = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window], axis=0)
    return basis[:, np.newaxis, :].astype(np.float32)


class TorchLogMel(nn.Module):
    """Batched log-mel features: ``(audio [B, N], length [B]) -> (features, feature_length)``.

    ``features`` is ``[B, n_mels, spec.num_stft_frames(N)]`` float32, ``feature_length``
    ``[B]`` int64 (`LogMelSpec.num_frames` of each length). Samples at or past ``length``
    are zeroed first, so valid frames do not depend on what pads a shorter clip (with
    ``pad_mode="reflect"`` the frames near a padded clip's end still differ from the clip
    alone). Normalisation uses valid frames only; when ``spec.pad_value`` is set, frames
    past the valid length are set to it.
    """

    basis: Tensor
    mel_basis: Tensor

    def __init__(self, spec: LogMelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("basis", torch.from_numpy(dft_basis(spec)))
        mel = np.ascontiguousarray(mel_filterbank(spec).T)
        self.register_buffer("mel_basis", torch.from_numpy(mel))

    def forward(self, audio: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        length = length.to(torch.int64)
        signal = self._masked_signal(audio, length)
        power = self._power_spectrum(signal)
        log_mel = self._log(torch.matmul(self.mel_basis, power))
        feature_length = self.feature_length(length)
        valid = _frame_mask(log_mel, feature_length)
        if self.spec.normalize == "per_feature":
            log_mel = _normalize_per_feature(log_mel, valid, self.spec.normalize_eps)
        if self.spec.pad_value is not None:
            log_mel = torch.where(valid, log_mel, torch.full_like(log_mel, self.spec.pad_value))
        return log_mel, feature_length

    def feature_length(self, length: Tensor) -> Tensor:
        """`LogMelSpec.num_frames` with integer tensor ops, ``[B]`` int64."""
        spec = self.spec
        padded = length.to(torch.int64) + 2 * spec.center_padding
        frames = torch.div(padded - spec.n_fft, spec.hop_length, rounding_mode="floor") + 1
        if spec.drop_last_frame:
            frames = frames - 1
        return torch.clamp(frames, min=0)

    def _masked_signal(self, audio: Tensor, length: Tensor) -> Tensor:
        """Pre-emphasis, zeros at and past each length, centring: ``[B, 1, N + 2 * pad]``."""
        signal = audio.to(torch.float32)
        if self.spec.preemphasis is not None:
            rest = signal[:, 1:] - self.spec.preemphasis * signal[:, :-1]
            signal = torch.cat([signal[:, :1], rest], dim=1)
        positions = torch.arange(signal.shape[1], device=signal.device).unsqueeze(0)
        signal = torch.where(positions < length.unsqueeze(1), signal, torch.zeros_like(signal))
        signal = signal.unsqueeze(1)
        pad = self.spec.center_padding
        if pad > 0:
            signal = F.pad(signal, (pad, pad), mode=self.spec.pad_mode)
        return signal

    def _power_spectrum(self, signal: Tensor) -> Tensor:
        """``|X| ** power`` ``[B, n_freqs, T]`` from a strided conv against the DFT basis."""
        parts = F.conv1d(signal, self.basis, stride=self.spec.hop_length)
        real, imag = parts[:, : self.spec.n_freqs], parts[:, self.spec.n_freqs :]
        power = real * real + imag * imag
        if self.spec.power != 2.0:
            power = torch.pow(power, self.spec.power / 2.0)
        return power

    def _log(self, mel: Tensor) -> Tensor:
        spec = self.spec
        if spec.log == "add":
            return torch.log(mel + spec.log_guard)
        return torch.log(torch.clamp(mel, min=spec.log_floor, max=spec.log_ceil))


def _frame_mask(features: Tensor, feature_length: Tensor) -> Tensor:
    """``[B, 1, T]`` bool: frame index below the feature length."""
    frames = torch.arange(features.shape[2], device=features.device).unsqueeze(0)
    return (frames < feature_length.unsqueeze(1)).unsqueeze(1)


def _normalize_per_feature(features: Tensor, valid: Tensor, eps: float) -> Tensor:
    """Per mel bin over valid frames: ``(x - mean) / (unbiased std + eps)``.

    Counts are clamped to keep the graph free of NaN: one valid frame gives std 0 (NeMo
    replaces its NaN by 0), no valid frame gives mean 0 (every frame is padding then).
    """
    zeros = torch.zeros_like(features)
    count = valid.sum(dim=2, keepdim=True).to(features.dtype)
    mean = torch.where(valid, features, zeros).sum(dim=2, keepdim=True) / torch.clamp(
        count, min=1.0
    )
    centered = features - mean
    squares = torch.where(valid, centered * centered, zeros).sum(dim=2, keepdim=True)
    std = torch.sqrt(squares / torch.clamp(count - 1.0, min=1.0))
    return centered / (std + eps)
