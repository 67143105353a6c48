"""The log-mel front-end spec: every parameter of the computation, in one JSON-ready record.

A bundle's manifest stores `LogMelSpec.to_dict()`. From it, the numpy front end
(`speechport.features.numpy_frontend`), the torch front end used for export
(`speechport.features.torch_frontend`), or a Swift / C++ host computes the same features.
The computation, in order (``n`` = number of samples):

1. Pre-emphasis (if ``preemphasis`` is set): ``y[0] = x[0]``, ``y[t] = x[t] - a * x[t-1]``.
2. Centring (if ``center``): pad ``n_fft // 2`` samples on both sides, zeros
   (``pad_mode="constant"``) or a mirror without the edge sample (``"reflect"``).
3. Framing: frames of ``n_fft`` samples every ``hop_length`` samples, as `torch.stft` does.
   The window (``win_length`` samples of ``window``; periodic or symmetric) is zero-padded
   on both sides to ``n_fft``, with ``(n_fft - win_length) // 2`` zeros on the left.
4. Spectrum: one-sided DFT (``n_fft // 2 + 1`` bins); ``|X| ** power``.
5. Mel projection: ``n_mels`` triangular filters between ``f_min`` and ``f_max``.
   ``mel_scale="htk"`` builds them as torchaudio's ``melscale_fbanks`` does (float32
   arithmetic); ``"slaney"`` as ``librosa.filters.mel`` does (float64, stored as float32).
   ``mel_norm="slaney"`` scales each filter to unit area (``2 / (f_right - f_left)``).
6. Log: ``"clamp"``: ``log(clamp(x, log_floor, log_ceil))``; ``"add"``: ``log(x + log_guard)``.
7. Valid frames: all frames, or all but the last one (``drop_last_frame``, NeMo's length).
8. Normalisation (``"per_feature"``): per mel bin, mean and unbiased standard deviation
   (divisor ``count - 1``; 0 for a single frame) over the valid frames;
   ``(x - mean) / (std + normalize_eps)``.
9. Frames past the valid length are set to ``pad_value`` when it is not None.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from speechport.errors import SpeechportError

KIND = "log_mel"
WINDOWS = ("hann", "hamming")
PAD_MODES = ("constant", "reflect")
MEL_SCALES = ("htk", "slaney")
MEL_NORMS = (None, "slaney")
LOG_MODES = ("clamp", "add")
NORMALIZATIONS = (None, "per_feature")

_INT_FIELDS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels")
_BOOL_FIELDS = ("periodic_window", "center", "drop_last_frame")
_FLOAT_FIELDS = ("f_min", "power", "log_floor", "log_guard", "normalize_eps")
_OPTIONAL_FLOAT_FIELDS = ("preemphasis", "f_max", "log_ceil", "pad_value")
_CHOICE_FIELDS: dict[str, tuple[str | None, ...]] = {
    "kind": (KIND,),
    "window": WINDOWS,
    "pad_mode": PAD_MODES,
    "mel_scale": MEL_SCALES,
    "mel_norm": MEL_NORMS,
    "log": LOG_MODES,
    "normalize": NORMALIZATIONS,
}


class FeatureSpecError(SpeechportError):
    """A front-end spec with an unknown key, a missing key or a value out of range."""


@dataclass(frozen=True)
class LogMelSpec:
    """Every parameter of a log-mel front end; the defaults are GigaAM-v3's.

    See the module docstring for the computation these fields describe.
    """

    kind: str = KIND
    sample_rate: int = 16000
    n_fft: int = 320
    win_length: int = 320
    hop_length: int = 160
    window: str = "hann"
    periodic_window: bool = True
    center: bool = False
    pad_mode: str = "constant"
    preemphasis: float | None = None
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: str = "htk"
    mel_norm: str | None = None
    power: float = 2.0
    log: str = "clamp"
    log_floor: float = 1e-9
    log_ceil: float | None = 1e9
    log_guard: float = 2.0**-24
    normalize: str | None = None
    normalize_eps: float = 1e-5
    drop_last_frame: bool = False
    pad_value: float | None = None

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            _check_int(name, getattr(self, name))
        for name in _BOOL_FIELDS:
            _check_bool(name, getattr(self, name))
        for name in (*_FLOAT_FIELDS, *_OPTIONAL_FLOAT_FIELDS):
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_FLOAT_FIELDS:
                continue
            _check_float(name, value)
            object.__setattr__(self, name, float(value))  # JSON writes 0.0, not 0
        for name, allowed in _CHOICE_FIELDS.items():
            _check_choice(name, getattr(self, name), allowed)
        self._check_ranges()

    def _check_ranges(self) -> None:
        for name in _INT_FIELDS:
            if getattr(self, name) <= 0:
                raise _invalid(name, getattr(self, name), "a positive integer")
        if self.win_length > self.n_fft:
            raise _invalid("win_length", self.win_length, f"at most n_fft ({self.n_fft})")
        nyquist = self.sample_rate / 2
        if not 0.0 <= self.f_min < self.max_frequency:
            raise _invalid("f_min", self.f_min, f"in [0, f_max) with f_max = {self.max_frequency}")
        if self.f_max is not None and not self.f_max <= nyquist:
            raise _invalid("f_max", self.f_max, f"at most sample_rate / 2 ({nyquist}) or null")
        if self.preemphasis is not None and not 0.0 < self.preemphasis < 1.0:
            raise _invalid("preemphasis", self.preemphasis, "in (0, 1) or null")
        for name in ("power", "log_floor", "log_guard", "normalize_eps"):
            if not getattr(self, name) > 0.0:
                raise _invalid(name, getattr(self, name), "a positive number")
        if self.log_ceil is not None and not self.log_ceil > self.log_floor:
            raise _invalid("log_ceil", self.log_ceil, "greater than log_floor, or null")

    @property
    def n_freqs(self) -> int:
        """Number of one-sided DFT bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def max_frequency(self) -> float:
        """The upper edge of the mel filters in Hz: ``f_max``, or ``sample_rate / 2``."""
        return self.sample_rate / 2 if self.f_max is None else self.f_max

    @property
    def center_padding(self) -> int:
        """Samples padded on each side before framing (``n_fft // 2`` when centred)."""
        return self.n_fft // 2 if self.center else 0

    def num_stft_frames(self, n_samples: int) -> int:
        """Frames the STFT yields for ``n_samples`` samples: the width of the feature array.

        Frames span ``n_fft`` samples (the window is zero-padded to ``n_fft``, as in
        `torch.stft`), so ``(n + 2 * center_padding - n_fft) // hop_length + 1``, or 0 when
        the (padded) signal is shorter than one frame.
        """
        if n_samples < 0:
            raise FeatureSpecError(f"number of samples must be non-negative, got {n_samples}")
        padded = n_samples + 2 * self.center_padding
        if padded < self.n_fft:
            return 0
        return (padded - self.n_fft) // self.hop_length + 1

    def num_frames(self, n_samples: int) -> int:
        """Valid frames for ``n_samples`` samples: the feature length the model is given.

        Equal to `num_stft_frames`, less one when ``drop_last_frame`` (NeMo), never negative.
        """
        frames = self.num_stft_frames(n_samples)
        if self.drop_last_frame:
            frames -= 1
        return max(frames, 0)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict, keys in field order."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogMelSpec:
        """Rebuild a spec from `to_dict` output (e.g. read from a manifest).

        Every field must be present and no other key may be; values are validated.
        """
        if not isinstance(data, Mapping):
            raise FeatureSpecError(f"front-end spec must be a mapping, got {type(data).__name__}")
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise FeatureSpecError(
                f"front-end spec has unknown key(s) {unknown}",
                hint=f"Allowed keys: {', '.join(names)}.",
            )
        missing = [name for name in names if name not in data]
        if missing:
            raise FeatureSpecError(
                f"front-end spec is missing key(s) {missing}",
                hint="Write the spec with LogMelSpec.to_dict(), which includes every key.",
            )
        return cls(**{name: data[name] for name in names})


def _invalid(name: str, value: object, allowed: str) -> FeatureSpecError:
    return FeatureSpecError(f"front-end spec key {name!r} is {value!r}; it must be {allowed}")


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, value, "an integer")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise _invalid(name, value, "true or false")


def _check_float(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(name, value, "a number")
    if not math.isfinite(value):
        raise _invalid(name, value, "a finite number")


def _check_choice(name: str, value: object, allowed: tuple[str | None, ...]) -> None:
    if value not in allowed:
        shown = ", ".join("null" if choice is None else repr(choice) for choice in allowed)
        raise _invalid(name, value, f"one of {shown}")


GIGAAM_V3 = LogMelSpec(pad_mode="reflect")
"""GigaAM-v3: torchaudio MelSpectrogram (periodic Hann 320, hop 160, HTK mel, 64 bins,
power 2, ``center=False``; torchaudio's reflect padding would apply only if centred), then
``log(clamp(x, 1e-9, 1e9))``."""


def nemo_spec(
    n_mels: int = 80,
    *,
    sample_rate: int = 16000,
    n_fft: int = 512,
    win_length: int = 400,
    hop_length: int = 160,
    window: str = "hann",
    preemphasis: float | None = 0.97,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_norm: str | None = "slaney",
    power: float = 2.0,
    log_guard: float = 2.0**-24,
    normalize: str | None = "per_feature",
    pad_value: float = 0.0,
) -> LogMelSpec:
    """The front end of NeMo's ``AudioToMelSpectrogramPreprocessor`` in eval mode.

    The defaults are FastConformer / Parakeet's (``window_size`` 0.025 s, ``window_stride``
    0.01 s at 16 kHz). What NeMo's ``FilterbankFeatures`` fixes rather than configures:
    a symmetric window, ``torch.stft(center=True, pad_mode="constant")``, Slaney-scale
    filters from ``librosa.filters.mel``, ``log(x + guard)``, the valid length
    ``(n + 2 * (n_fft // 2) - n_fft) // hop`` (one frame fewer than the STFT gives), frames
    past it set to ``pad_value``. Dither (training only), ``pad_to`` (extra padding frames
    past the valid length), ``exact_pad`` and ``frame_splicing`` are not modelled.
    """
    return LogMelSpec(
        sample_rate=sample_rate,
        n_fft=n_fft,
        win_length=win_length,
        hop_length=hop_length,
        window=window,
        periodic_window=False,
        center=True,
        pad_mode="constant",
        preemphasis=preemphasis,
        n_mels=n_mels,
        f_min=f_min,
        f_max=f_max,
        mel_scale="slaney",
        mel_norm=mel_norm,
        power=power,
        log="add",
        log_guard=log_guard,
        normalize=normalize,
        normalize_eps=1e-5,
        drop_last_frame=True,
        pad_value=pad_value,
    )


PARAKEET_TDT_V3 = nemo_spec(n_mels=128)
"""NeMo Parakeet-TDT-0.6B (v2 and v3): 128 mel bins, otherwise `nemo_spec` defaults."""
