"""Silero VAD v5/v6 (16 kHz) as speechport modules, and its exported components.

One call sees 576 samples: 64 of context (the tail of the previous call) and 512 new ones.
The STFT is a strided convolution with the model's own basis (cos rows, then sin rows; no
complex ops), followed by four convolutions, an LSTM cell with explicit state and a 1x1
convolution with a sigmoid: the speech probability of the 512 new samples.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SAMPLE_RATE = 16000
CONTEXT = 64
CHUNK = 512
WINDOW = CONTEXT + CHUNK
N_FFT = 256
HOP = 128
HIDDEN = 128
SUB_CHUNKS = 8  # the 256 ms variant: 8 x 512 new samples per call

# fp16 guard. Each basis row sums to 128 in absolute value, so |X| <= 128 * max|x| and
# re^2 + im^2 reaches 16384 for full-scale DC: inside fp16 (max 65504), but only by 4x; a
# float file with samples past +-2 would overflow it to inf. Scaling the real and imaginary
# parts by 2^-5 before squaring moves that limit to +-64 and is exact in fp32 (a power of
# two). The convolutions after it stay below ~4500 on full-scale noise, tones, chirps and
# square waves: within fp16's range, though at its coarse end (a step of 4 near 4000).
_MAGNITUDE_SCALE = 32.0


class StftMagnitude(nn.Module):
    """``[B, N] -> [B, 129, frames]``: reflect-pad 64 samples on the right, convolve with the
    basis at hop 128, magnitude of (real, imaginary)."""

    basis: Tensor

    def __init__(self, basis: Tensor) -> None:
        super().__init__()
        self.register_buffer("basis", basis)
        self.bins = basis.shape[0] // 2

    def forward(self, audio: Tensor) -> Tensor:
        x = nn.functional.pad(audio.unsqueeze(1), (0, CONTEXT), mode="reflect")
        spec = nn.functional.conv1d(x, self.basis, stride=HOP) / _MAGNITUDE_SCALE
        real, imag = spec[:, : self.bins], spec[:, self.bins :]
        return torch.sqrt(real * real + imag * imag) * _MAGNITUDE_SCALE


class VadEncoder(nn.Module):
    """Four 3-tap convolutions with ReLU, strides 1, 2, 2, 1: ``[B, 129, 4] -> [B, 128]``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(N_FFT // 2 + 1, 128, 3, stride=1, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, 3, stride=1, padding=1)

    def forward(self, magnitude: Tensor) -> Tensor:
        x = torch.relu(self.conv1(magnitude))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        x = torch.relu(self.conv4(x))
        return x.squeeze(-1)  # a 576-sample window makes exactly one frame here


class LSTMCellStep(nn.Module):
    """An LSTM cell written out (gate order i, f, g, o as torch's), so that it exports to
    every target as plain matmuls and activations."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight_ih = nn.Parameter(torch.zeros(4 * size, size))
        self.weight_hh = nn.Parameter(torch.zeros(4 * size, size))
        self.bias_ih = nn.Parameter(torch.zeros(4 * size))
        self.bias_hh = nn.Parameter(torch.zeros(4 * size))

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        gates = x @ self.weight_ih.t() + self.bias_ih + h @ self.weight_hh.t() + self.bias_hh
        i, f, g, o = gates.chunk(4, dim=-1)
        c_out = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_out = torch.sigmoid(o) * torch.tanh(c_out)
        return h_out, c_out


class VadDecoder(nn.Module):
    """``features [B, 128], state [2, B, 128] -> probability [B, 1], state [2, B, 128]``."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm_cell = LSTMCellStep(HIDDEN)
        self.final_conv = nn.Conv1d(HIDDEN, 1, 1)

    def forward(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, c = self.lstm_cell(features, state[0], state[1])
        prob = torch.sigmoid(self.final_conv(torch.relu(h).unsqueeze(-1))).squeeze(-1)
        return prob, torch.stack([h, c])


class SileroVAD(nn.Module):
    """The whole model on one 576-sample window: ``audio [B, 576], state -> prob, state``."""

    def __init__(self, basis: Tensor) -> None:
        super().__init__()
        self.stft = StftMagnitude(basis)
        self.encoder = VadEncoder()
        self.decoder = VadDecoder()

    def forward(self, audio: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        prob_and_state: tuple[Tensor, Tensor] = self.decoder(self.encoder(self.stft(audio)), state)
        return prob_and_state


class SileroVAD256ms(nn.Module):
    """Eight windows per call: ``audio [B, 64 + 4096], state -> prob, probs [B, 8], state``.

    Sub-chunk ``i`` is ``audio[:, 512 i : 512 i + 576]``: its 512 new samples with the 64
    before them (the rolling context), the state threaded from one to the next. ``prob`` is
    the noisy-OR of the eight, ``1 - prod(1 - p_i)``: speech anywhere in the 256 ms.
    """

    def __init__(self, model: SileroVAD) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio: Tensor, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        probs = []
        silent = torch.ones_like(audio[:, :1])  # running prod(1 - p_i), multiplied out
        for i in range(SUB_CHUNKS):  # (Core ML has no reduce-prod to convert torch.prod to)
            prob, state = self.model(audio[:, i * CHUNK : i * CHUNK + WINDOW], state)
            probs.append(prob)
            silent = silent * (1.0 - prob)
        return 1.0 - silent, torch.cat(probs, dim=1), state
