"""Masked building blocks of Kokoro: every one takes the valid length along time, so that
padding a sequence to a fixed bucket changes nothing over its valid part.

- `valid_mask`: 1 over the valid steps, 0 after (``[1, 1, T]``, float, for products).
- `MaskedBiLSTM`: upstream's bidirectional LSTMs; the backward direction starts at the true
  end (the valid part is reversed by a gather, run forward, and reversed back).
- `MaskedInstanceNorm`: instance norm whose statistics cover the valid steps only.
- `AdaIN1d`, `AdainResBlk1d`, `AdaINResBlock1`: upstream's style blocks, zeroing the padding
  before each convolution (a kernel that reaches past the true end then reads zeros, as the
  unpadded convolution's own padding does).

Weights keep upstream's names (``conv1.weight`` where upstream has a weight-normed
``conv1.weight_g``/``weight_v``: the checkpoint reader folds them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def upsample_nearest(x: Tensor, factor: int) -> Tensor:
    """``[B, C, T]`` → ``[B, C, factor * T]``, each step repeated (nearest-neighbour)."""
    b, c, t = x.shape
    return x.unsqueeze(-1).expand(b, c, t, factor).reshape(b, c, t * factor)


def valid_mask(length: Tensor, size: int, like: Tensor) -> Tensor:
    """``[1, 1, size]``: 1.0 where the step is below ``length`` (a ``[1]`` int tensor)."""
    steps = torch.arange(size, device=like.device).unsqueeze(0)
    return (steps < length.reshape(-1, 1)).to(like.dtype).unsqueeze(1)


def reverse_index(length: Tensor, size: int) -> Tensor:
    """``[size]`` indices reversing the first ``length`` steps and keeping the rest in place."""
    steps = torch.arange(size, device=length.device)
    last = length.reshape(()).to(steps.dtype) - 1
    return torch.where(steps <= last, last - steps, steps)


class MaskedBiLSTM(nn.Module):
    """A bidirectional one-layer LSTM over ``[1, T, C]`` whose backward pass starts at
    ``length``; outputs past ``length`` are zero (upstream's packed sequences)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.forward_lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(input_size, hidden_size, batch_first=True)

    def forward(self, x: Tensor, length: Tensor) -> Tensor:
        size = x.shape[1]
        mask = valid_mask(length, size, x).transpose(1, 2)
        index = reverse_index(length, size)
        ahead, _ = self.forward_lstm(x)
        back, _ = self.backward_lstm(torch.index_select(x, 1, index))
        back = torch.index_select(back, 1, index)
        return torch.cat([ahead, back], dim=-1) * mask


class MaskedInstanceNorm(nn.Module):
    """``InstanceNorm1d(affine=True)`` (biased variance, eps 1e-5) over the valid steps."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        count = mask.sum(dim=-1, keepdim=True)
        mean = (x * mask).sum(dim=-1, keepdim=True) / count
        centred = (x - mean) * mask
        var = (centred * centred).sum(dim=-1, keepdim=True) / count
        normed = (x - mean) * torch.rsqrt(var + self.eps)
        return normed * self.weight.reshape(1, -1, 1) + self.bias.reshape(1, -1, 1)


class AdaIN1d(nn.Module):
    """Instance norm scaled and shifted by the style: ``(1 + gamma) * norm(x) + beta``."""

    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.norm = MaskedInstanceNorm(channels)
        self.fc = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: Tensor, s: Tensor, mask: Tensor) -> Tensor:
        gamma, beta = self.fc(s).unsqueeze(-1).chunk(2, dim=1)
        out: Tensor = (1 + gamma) * self.norm(x, mask) + beta
        return out


def _padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class AdainResBlk1d(nn.Module):
    """StyleTTS2's residual block (two AdaIN + conv); ``upsample`` doubles time (nearest on
    the shortcut, a depthwise transposed conv on the residual)."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int, *, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = nn.Conv1d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv1d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN1d(style_dim, dim_in)
        self.norm2 = AdaIN1d(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = nn.Conv1d(dim_in, dim_out, 1, 1, 0, bias=False)
        if upsample:
            self.pool = nn.ConvTranspose1d(
                dim_in, dim_in, 3, stride=2, groups=dim_in, padding=1, output_padding=1
            )

    def forward(self, x: Tensor, s: Tensor, mask: Tensor, out_mask: Tensor) -> Tensor:
        """``mask`` covers ``x``'s valid steps, ``out_mask`` the output's (twice as many when
        upsampling)."""
        shortcut = x
        if self.upsample:
            shortcut = upsample_nearest(shortcut, 2)
        if self.learned_sc:
            shortcut = self.conv1x1(shortcut)
        h = F.leaky_relu(self.norm1(x, s, mask), 0.2)
        if self.upsample:
            h = self.pool(h * mask)
        h = self.conv1(h * out_mask)
        h = F.leaky_relu(self.norm2(h, s, out_mask), 0.2)
        h = self.conv2(h * out_mask)
        out: Tensor = (h + shortcut) * torch.rsqrt(torch.tensor(2.0))
        return out


class AdaINResBlock1(nn.Module):
    """The generator's residual block: three (AdaIN, Snake, dilated conv, AdaIN, Snake, conv)
    branches added in turn."""

    def __init__(
        self, channels: int, kernel: int, dilations: tuple[int, ...], style_dim: int
    ) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_padding(kernel, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, 1, dilation=1, padding=_padding(kernel))
            for _ in dilations
        )
        self.adain1 = nn.ModuleList(AdaIN1d(style_dim, channels) for _ in dilations)
        self.adain2 = nn.ModuleList(AdaIN1d(style_dim, channels) for _ in dilations)
        self.alpha1 = nn.ParameterList(nn.Parameter(torch.ones(1, channels, 1)) for _ in dilations)
        self.alpha2 = nn.ParameterList(nn.Parameter(torch.ones(1, channels, 1)) for _ in dilations)

    def forward(self, x: Tensor, s: Tensor, mask: Tensor) -> Tensor:
        for c1, c2, n1, n2, a1, a2 in zip(
            self.convs1,
            self.convs2,
            self.adain1,
            self.adain2,
            self.alpha1,
            self.alpha2,
            strict=True,
        ):
            xt = n1(x, s, mask)
            xt = xt + (1 / a1) * (torch.sin(a1 * xt) ** 2)
            xt = c1(xt * mask)
            xt = n2(xt, s, mask)
            xt = xt + (1 / a2) * (torch.sin(a2 * xt) ** 2)
            xt = c2(xt * mask)
            x = xt + x
        return x


__all__ = [
    "AdaIN1d",
    "AdaINResBlock1",
    "AdainResBlk1d",
    "MaskedBiLSTM",
    "MaskedInstanceNorm",
    "reverse_index",
    "upsample_nearest",
    "valid_mask",
]
