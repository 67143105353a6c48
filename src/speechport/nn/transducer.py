"""Transducer heads: an LSTM prediction network with explicit state, and the joint; the
encoder, decoder-step and joint-step components every transducer family exports."""

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

    def zero_blank_row(self, why: str) -> list[str]:
        """Make the blank's embedding row zero (the bundle starts every window by feeding the
        blank, which equals upstream's fresh start only then). Returns a note if it was not
        (``why``: the upstream convention it restores)."""
        row = self.embed.weight.data[self.blank_id]
        if torch.count_nonzero(row) == 0:
            return []
        row.zero_()
        return [f"the blank embedding row was not zero; zeroed it ({why})"]


class RNNTJoint(nn.Module):
    """``joint_net(ReLU(enc(e) + pred(d)))``: raw logits over tokens + blank (+ durations)."""

    def __init__(self, enc_hidden: int, pred_hidden: int, joint_hidden: int, num_outputs: int):
        super().__init__()
        self.enc = nn.Linear(enc_hidden, joint_hidden)
        self.pred = nn.Linear(pred_hidden, joint_hidden)
        self.joint_net = nn.Sequential(nn.ReLU(), nn.Linear(joint_hidden, num_outputs))

    def forward(self, enc: Tensor, dec: Tensor) -> Tensor:
        """``enc [..., D]`` and ``dec [..., H]`` (broadcastable) -> logits ``[..., V]``."""
        logits: Tensor = self.joint_net(self.enc(enc) + self.pred(dec))
        return logits


class EncoderStep(nn.Module):
    """``features [1, F, T] f32, length [1] int -> encoded [1, D, T'], encoded_len [1]``
    (``length_dtype``, int32 by default)."""

    def __init__(self, encoder: nn.Module, *, length_dtype: torch.dtype = torch.int32) -> None:
        super().__init__()
        self.encoder = encoder
        self.length_dtype = length_dtype

    def forward(self, features: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        encoded, encoded_len = self.encoder(features, length.to(torch.int32))
        return encoded, encoded_len.to(self.length_dtype)


class DecoderStep(nn.Module):
    """``token [1, 1] int32, h/c [L, 1, H] -> dec_out [1, H], h', c'``."""

    def __init__(self, predictor: LSTMPredictor) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, token: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dec, h_out, c_out = self.predictor(token, h, c)
        return dec[:, 0, :], h_out, c_out


class JointStep(nn.Module):
    """``enc_t [1, D], dec_t [1, H] -> logits [1, V + 1 (+ durations)]``, raw (argmax-equivalent
    to the log-softmax upstream layouts return, one op cheaper)."""

    def __init__(self, joint: RNNTJoint) -> None:
        super().__init__()
        self.joint = joint

    def forward(self, enc_t: Tensor, dec_t: Tensor) -> Tensor:
        logits: Tensor = self.joint(enc_t, dec_t)
        return logits
