"""Result type and callable protocols shared by the decoding algorithms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

S = TypeVar("S")


@dataclass(slots=True)
class Hypothesis:
    """A decoded token sequence with the encoder frame of every token.

    Attributes:
        token_ids: emitted token ids, blanks excluded.
        frames: for each token, the index of the encoder frame it was emitted at (CTC: the
            first frame of its run).
        durations: for each token, the number of frames the TDT joint predicted for it;
            ``None`` for CTC and RNN-T.
    """

    token_ids: list[int]
    frames: list[int]
    durations: list[int] | None = None


class PredictFn(Protocol[S]):
    """One prediction-network step.

    Takes the previous token (the blank id at the start) and the predictor state, returns the
    decoder output vector for the joint and the new state. The state is opaque to the
    decoding loops (for example a tuple of arrays).
    """

    def __call__(self, token: int, state: S, /) -> tuple[np.ndarray, S]: ...


class JointFn(Protocol):
    """The joint network for one encoder frame and one decoder output.

    Returns raw 1-D logits: ``V + 1`` token logits (blank included) for RNN-T, followed by one
    logit per duration for TDT. Only their argmax matters, so log-softmax is optional.
    """

    def __call__(self, enc_t: np.ndarray, dec_out: np.ndarray, /) -> np.ndarray: ...
