"""The runtime front end: log-mel features from a `LogMelSpec` with numpy only.

Precision: the references (torchaudio, NeMo) compute the spectrum in float32. Rounding in
their FFT leaves noise at about ``1e-7`` of each frame's energy, which is all that remains
between them and the exact result. This module computes the spectrum, the mel projection,
the log and the normalisation in float64 — the exact result up to negligible error — and
returns float32. Against a float32 reference it therefore shows only the reference's own
rounding, not the sum of two. The mel filterbank itself is built the way each reference
builds it (see `mel_filterbank`), because its float32 values shape every feature.

The mel projection runs BLAS on one thread: OpenBLAS splits even a 4 s clip's product
(401 x 257 by 257 x 80) over every core, and its threads then spin for some 100 ms, a core
taken from the encoder that runs next. On two busy cores (load average 5) a 4 s Parakeet
clip took 183 ms (median) that way, 144 ms without; the product itself takes 0.15-0.45 ms
on one thread, up to 4 ms on two.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from speechport.errors import AudioError
from speechport.features.spec import LogMelSpec
from speechport.runtime.blas import one_blas_thread

Float32Array = NDArray[np.float32]
Float64Array = NDArray[np.float64]

_FRAMES_PER_BLOCK = 256
"""Frames transformed at once, in arrays kept for the next block and call (`_Block`):
bounds memory on long audio (1 MB of frames at n_fft 512)."""

_MELS_PER_BAND = 8
"""Mel filters projected together (`MelBand`): a triangle spans a few bins, so 8 adjacent
ones span about a tenth of the spectrum; the projection then multiplies 4-5x fewer zeros
than one dense product does (60 s, 80 mels: 1.1 ms instead of 4.9 ms)."""


def window_array(spec: LogMelSpec) -> Float64Array:
    """The analysis window, ``n_fft`` long: ``win_length`` samples centred as `torch.stft` does.

    Computed in float64; torch's float32 window differs by at most about 2e-7.
    """
    length = spec.win_length
    denominator = length if spec.periodic_window else max(length - 1, 1)
    phase = 2.0 * np.pi * np.arange(length, dtype=np.float64) / denominator
    if spec.window == "hann":
        core = 0.5 - 0.5 * np.cos(phase)
    else:  # "hamming", torch's coefficients
        core = 0.54 - 0.46 * np.cos(phase)
    if length == 1:
        core = np.ones(1, dtype=np.float64)
    left = (spec.n_fft - length) // 2
    window = np.zeros(spec.n_fft, dtype=np.float64)
    window[left : left + length] = core
    return window


def mel_filterbank(spec: LogMelSpec) -> Float32Array:
    """The mel filterbank, ``[n_freqs, n_mels]`` float32.

    ``mel_scale="htk"``: torchaudio's ``melscale_fbanks`` with its float32 arithmetic,
    including `torch.linspace`'s rounding. (torch's float32 ``pow`` is not correctly
    rounded; it can leave a mel point one float32 step away, about 2e-6 in a weight.)
    ``mel_scale="slaney"``: ``librosa.filters.mel`` (float64 arithmetic, float32 weights,
    normalised in place), which NeMo stores as its ``fb`` buffer.
    """
    if spec.mel_scale == "htk":
        return _torchaudio_htk_filterbank(spec)
    return _librosa_slaney_filterbank(spec)


def _torch_linspace_f32(start: float, end: float, steps: int) -> Float32Array:
    """`torch.linspace` in float32 on CPU: the nearer end plus ``step * k``, rounded once."""
    first = np.float32(start)
    last = np.float32(end)
    if steps == 1:
        return np.array([first], dtype=np.float32)
    step = float(np.float32((last - first) / np.float32(steps - 1)))
    k = np.arange(steps, dtype=np.float64)
    from_start = float(first) + step * k
    from_end = float(last) - step * (steps - 1 - k)
    return np.where(k < steps // 2, from_start, from_end).astype(np.float32)


def _htk_hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _torchaudio_htk_filterbank(spec: LogMelSpec) -> Float32Array:
    one = np.float32(1.0)
    all_freqs = _torch_linspace_f32(0.0, spec.sample_rate // 2, spec.n_freqs)
    mel_points = _torch_linspace_f32(
        _htk_hz_to_mel(spec.f_min), _htk_hz_to_mel(spec.max_frequency), spec.n_mels + 2
    )
    exponent = mel_points / np.float32(2595.0)
    power_of_ten = np.power(10.0, exponent.astype(np.float64)).astype(np.float32)
    f_points = np.float32(700.0) * (power_of_ten - one)
    f_diff = f_points[1:] - f_points[:-1]
    slopes = f_points[np.newaxis, :] - all_freqs[:, np.newaxis]
    down = (-slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    bank = np.maximum(np.float32(0.0), np.minimum(down, up))
    if spec.mel_norm == "slaney":
        areas = np.float32(2.0) / (f_points[2:] - f_points[:-2])
        bank = bank * areas[np.newaxis, :]
    return np.ascontiguousarray(bank, dtype=np.float32)


_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_LOG_START_HZ = 1000.0
_SLANEY_LOG_START_MEL = _SLANEY_LOG_START_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def _slaney_hz_to_mel(hz: float) -> float:
    if hz < _SLANEY_LOG_START_HZ:
        return hz / _SLANEY_HZ_PER_MEL
    return float(_SLANEY_LOG_START_MEL + np.log(hz / _SLANEY_LOG_START_HZ) / _SLANEY_LOG_STEP)


def _slaney_mel_to_hz(mels: Float64Array) -> Float64Array:
    hz = _SLANEY_HZ_PER_MEL * mels
    log_region = mels >= _SLANEY_LOG_START_MEL
    hz[log_region] = _SLANEY_LOG_START_HZ * np.exp(
        _SLANEY_LOG_STEP * (mels[log_region] - _SLANEY_LOG_START_MEL)
    )
    return hz


def _librosa_slaney_filterbank(spec: LogMelSpec) -> Float32Array:
    fft_freqs = np.fft.rfftfreq(n=spec.n_fft, d=1.0 / spec.sample_rate)
    mels = np.linspace(
        _slaney_hz_to_mel(float(spec.f_min)),
        _slaney_hz_to_mel(float(spec.max_frequency)),
        spec.n_mels + 2,
    )
    mel_hz = _slaney_mel_to_hz(mels)
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, np.newaxis] - fft_freqs[np.newaxis, :]
    lower = -ramps[:-2] / widths[:-1, np.newaxis]
    upper = ramps[2:] / widths[1:, np.newaxis]
    bank = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    if spec.mel_norm == "slaney":
        areas = 2.0 / (mel_hz[2:] - mel_hz[:-2])
        bank = (bank * areas[:, np.newaxis]).astype(np.float32)
    return np.ascontiguousarray(bank.T, dtype=np.float32)


@dataclass(frozen=True)
class MelBand:
    """Mel filters ``first_mel .. stop_mel - 1`` with their nonzero weights, which all lie in
    frequency bins ``first_bin .. stop_bin - 1``: ``weights [stop_bin - first_bin, mels]``."""

    first_mel: int
    stop_mel: int
    first_bin: int
    stop_bin: int
    weights: Float64Array


def mel_bands(filterbank: NDArray[Any], mels_per_band: int = _MELS_PER_BAND) -> list[MelBand]:
    """``filterbank [n_freqs, n_mels]`` in float64 as bands of ``mels_per_band`` adjacent
    filters, each cut to the bins where one of its filters is nonzero (a band of empty
    filters is left out: its mel energies are 0). Projecting a power spectrum on every
    band sums the same products as the dense filterbank does, less the zeros."""
    bank = np.asarray(filterbank, dtype=np.float64)
    bands = []
    for first in range(0, bank.shape[1], mels_per_band):
        columns = bank[:, first : first + mels_per_band]
        bins = np.flatnonzero(columns.any(axis=1))
        if bins.size == 0:
            continue
        low, high = int(bins[0]), int(bins[-1]) + 1
        weights = np.ascontiguousarray(columns[low:high])
        bands.append(MelBand(first, first + columns.shape[1], low, high, weights))
    return bands


class LogMelFrontend:
    """Log-mel features of one mono clip, as the spec describes, with numpy only."""

    def __init__(self, spec: LogMelSpec) -> None:
        self.spec = spec
        self.window = window_array(spec)
        self.filterbank = mel_filterbank(spec)
        self._bands = mel_bands(self.filterbank)
        self._blocks = threading.local()  # each thread's `_Block`, kept from call to call

    def num_frames(self, n_samples: int) -> int:
        """Valid frames (the feature length) for ``n_samples`` samples."""
        return self.spec.num_frames(n_samples)

    def __call__(self, samples: NDArray[Any]) -> Float32Array:
        """Features ``[n_mels, spec.num_stft_frames(n)]`` float32 of ``samples`` ``[n]``.

        Frames from `num_frames(n)` on are padding (NeMo's last frame): set to
        ``spec.pad_value`` when the spec has one.
        """
        audio = _checked_samples(samples)
        signal = self._padded_signal(audio)
        n_frames = self.spec.num_stft_frames(audio.shape[0])
        log_mel = np.empty((self.spec.n_mels, n_frames), dtype=np.float64)
        block = self._block()
        for start in range(0, n_frames, _FRAMES_PER_BLOCK):
            stop = min(start + _FRAMES_PER_BLOCK, n_frames)
            log_mel[:, start:stop] = self._log_mel_block(signal, start, stop, block)
        valid = self.num_frames(audio.shape[0])
        if self.spec.normalize == "per_feature":
            _normalize_per_feature(log_mel, valid, self.spec.normalize_eps)
        if self.spec.pad_value is not None:
            log_mel[:, valid:] = self.spec.pad_value
        return log_mel.astype(np.float32)

    def _block(self) -> _Block:
        """This thread's arrays for a block of frames (made at its first call)."""
        block: _Block | None = getattr(self._blocks, "block", None)
        if block is None:
            block = self._blocks.block = _Block(_FRAMES_PER_BLOCK, self.spec)
        return block

    def _padded_signal(self, audio: Float32Array) -> Float64Array:
        """Pre-emphasis (in float32, as the references do), then centring."""
        emphasized = audio
        if self.spec.preemphasis is not None and audio.shape[0] > 1:
            emphasized = audio.copy()
            emphasized[1:] = audio[1:] - np.float32(self.spec.preemphasis) * audio[:-1]
        pad = self.spec.center_padding
        if pad == 0:
            return emphasized.astype(np.float64)
        if self.spec.pad_mode == "reflect" and audio.shape[0] <= pad:
            raise AudioError(
                f"audio of {audio.shape[0]} samples is too short for reflect padding of {pad}",
                hint="Give at least n_fft // 2 + 1 samples.",
            )
        signal = emphasized.astype(np.float64)
        if self.spec.pad_mode == "reflect":
            return np.pad(signal, (pad, pad), mode="reflect")
        return np.pad(signal, (pad, pad), mode="constant")

    def _log_mel_block(
        self, signal: Float64Array, start: int, stop: int, block: _Block
    ) -> Float64Array:
        """Log-mel ``[n_mels, stop - start]`` of frames ``start .. stop - 1``, computed in
        ``block``'s arrays."""
        hop = self.spec.hop_length
        first = start * hop
        last = (stop - 1) * hop + self.spec.n_fft
        frames = np.lib.stride_tricks.sliding_window_view(signal[first:last], self.spec.n_fft)
        count = stop - start
        windowed = np.multiply(frames[::hop], self.window, out=block.windowed[:count])
        spectrum = np.fft.rfft(windowed, axis=-1, out=block.spectrum[:count])
        power = np.square(spectrum.real, out=block.power[:count])
        power += np.square(spectrum.imag, out=block.scratch[:count])
        if self.spec.power != 2.0:
            power **= self.spec.power / 2.0
        mel = block.mel[:count]
        mel.fill(0.0)
        with one_blas_thread():
            for band in self._bands:
                np.matmul(
                    power[:, band.first_bin : band.stop_bin],
                    band.weights,
                    out=mel[:, band.first_mel : band.stop_mel],
                )
        return _log(mel, self.spec).T


class _Block:
    """The arrays a block of frames is transformed in (3.3 MB at n_fft 512), reused from
    block to block and call to call: fresh arrays of this size are mapped from the system
    and faulted in page by page at every use, which took more than the arithmetic (a 4 s
    clip at n_fft 512: 2.2 ms a call with fresh arrays, 1.1 ms with these)."""

    def __init__(self, frames: int, spec: LogMelSpec) -> None:
        self.windowed = np.empty((frames, spec.n_fft), dtype=np.float64)
        self.spectrum = np.empty((frames, spec.n_freqs), dtype=np.complex128)
        self.power = np.empty((frames, spec.n_freqs), dtype=np.float64)
        self.scratch = np.empty((frames, spec.n_freqs), dtype=np.float64)
        self.mel = np.empty((frames, spec.n_mels), dtype=np.float64)


def _checked_samples(samples: NDArray[Any]) -> Float32Array:
    array = np.asarray(samples)
    if array.ndim != 1:
        raise AudioError(
            f"front end expects mono samples of shape [n], got shape {array.shape}",
            hint="Mix down to mono first (speechport.audio does this when reading files).",
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise AudioError(
            f"front end expects float samples in [-1, 1], got dtype {array.dtype}",
            hint="Scale integer PCM to float32 (int16: divide by 32768).",
        )
    audio = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(audio)):
        raise AudioError("audio holds NaN or infinite samples")
    return audio


def _log(mel: Float64Array, spec: LogMelSpec) -> Float64Array:
    if spec.log == "add":
        return np.log(mel + spec.log_guard)
    upper = np.inf if spec.log_ceil is None else spec.log_ceil
    return np.log(np.clip(mel, spec.log_floor, upper))


def _normalize_per_feature(log_mel: Float64Array, valid: int, eps: float) -> None:
    """In place: per mel bin, subtract the mean and divide by (unbiased std + eps).

    Statistics over the first ``valid`` frames; one frame has std 0, as in NeMo.
    """
    if valid == 0:
        return
    frames = log_mel[:, :valid]
    mean = frames.mean(axis=1, keepdims=True)
    squares = ((frames - mean) ** 2).sum(axis=1, keepdims=True)
    std = np.sqrt(squares / max(valid - 1, 1))
    log_mel -= mean
    log_mel /= std + eps


def build_frontend(spec_dict: Mapping[str, Any]) -> LogMelFrontend:
    """The front end a manifest's spec (``LogMelSpec.to_dict()`` output) describes."""
    return LogMelFrontend(LogMelSpec.from_dict(spec_dict))
