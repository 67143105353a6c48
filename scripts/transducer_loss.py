"""Transducer losses in plain torch: TDT (token-and-duration transducer) and RNN-T.

The negative log-likelihood of the labels, summed over every path through the T x (U + 1)
lattice by the forward algorithm in log space (float64). A path starts at frame 0 with no
label emitted and ends when a blank moves it exactly to frame ``T``:

- TDT (Parakeet): from ``(t, u)``, the joint gives log-probabilities over tokens + blank
  and, separately normalised, over the durations; label ``u`` with duration ``d`` moves to
  ``(t + d, u + 1)`` (any ``d``, 0 included), a blank with duration ``d`` to ``(t + d, u)``
  (``d >= 1`` only). The path's score is the sum of both log-probabilities of every step.
- RNN-T: label ``u`` moves to ``(t, u + 1)``, a blank to ``(t + 1, u)`` (TDT with token
  duration 0 and blank duration 1 and no duration head).

Vectorised over the batch and the label axis: the loop runs over frames; the moves within
a frame (duration 0) are a running log-sum-exp along the labels (``logcumsumexp`` of the
arrivals from earlier frames, shifted by the cumulative label scores). Checked against an
enumeration of every path on small lattices in tests/test_parakeet_longform.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_NEG = -1e30
# (duration, blank scores [B, T, U + 1] or None, label scores [B, T, U] or None)
Moves = Sequence[tuple[int, Tensor | None, Tensor | None]]


def tdt_loss(
    token_logits: Tensor,
    duration_logits: Tensor,
    labels: Tensor,
    frames: Tensor,
    label_lengths: Tensor,
    durations: Sequence[int],
    blank: int,
) -> Tensor:
    """Per-utterance negative log-likelihood ``[B]``.

    ``token_logits [B, T, U + 1, V + 1]`` and ``duration_logits [B, T, U + 1, N]`` are raw
    joint outputs; ``labels [B, U]`` (padded with any valid id), ``frames [B]`` and
    ``label_lengths [B]`` the valid sizes; ``durations`` the N durations (the first 0 or not).
    """
    tokens = torch.log_softmax(token_logits.double(), dim=-1)
    lengths = torch.log_softmax(duration_logits.double(), dim=-1)
    blank_lp, label_lp = _split(tokens, labels, blank)
    moves: Moves = [
        (
            int(d),
            blank_lp + lengths[..., n] if d >= 1 else None,
            label_lp + lengths[:, :, :-1, n],
        )
        for n, d in enumerate(durations)
    ]
    return _forward(moves, frames, label_lengths)


def rnnt_loss(
    logits: Tensor, labels: Tensor, frames: Tensor, label_lengths: Tensor, blank: int
) -> Tensor:
    """Per-utterance negative log-likelihood ``[B]`` of the RNN-T lattice (shapes as in
    `tdt_loss`, without durations)."""
    blank_lp, label_lp = _split(torch.log_softmax(logits.double(), dim=-1), labels, blank)
    return _forward([(0, None, label_lp), (1, blank_lp, None)], frames, label_lengths)


def _split(log_probs: Tensor, labels: Tensor, blank: int) -> tuple[Tensor, Tensor]:
    """Blank log-probabilities ``[B, T, U + 1]`` and those of the next label ``[B, T, U]``."""
    b, t, u1, _ = log_probs.shape
    if labels.shape != (b, u1 - 1):
        raise ValueError(f"labels {tuple(labels.shape)} do not fit logits {tuple(log_probs.shape)}")
    index = labels.to(torch.int64)[:, None, :, None].expand(b, t, u1 - 1, 1)
    return log_probs[..., blank], log_probs[:, :, :-1, :].gather(-1, index)[..., 0]


def _forward(moves: Moves, frames: Tensor, label_lengths: Tensor) -> Tensor:
    """``moves``: (duration, blank scores [B, T, U + 1] or None, label scores [B, T, U] or
    None). Returns ``-log P`` per utterance."""
    blanks = [b for _, b, _ in moves if b is not None]
    batch, total, u1 = blanks[0].shape
    neg = torch.full((batch, 1), _NEG, dtype=torch.float64)
    start = torch.full((batch, u1), _NEG, dtype=torch.float64)
    start[:, 0] = 0.0
    alphas: list[Tensor] = []
    for t in range(total):
        arrivals = [start if t == 0 else torch.full_like(start, _NEG)]
        for d, blank, label in moves:
            if d == 0 or t - d < 0:
                continue
            prev = alphas[t - d]
            if blank is not None:
                arrivals.append(prev + blank[:, t - d])
            if label is not None:
                arrivals.append(torch.cat([neg, prev[:, :-1] + label[:, t - d]], dim=1))
        here = torch.logsumexp(torch.stack(arrivals), dim=0)
        stay = [label for d, _, label in moves if d == 0 and label is not None]
        if stay:  # alpha[u] = logaddexp(here[u], alpha[u - 1] + stay[u - 1])
            run = torch.cat([neg.new_zeros(batch, 1), torch.cumsum(stay[0][:, t], dim=1)], dim=1)
            here = run + torch.logcumsumexp(here - run, dim=1)
        alphas.append(here)
    alpha = torch.stack(alphas, dim=1)  # [B, T, U + 1]
    rows = torch.arange(batch)
    ends = label_lengths.to(torch.int64)
    finals = []
    for d, blank, _ in moves:
        if blank is None or d < 1:
            continue
        last = frames.to(torch.int64) - d  # the frame a final blank of duration d leaves
        at = last.clamp(min=0)
        score = alpha[rows, at, ends] + blank[rows, at, ends]
        finals.append(torch.where(last >= 0, score, torch.full_like(score, _NEG)))
    return -torch.logsumexp(torch.stack(finals), dim=0)
