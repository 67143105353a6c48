"""Kaldi's log-mel filter bank ("fbank"), computed incrementally, in numpy.

This is the front end of icefall's and k2's models (lhotse's ``Fbank`` for training,
kaldi-native-fbank's ``OnlineFbank`` in sherpa-onnx at run time). ``KaldiFbankSpec`` holds
every parameter and is what a manifest stores; ``OnlineKaldiFbank`` computes it as samples
arrive, so any packet size gives the same frames. The computation, per frame ``f`` (Kaldi's
``feature-window`` and ``mel-computations``, as kaldi-native-fbank does it):

1. Framing: frame length ``L = frame_length_ms * rate / 1000`` samples, shift ``S``. With
   ``snip_edges`` false, frame ``f`` starts at ``f*S + S//2 - L//2`` and samples outside the
   signal are mirrored (``-s-1`` before the start, ``2n-1-s`` past the end); there are
   ``(n + S//2) // S`` frames once the input is finished, and before that only the frames
   whose window lies wholly inside the samples received. With ``snip_edges`` true, frame
   ``f`` starts at ``f*S`` and only whole windows count.
2. ``remove_dc_offset``: subtract the window's mean.
3. Pre-emphasis: ``w[i] -= a * w[i-1]`` for ``i > 0``, ``w[0] -= a * w[0]``.
4. Window: ``povey`` = ``(0.5 - 0.5 cos(2 pi i / (L-1))) ** 0.85``, or hann / hamming /
   rectangular.
5. Zero-pad to the next power of two (``round_to_power_of_two``), real FFT, power spectrum.
6. ``num_bins`` triangular filters, equally spaced on the mel scale ``1127 ln(1 + f/700)``
   between ``low_freq`` and ``high_freq`` (``<= 0``: relative to Nyquist), over the FFT bins
   below Nyquist.
7. ``log(max(energy, FLT_EPSILON))``.

Dither is not supported (it must be 0 for reproducible features); ``use_energy`` is false.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from speechport.features.spec import FeatureSpecError

KIND = "kaldi_fbank"
WINDOW_TYPES = ("povey", "hann", "hamming", "rectangular")
FLT_EPSILON = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class KaldiFbankSpec:
    """Every parameter of Kaldi's fbank; the defaults are icefall's / sherpa-onnx's (lhotse
    ``FbankConfig()``, kaldi-native-fbank with sherpa's options), not Kaldi's own."""

    kind: str = KIND
    sample_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window_type: str = "povey"
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    round_to_power_of_two: bool = True
    snip_edges: bool = False
    dither: float = 0.0
    num_bins: int = 80
    low_freq: float = 20.0
    high_freq: float = -400.0
    use_energy: bool = False
    log_floor: float = FLT_EPSILON
    input_scale: float = 1.0  # samples are floats in [-1, 1] times this

    def __post_init__(self) -> None:
        if self.kind != KIND:
            raise FeatureSpecError(f"front end kind {self.kind!r} is not {KIND!r}")
        if self.window_type not in WINDOW_TYPES:
            raise FeatureSpecError(
                f"unknown window_type {self.window_type!r}; known: {', '.join(WINDOW_TYPES)}"
            )
        if self.dither != 0.0:
            raise FeatureSpecError("dither must be 0 (features must be reproducible)")
        if self.use_energy:
            raise FeatureSpecError("use_energy is not supported")
        if self.frame_length <= 0 or self.frame_shift <= 0 or self.num_bins < 1:
            raise FeatureSpecError("frame length, shift and num_bins must be positive")
        nyquist = self.sample_rate / 2
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not 0 <= self.low_freq < high <= nyquist:
            raise FeatureSpecError(
                f"need 0 <= low_freq < high_freq <= Nyquist; got {self.low_freq}, {high}"
            )

    @property
    def frame_length(self) -> int:
        return int(self.sample_rate * 0.001 * self.frame_length_ms)

    @property
    def frame_shift(self) -> int:
        return int(self.sample_rate * 0.001 * self.frame_shift_ms)

    @property
    def padded_length(self) -> int:
        n = self.frame_length
        return 1 << (n - 1).bit_length() if self.round_to_power_of_two else n

    def first_sample(self, frame: int) -> int:
        if self.snip_edges:
            return frame * self.frame_shift
        return frame * self.frame_shift + self.frame_shift // 2 - self.frame_length // 2

    def num_frames(self, num_samples: int, *, finished: bool) -> int:
        """Frames available from ``num_samples`` samples (Kaldi's ``NumFrames``)."""
        length, shift = self.frame_length, self.frame_shift
        if self.snip_edges:
            return 0 if num_samples < length else 1 + (num_samples - length) // shift
        frames = (num_samples + shift // 2) // shift
        if finished:
            return frames
        while frames > 0 and self.first_sample(frames - 1) + length > num_samples:
            frames -= 1
        return frames

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KaldiFbankSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise FeatureSpecError(f"unknown fbank parameter(s): {', '.join(unknown)}")
        missing = sorted(names - set(data) - {"input_scale", "log_floor"})
        if missing:
            raise FeatureSpecError(f"missing fbank parameter(s): {', '.join(missing)}")
        return cls(**dict(data))


def window_function(spec: KaldiFbankSpec) -> np.ndarray:
    n = spec.frame_length
    a = 2.0 * math.pi / (n - 1)
    i = np.arange(n, dtype=np.float64)
    if spec.window_type == "povey":
        w = (0.5 - 0.5 * np.cos(a * i)) ** 0.85
    elif spec.window_type == "hann":
        w = 0.5 - 0.5 * np.cos(a * i)
    elif spec.window_type == "hamming":
        w = 0.54 - 0.46 * np.cos(a * i)
    else:
        w = np.ones(n)
    return w.astype(np.float32)


def mel_banks(spec: KaldiFbankSpec) -> np.ndarray:
    """``[num_bins, padded_length // 2]`` triangular filters (float32 arithmetic as Kaldi)."""
    f32 = np.float32
    num_fft_bins = spec.padded_length // 2
    nyquist = f32(0.5) * f32(spec.sample_rate)
    high = f32(spec.high_freq) if spec.high_freq > 0 else nyquist + f32(spec.high_freq)
    bin_width = f32(spec.sample_rate) / f32(spec.padded_length)

    def mel(hz: Any) -> Any:
        return f32(1127.0) * np.log(f32(1.0) + np.asarray(hz, dtype=f32) / f32(700.0))

    mel_low, mel_high = mel(spec.low_freq), mel(high)
    delta = (mel_high - mel_low) / f32(spec.num_bins + 1)
    fft_mels = mel(bin_width * np.arange(num_fft_bins, dtype=f32))
    banks = np.zeros((spec.num_bins, num_fft_bins), dtype=f32)
    for b in range(spec.num_bins):
        left = mel_low + f32(b) * delta
        center = mel_low + f32(b + 1) * delta
        right = mel_low + f32(b + 2) * delta
        inside = (fft_mels > left) & (fft_mels < right)
        up = (fft_mels - left) / (center - left)
        down = (right - fft_mels) / (right - center)
        banks[b] = np.where(inside, np.where(fft_mels <= center, up, down), f32(0.0))
    return banks


class OnlineKaldiFbank:
    """Incremental fbank: ``accept(samples)`` returns the frames that became complete,
    ``finish()`` the rest (mirrored at the end). The same frames for any packet sizes."""

    def __init__(self, spec: KaldiFbankSpec):
        self.spec = spec
        self._window = window_function(spec)
        self._banks64 = mel_banks(spec).astype(np.float64)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # sample index of the buffer's first sample
        self._received = 0
        self._frames = 0  # frames emitted so far
        self._finished = False

    @property
    def num_frames(self) -> int:
        return self._frames

    def reset(self) -> None:
        self.__init__(self.spec)  # type: ignore[misc]

    def accept(self, samples: np.ndarray) -> np.ndarray:
        if self._finished:
            raise ValueError("the fbank input is finished; reset() before accepting more")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self.spec.input_scale != 1.0:
            samples = samples * np.float32(self.spec.input_scale)
        self._buffer = np.concatenate([self._buffer, samples])
        self._received += len(samples)
        return self._compute(finished=False)

    def finish(self) -> np.ndarray:
        if self._finished:
            return np.zeros((0, self.spec.num_bins), dtype=np.float32)
        self._finished = True
        return self._compute(finished=True)

    def _compute(self, *, finished: bool) -> np.ndarray:
        spec = self.spec
        total = spec.num_frames(self._received, finished=finished)
        if total <= self._frames or len(self._buffer) == 0:
            return np.zeros((0, spec.num_bins), dtype=np.float32)
        frames = np.arange(self._frames, total)
        starts = np.array([spec.first_sample(int(f)) for f in frames]) - self._offset
        index = starts[:, None] + np.arange(spec.frame_length)[None, :]
        dim = len(self._buffer)
        while True:  # mirror into the buffer, as kaldi-native-fbank does
            low, high = index < 0, index >= dim
            if not (low.any() or high.any()):
                break
            index = np.where(low, -index - 1, np.where(high, 2 * dim - 1 - index, index))
        windows = self._buffer[index]
        out = self._process(windows)
        self._frames = total
        keep_from = spec.first_sample(total) - self._offset
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._offset += keep_from
        return out

    def _process(self, windows: np.ndarray) -> np.ndarray:
        spec = self.spec
        w = windows.astype(np.float32, copy=True)
        if spec.remove_dc_offset:
            w -= (w.sum(axis=1, keepdims=True, dtype=np.float64) / w.shape[1]).astype(np.float32)
        if spec.preemphasis != 0.0:
            a = np.float32(spec.preemphasis)
            w[:, 1:] -= a * w[:, :-1]
            w[:, 0] -= a * w[:, 0]
        w *= self._window
        spectrum = np.fft.rfft(w.astype(np.float64), n=spec.padded_length, axis=1)
        power = spectrum.real**2 + spectrum.imag**2
        # einsum's own loops, not BLAS: each frame's sums run in the same order whatever the
        # number of frames computed together, so every packet size gives identical bits
        energies = np.einsum(
            "fk,bk->fb", power[:, : spec.padded_length // 2], self._banks64, optimize=False
        ).astype(np.float32)
        logged: np.ndarray = np.log(np.maximum(energies, np.float32(spec.log_floor)))
        return logged.astype(np.float32)


def compute_fbank(spec: KaldiFbankSpec, samples: np.ndarray) -> np.ndarray:
    """All frames of a finished signal (one call to the incremental front end)."""
    fbank = OnlineKaldiFbank(spec)
    head = fbank.accept(samples)
    return np.concatenate([head, fbank.finish()])
