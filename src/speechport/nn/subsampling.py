"""Striding subsampling front of a conformer encoder."""

from __future__ import annotations

from torch import Tensor, nn

from speechport.nn.masks import conv_output_length, valid_mask


class Conv1dSubsampling(nn.Module):
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

    def frames_after(self, frames: int) -> int:
        """`output_length` for a plain Python int (no int32 overflow, for planning)."""
        for _ in range(self.num_stages):
            frames = (frames + 2 * self.padding - self.kernel_size) // self.stride + 1
        return frames

    def output_length(self, length: Tensor) -> Tensor:
        for _ in range(self.num_stages):
            length = conv_output_length(length, self.kernel_size, self.stride, self.padding)
        return length

    def forward(self, features: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        x = features
        x = x.masked_fill(~valid_mask(length, x.shape[2], x).unsqueeze(1), 0.0)
        for module in self.conv:
            x = module(x)
            if isinstance(module, nn.Conv1d):
                length = conv_output_length(length, self.kernel_size, self.stride, self.padding)
                x = x.masked_fill(~valid_mask(length, x.shape[2], x).unsqueeze(1), 0.0)
        return x.transpose(1, 2), length
