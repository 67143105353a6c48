"""Striding subsampling front of a conformer encoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from speechport.nn.masks import conv_output_length, valid_mask


class _StridedStages(nn.Module):
    """Lengths through ``num_stages`` convolutions of one kernel, stride and padding."""

    kernel_size: int
    stride: int
    padding: int
    num_stages: int

    def frames_after(self, frames: int) -> int:
        """`output_length` for a plain Python int (no int32 overflow, for planning)."""
        for _ in range(self.num_stages):
            frames = (frames + 2 * self.padding - self.kernel_size) // self.stride + 1
        return frames

    def output_length(self, length: Tensor) -> Tensor:
        for _ in range(self.num_stages):
            length = conv_output_length(length, self.kernel_size, self.stride, self.padding)
        return length


class Conv1dSubsampling(_StridedStages):
    """Stacked 1-D convolutions with stride 2 and ReLU (GigaAM v3: x4 with kernel 5).

    Input ``[B, F, T]`` features, output ``[B, T', D]``. Padded frames are zeroed before
    every convolution, so a sequence padded into a longer window gives exactly the frames it
    gives alone (the convolution's own zero padding would see zeros there too).
    """

    def __init__(self, feat_in: int, d_model: int, *, kernel_size: int, num_stages: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = 2
        self.padding = (kernel_size - 1) // 2
        self.num_stages = num_stages
        layers: list[nn.Module] = []
        channels = feat_in
        for _ in range(num_stages):
            layers.append(
                nn.Conv1d(
                    channels,
                    d_model,
                    kernel_size=kernel_size,
                    stride=self.stride,
                    padding=self.padding,
                )
            )
            layers.append(nn.ReLU())
            channels = d_model
        self.conv = nn.Sequential(*layers)

    def forward(self, features: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        x = features
        x = x.masked_fill(~valid_mask(length, x.shape[2], x).unsqueeze(1), 0.0)
        for module in self.conv:
            x = module(x)
            if isinstance(module, nn.Conv1d):
                length = conv_output_length(length, self.kernel_size, self.stride, self.padding)
                x = x.masked_fill(~valid_mask(length, x.shape[2], x).unsqueeze(1), 0.0)
        return x.transpose(1, 2), length


class DepthwiseStridingSubsampling(_StridedStages):
    """NeMo's ``dw_striding`` subsampling (FastConformer): a 3x3 stride-2 ``Conv2d`` over
    (time, frequency) with ReLU, then ``log2(factor) - 1`` stages of depthwise 3x3 stride-2
    conv + pointwise conv + ReLU, then a linear projection of channels x frequencies to
    ``d_model``. Attribute names (``conv.0``, ``conv.2`` ... ``out``) match NeMo's state dict.

    Input ``[B, F, T]`` features, output ``[B, T', D]``; lengths with integer ops. Frames
    past each stage's valid length are zeroed before the next convolution, as NeMo 3.0 masks
    them, so a clip padded into a longer window gives exactly the frames it gives alone.
    """

    def __init__(
        self,
        feat_in: int,
        d_model: int,
        *,
        factor: int,
        channels: int,
    ) -> None:
        super().__init__()
        stages = factor.bit_length() - 1
        if factor < 2 or 1 << stages != factor:
            raise ValueError(f"subsampling factor {factor} is not a power of two >= 2")
        self.kernel_size, self.stride, self.padding = 3, 2, 1
        self.num_stages = stages
        layers: list[nn.Module] = [
            nn.Conv2d(1, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        ]
        for _ in range(stages - 1):
            layers += [
                nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1, groups=channels),
                nn.Conv2d(channels, channels, kernel_size=1),
                nn.ReLU(),
            ]
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(channels * self.frames_after(feat_in), d_model)  # frequencies

    def forward(self, features: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        length = length.to(torch.int32)
        x = _mask_time(features.transpose(1, 2).unsqueeze(1), length)  # [B, 1, T, F]
        for module in self.conv:
            x = module(x)
            if isinstance(module, nn.ReLU):  # the end of a stride-2 stage
                length = conv_output_length(length, self.kernel_size, self.stride, self.padding)
                x = _mask_time(x, length)
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f)), length


def _mask_time(x: Tensor, length: Tensor) -> Tensor:
    """Zero the frames of ``x`` ``[B, C, T, F]`` at or past ``length`` ``[B]``."""
    valid = valid_mask(length, x.shape[2], x)
    return x.masked_fill(~valid[:, None, :, None], 0.0)
