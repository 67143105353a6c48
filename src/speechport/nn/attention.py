"""Multi-head self-attention variants and their positional encodings."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

MASK_VALUE = -10000.0  # finite, so fp16 programs hold it; exp() of it underflows to 0


class RotaryEmbedding(nn.Module):
    """Rotary position tables (cos, sin) of shape ``[max_len, dim]``, computed in float32.

    Built the way GigaAM builds them (``inv_freq = 1 / base^(2i/dim)``, angles ``t * inv_freq``
    duplicated over both halves), so the float32 values are bit-identical to upstream's.
    """

    cos: Tensor
    sin: Tensor

    def __init__(self, dim: int, base: float, max_len: int) -> None:
        super().__init__()
        self.dim = dim
        self.base = base
        self.max_len = max_len
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        t = torch.arange(max_len, dtype=torch.float32)
        freqs = torch.einsum("i,j->ij", t, inv_freq)
        angles = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def first(self, max_len: int) -> RotaryEmbedding:
        """The same tables cut to their first ``max_len`` positions (the same values): what a
        program with a bounded time axis needs to keep."""
        twin = RotaryEmbedding(self.dim, self.base, min(max_len, self.max_len))
        twin.cos = self.cos[: twin.max_len].clone()  # sliced: bit for bit this table's rows
        twin.sin = self.sin[: twin.max_len].clone()
        return twin

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Tables for the ``T = x.shape[1]`` positions of ``x`` ``[B, T, D]``."""
        length = x.shape[1]
        return self.cos[:length], self.sin[:length]


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` ``[B, T, H, d]`` by position; ``cos``/``sin`` are ``[T, d]``."""
    cos = cos.unsqueeze(1).to(x.dtype)
    sin = sin.unsqueeze(1).to(x.dtype)
    return x * cos + rotate_half(x) * sin


class MultiHeadAttention(nn.Module):
    """Projections and masked scaled dot-product attention shared by the variants."""

    def __init__(self, n_heads: int, d_model: int, *, bias: bool = True) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.h = n_heads
        self.d_k = d_model // n_heads
        self.linear_q = nn.Linear(d_model, d_model, bias=bias)
        self.linear_k = nn.Linear(d_model, d_model, bias=bias)
        self.linear_v = nn.Linear(d_model, d_model, bias=bias)
        self.linear_out = nn.Linear(d_model, d_model, bias=bias)

    def heads(self, x: Tensor) -> Tensor:
        """``[B, T, D]`` -> ``[B, H, T, d]``."""
        b = x.shape[0]
        return x.view(b, -1, self.h, self.d_k).transpose(1, 2)

    def attend(self, scores: Tensor, value: Tensor, key_valid: Tensor) -> Tensor:
        """Softmax over valid keys only, then the output projection. ``value`` is ``[B,H,T,d]``."""
        scores = scores.masked_fill(~key_valid[:, None, None, :], MASK_VALUE)
        attn = torch.softmax(scores, dim=-1)
        out = torch.matmul(attn, value)
        b = out.shape[0]
        projected: Tensor = self.linear_out(out.transpose(1, 2).reshape(b, -1, self.h * self.d_k))
        return projected


class RotaryMultiHeadAttention(MultiHeadAttention):
    """GigaAM v3 attention: rotary encoding applied to the (normed) input before the q/k
    projections, not to the projected queries and keys."""

    def forward(self, x: Tensor, pos: tuple[Tensor, Tensor], key_valid: Tensor) -> Tensor:
        cos, sin = pos
        b, t, d = x.shape
        per_head = x.view(b, t, self.h, self.d_k)
        rotated = apply_rotary(per_head, cos, sin).reshape(b, t, d)
        q = self.heads(self.linear_q(rotated))
        k = self.heads(self.linear_k(rotated))
        v = self.heads(self.linear_v(x))
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        return self.attend(scores, v, key_valid)
