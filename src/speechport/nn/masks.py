"""Length arithmetic and time masks, in integer ops that trace to Core ML and ONNX."""

from __future__ import annotations

import torch
from torch import Tensor


def conv_output_length(length: Tensor, kernel_size: int, stride: int, padding: int) -> Tensor:
    """Frames after a strided convolution: ``(L + 2p - k) // s + 1`` in int32.

    Integer ops only: fp16 cannot hold every integer above 2048, so a float formula
    computed in fp16 returns an off-by-one length for long windows.
    """
    length = length.to(torch.int32)
    return torch.div(length + (2 * padding - kernel_size), stride, rounding_mode="floor") + 1


def valid_mask(length: Tensor, max_len: int, like: Tensor) -> Tensor:
    """``[B, T]`` bool, true for frames before each sequence's length."""
    time = torch.arange(max_len, device=like.device, dtype=torch.int32)
    return time.unsqueeze(0) < length.to(torch.int32).unsqueeze(1)
