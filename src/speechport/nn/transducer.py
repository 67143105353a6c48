"""Transducer heads: an LSTM prediction network with explicit state, and the joint."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LSTMPredictor(nn.Module):
    """Embedding + LSTM, one step at a time with the state passed in and out.

    The blank id indexes an all-zero embedding row, so feeding ``blank`` with a zero state
    reproduces the "no previous label" start that upstream implementations use.
    """

    def __init__(self, num_classes: int, hidden: int, num_layers: int, *, blank_id: int) -> None:
        super().__init__()
        self.blank_id = blank_id
        self.hidden = hidden
        self.num_layers = num_layers
        self.embed = nn.Embedding(num_classes, hidden, padding_idx=blank_id)
        self.lstm = nn.LSTM(hidden, hidden, num_layers)

    def forward(self, token: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``token [B, 1]`` int, ``h``/``c`` ``[L, B, H]`` -> ``dec [B, 1, H]``, ``h'``, ``c'``."""
        emb = self.embed(token.to(torch.int64))  # [B, 1, H]
        out, (h_out, c_out) = self.lstm(emb.transpose(0, 1), (h, c))
        return out.transpose(0, 1), h_out, c_out


class RNNTJoint(nn.Module):
    """``joint_net(ReLU(enc(e) + pred(d)))``: raw logits over tokens + blank (+ durations)."""

    def __init__(self, enc_hidden: int, pred_hidden: int, joint_hidden: int, num_outputs: int):
        super().__init__()
        self.enc = nn.Linear(enc_hidden, joint_hidden)
        self.pred = nn.Linear(pred_hidden, joint_hidden)
        self.joint_net = nn.Sequential(nn.ReLU(), nn.Linear(joint_hidden, num_outputs))

    def forward(self, enc: Tensor, dec: Tensor) -> Tensor:
        """``enc [..., D]`` and ``dec [..., H]`` (broadcastable) -> logits ``[..., V]``."""
        return self.joint_net(self.enc(enc) + self.pred(dec))
