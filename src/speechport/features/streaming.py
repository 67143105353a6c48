"""Log-mel frames computed as audio arrives: any packet size gives the same frames.

Frame ``i`` of a centred STFT covers samples ``[i * hop - pad, i * hop - pad + n_fft)`` of
the pre-emphasised signal (``pad = n_fft // 2``, zeros before the start). It is computed as
soon as those samples have arrived, and the frames after the last full one when the stream
ends (zeros after the end), so the frames do not depend on how the audio was cut into
packets. Every frame is computed on its own (no batch-dependent summation order), so the
float32 values are the same however many frames one call produces. Memory stays bounded:
samples no future frame needs are dropped.

Only what a streaming model can use is supported: zero centre padding and no per-utterance
normalisation.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from speechport.errors import AudioError, BundleError
from speechport.features.numpy_frontend import Float32Array, LogMelFrontend, _log
from speechport.features.spec import LogMelSpec


class StreamingLogMel:
    """Incremental log-mel features (see the module's docstring)."""

    def __init__(self, spec: LogMelSpec) -> None:
        if spec.normalize is not None or spec.pad_mode != "constant":
            raise BundleError(
                "this front end normalises per utterance or mirrors at the edges, which a "
                "stream cannot do",
                hint="streaming needs normalize: NA and constant padding",
            )
        self.spec = spec
        self._frontend = LogMelFrontend(spec)
        self._window = self._frontend.window
        self._filterbank = self._frontend.filterbank.astype(np.float64)
        self._pad = spec.center_padding
        self._signal = np.zeros(self._pad, dtype=np.float64)  # from sample index -pad
        self._first = -self._pad  # stream index of _signal[0]
        self._previous: np.float32 | None = None  # last raw sample, for pre-emphasis
        self.samples = 0  # samples received
        self.frames = 0  # frames produced
        self.finished = False

    def push(self, samples: NDArray[np.floating]) -> Float32Array:
        """Take the next samples (mono float, any count); returns the new frames
        ``[n_mels, k]`` (``k`` may be 0)."""
        if self.finished:
            raise AudioError("the stream has ended; start a new one")
        audio = np.asarray(samples, dtype=np.float32).reshape(-1)
        if audio.size and not np.all(np.isfinite(audio)):
            raise AudioError("audio holds NaN or infinite samples")
        if audio.size:
            emphasized = self._emphasize(audio)
            self._signal = np.concatenate([self._signal, emphasized.astype(np.float64)])
            self.samples += audio.size
        hop, n_fft = self.spec.hop_length, self.spec.n_fft
        end = self._first + self._signal.size  # stream index after the last sample
        ready = max((end + self._pad - n_fft) // hop + 1, 0)  # frames whose samples arrived
        return self._produce(ready)

    def finish(self) -> Float32Array:
        """End the stream: the remaining valid frames, computed with zeros after the end."""
        if self.finished:
            return np.zeros((self.spec.n_mels, 0), dtype=np.float32)
        self.finished = True
        total = self.spec.num_frames(self.samples)
        self._signal = np.concatenate([self._signal, np.zeros(self.spec.n_fft, np.float64)])
        return self._produce(total)

    def _emphasize(self, audio: Float32Array) -> Float32Array:
        pre = self.spec.preemphasis
        if pre is None:
            return audio
        previous = (
            audio[:-1]
            if self._previous is None
            else np.concatenate([np.array([self._previous], dtype=np.float32), audio[:-1]])
        )
        out = audio.copy()
        if self._previous is None:
            out[1:] = audio[1:] - np.float32(pre) * previous
        else:
            out = audio - np.float32(pre) * previous
        self._previous = audio[-1]
        return out

    def _produce(self, upto: int) -> Float32Array:
        """Frames ``self.frames .. upto - 1`` (one by one), then drop consumed samples."""
        hop, n_fft = self.spec.hop_length, self.spec.n_fft
        count = max(upto - self.frames, 0)
        out = np.empty((self.spec.n_mels, count), dtype=np.float32)
        for k in range(count):
            i = self.frames + k
            offset = i * hop - self._pad - self._first
            frame = self._signal[offset : offset + n_fft] * self._window
            spectrum = np.fft.rfft(frame)
            power = spectrum.real**2 + spectrum.imag**2
            if self.spec.power != 2.0:
                power = power ** (self.spec.power / 2.0)
            mel = np.einsum("f,fm->m", power, self._filterbank, optimize=False)
            out[:, k] = _log(mel, self.spec).astype(np.float32)
        self.frames += count
        keep_from = self.frames * hop - self._pad - self._first
        if keep_from > 0:
            self._signal = self._signal[keep_from:]
            self._first += keep_from
        return out
