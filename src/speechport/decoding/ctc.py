"""Greedy CTC decoding."""

from __future__ import annotations

import numpy as np

from speechport.decoding.types import Hypothesis


def ctc_greedy(log_probs: np.ndarray, length: int, blank_id: int) -> Hypothesis:
    """Best-path CTC decoding of one utterance.

    Takes the argmax class of each of the first ``length`` frames of ``log_probs``
    (``[T, C]``; log-probabilities or raw logits), collapses runs of the same class and drops
    blanks. A token repeated across a blank is emitted twice. ``frames`` holds the first frame
    of each emitted run, as GigaAM's ``CTCGreedyDecoding`` computes it.
    """
    _check_ctc_args(log_probs, length, blank_id)
    labels = log_probs[:length].argmax(axis=-1)
    keep = labels != blank_id
    keep[1:] &= labels[1:] != labels[:-1]
    frames = np.flatnonzero(keep)
    return Hypothesis(token_ids=labels[frames].tolist(), frames=frames.tolist())


def _check_ctc_args(log_probs: np.ndarray, length: int, blank_id: int) -> None:
    """Reject shapes, lengths and blank ids that would silently decode garbage."""
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must be [T, C], got shape {log_probs.shape}")
    if not 0 <= length <= log_probs.shape[0]:
        raise ValueError(f"length {length} is outside [0, {log_probs.shape[0]}]")
    if not 0 <= blank_id < log_probs.shape[1]:
        raise ValueError(f"blank_id {blank_id} is outside [0, {log_probs.shape[1]})")
