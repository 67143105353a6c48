"""Greedy decoding for transducers: RNN-T and TDT (token-and-duration transducer).

Both loops run once per encoder frame in Python, so each step does only what it must: one
joint call, one argmax, and a prediction-network call only when its input changed. The
predictor is called lazily, right before the joint needs its output, and only after a
non-blank emission; its output is reused across blank frames. The sequence of
``(token, state)`` pairs it sees is therefore exactly the upstream loops' sequence with the
repeated recomputations removed: no extra call at the end, none when ``length`` is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic

import numpy as np

from speechport.decoding.types import Hypothesis, JointFn, PredictFn, S


@dataclass
class Carry(Generic[S]):
    """Where a greedy transducer search stands between two calls: the last token fed to
    the prediction network, its state before that token, and its output (``None`` until
    the network has seen the token). A stream decoded chunk by chunk carries it over."""

    token: int
    state: S
    dec_out: np.ndarray | None = None


def rnnt_greedy(
    encoded: np.ndarray,
    length: int,
    predict: PredictFn[S],
    joint: JointFn,
    *,
    blank_id: int,
    initial_state: S,
    max_symbols_per_frame: int = 10,
) -> Hypothesis:
    """Greedy RNN-T decoding of one utterance (GigaAM's and NeMo's greedy loop).

    ``encoded`` is ``[T, D]``; only its first ``length`` frames are decoded. Starting from the
    blank token and ``initial_state``, for each frame: take ``k = argmax(joint(enc_t,
    dec_out))``; a blank moves to the next frame; any other token is emitted at this frame
    and fed to the predictor. After ``max_symbols_per_frame`` emissions on one frame the loop
    moves to the next frame without asking the joint again.
    """
    hypothesis, _ = rnnt_greedy_resume(
        encoded,
        length,
        predict,
        joint,
        blank_id=blank_id,
        carry=Carry(blank_id, initial_state),
        max_symbols_per_frame=max_symbols_per_frame,
    )
    return hypothesis


def rnnt_greedy_resume(
    encoded: np.ndarray,
    length: int,
    predict: PredictFn[S],
    joint: JointFn,
    *,
    blank_id: int,
    carry: Carry[S],
    max_symbols_per_frame: int = 10,
) -> tuple[Hypothesis, Carry[S]]:
    """`rnnt_greedy` from where ``carry`` left off (streaming: one chunk of frames per call,
    the decoder state carried across chunks, as NeMo's streaming greedy does with its
    previous hypotheses). Frames in the result are indices into ``encoded``."""
    _check_common(encoded, length, max_symbols_per_frame)
    token_ids: list[int] = []
    frames: list[int] = []
    emit_token = token_ids.append
    emit_frame = frames.append
    token = carry.token
    state = carry.state
    dec_out = carry.dec_out  # None: the predictor has not seen `token` yet
    for t in range(length):
        enc_t = encoded[t]
        for _ in range(max_symbols_per_frame):
            if dec_out is None:
                dec_out, state = predict(token, state)
            k = int(joint(enc_t, dec_out).argmax())
            if k == blank_id:
                break
            emit_token(k)
            emit_frame(t)
            token = k
            dec_out = None
    return Hypothesis(token_ids=token_ids, frames=frames), Carry(token, state, dec_out)


def tdt_greedy(
    encoded: np.ndarray,
    length: int,
    predict: PredictFn[S],
    joint: JointFn,
    *,
    blank_id: int,
    durations: Sequence[int],
    initial_state: S,
    max_symbols_per_frame: int = 10,
) -> Hypothesis:
    """Greedy TDT decoding of one utterance, with NeMo's label-looping rules.

    The joint returns token logits (blank included, blank last in NeMo models) followed by one
    logit per entry of ``durations``. At frame ``t`` (starting at 0, while ``t < length``):

    - the token is the argmax of the token logits, the duration ``d`` is
      ``durations[argmax of the duration logits]``;
    - a blank moves ``t`` forward by ``d``, or by 1 when ``d`` is 0;
    - a non-blank token is emitted at frame ``t`` with duration ``d`` (recorded as predicted,
      0 included), is fed to the predictor, and ``t`` moves forward by ``d``; a token is
      emitted even when ``t + d`` runs past ``length``;
    - a token with ``d == 0`` keeps decoding on the same frame; once ``max_symbols_per_frame``
      tokens have been emitted at one frame and the last of them has ``d == 0``, ``t`` is
      forced forward by 1. Blanks never count toward that limit.

    These are the rules of NeMo's default TDT decoder (``greedy_batch``:
    ``GreedyBatchedTDTLabelLoopingComputer`` in
    ``nemo/collections/asr/parts/submodules/transducer_decoding/tdt_label_looping.py``).
    NeMo's per-utterance ``GreedyTDTInfer`` (strategy ``greedy``) gives the same result except
    in one corner: when the ``max_symbols_per_frame``-th joint step at a frame has ``d > 0``,
    it skips one extra frame.
    """
    _check_common(encoded, length, max_symbols_per_frame)
    duration_of = _check_durations(durations)
    num_durations = len(duration_of)
    token_ids: list[int] = []
    frames: list[int] = []
    token_durations: list[int] = []
    token = blank_id
    state = initial_state
    dec_out: np.ndarray | None = None  # None: the predictor has not seen `token` yet
    emitted_here = 0  # tokens emitted at frame `t` so far
    t = 0
    while t < length:
        if dec_out is None:
            dec_out, state = predict(token, state)
        logits = joint(encoded[t], dec_out)
        k = int(logits[:-num_durations].argmax())
        d = duration_of[int(logits[-num_durations:].argmax())]
        if k == blank_id:
            t += d or 1
            emitted_here = 0
            continue
        token_ids.append(k)
        frames.append(t)
        token_durations.append(d)
        token = k
        dec_out = None
        if d:
            t += d
            emitted_here = 0
            continue
        emitted_here += 1
        if emitted_here >= max_symbols_per_frame:
            t += 1
            emitted_here = 0
    return Hypothesis(token_ids=token_ids, frames=frames, durations=token_durations)


def _check_common(encoded: np.ndarray, length: int, max_symbols_per_frame: int) -> None:
    """Reject arguments that would decode the wrong frames or loop without end."""
    if encoded.ndim != 2:
        raise ValueError(f"encoded must be [T, D], got shape {encoded.shape}")
    if not 0 <= length <= encoded.shape[0]:
        raise ValueError(f"length {length} is outside [0, {encoded.shape[0]}]")
    if max_symbols_per_frame < 1:
        raise ValueError(f"max_symbols_per_frame must be >= 1, got {max_symbols_per_frame}")


def _check_durations(durations: Sequence[int]) -> tuple[int, ...]:
    """Validate the TDT duration table; return it as a tuple of Python ints."""
    table = tuple(int(d) for d in durations)
    if not table:
        raise ValueError("durations must not be empty")
    if min(table) < 0:
        raise ValueError(f"durations must be >= 0, got {list(table)}")
    return table
