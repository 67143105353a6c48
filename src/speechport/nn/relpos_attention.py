"""Transformer-XL relative-position self-attention, as NeMo's FastConformer computes it.

Scores are ``((q + u) k^T + rel_shift((q + v) p^T)) / sqrt(d_k)`` where ``p`` is the
projection (``linear_pos``, no bias) of sinusoidal embeddings of the relative positions
``T-1 .. -(T-1)``, and ``u``/``v`` are per-layer learned biases (``pos_bias_u``,
``pos_bias_v``; "untied": one pair per layer). The relative shift is the pad-and-reshape
trick, which traces to plain reshapes and slices.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from speechport.nn.attention import MultiHeadAttention


def relative_positions_table(d_model: int, max_len: int) -> Tensor:
    """``[2 * max_len - 1, d_model]`` float32: the embeddings of positions ``max_len - 1``
    down to ``-(max_len - 1)``, computed as NeMo's ``RelPositionalEncoding.create_pe`` does
    (same float32 products, so the values are identical, not merely close)."""
    positions = torch.arange(max_len - 1, -max_len, -1, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model)
    )
    table = torch.zeros(positions.shape[0], d_model)
    table[:, 0::2] = torch.sin(positions * div_term)
    table[:, 1::2] = torch.cos(positions * div_term)
    return table


class RelPositionalEncoding(nn.Module):
    """Scales the input by ``sqrt(d_model)`` when ``xscale`` and returns the relative
    position embeddings ``[1, 2T - 1, D]`` of a ``T``-frame input.

    ``max_len`` bounds ``T``: a fixed-window export needs only its window's frames (the
    table is a constant of the program); an export with a dynamic time axis keeps the
    upstream ``pos_emb_max_len``.
    """

    pe: Tensor

    def __init__(self, d_model: int, max_len: int, *, xscale: bool = False) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.xscale = math.sqrt(d_model) if xscale else None
        self.register_buffer(
            "pe", relative_positions_table(d_model, max_len).unsqueeze(0), persistent=False
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.xscale is not None:
            x = x * self.xscale
        length = x.shape[1]
        center = self.max_len - 1  # index of position 0
        return x, self.pe[:, center - length + 1 : center + length]


def rel_shift(x: Tensor) -> Tensor:
    """``[B, H, T, 2T-1]`` scores by relative position -> ``[B, H, T, 2T-1]`` where column
    ``j < T`` holds the score of key ``j`` (Transformer-XL's shift)."""
    b, h, t, p = x.shape
    x = nn.functional.pad(x, (1, 0))
    x = x.view(b, h, p + 1, t)
    return x[:, :, 1:].reshape(b, h, t, p)


class RelPositionMultiHeadAttention(MultiHeadAttention):
    """NeMo's ``RelPositionMultiHeadAttention`` (attribute names match its state dict)."""

    def __init__(self, n_heads: int, d_model: int, *, bias: bool = True) -> None:
        super().__init__(n_heads, d_model, bias=bias)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(n_heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(n_heads, self.d_k))

    def forward(self, x: Tensor, pos_emb: Tensor, key_valid: Tensor) -> Tensor:
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.h, self.d_k)
        k = self.heads(self.linear_k(x))
        v = self.heads(self.linear_v(x))
        p = self.linear_pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        matrix_ac = torch.matmul(q_u, k.transpose(-2, -1))
        matrix_bd = rel_shift(torch.matmul(q_v, p.transpose(-2, -1)))[:, :, :, :t]
        scores = (matrix_ac + matrix_bd) / math.sqrt(self.d_k)
        return self.attend(scores, v, key_valid)
