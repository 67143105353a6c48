"""The table of decoding algorithms: one entry per name a manifest's ``decoding.algorithm``
may hold, shared by the transcriber, ``verify`` and the benchmarks.

An entry says what the algorithm needs (a prediction network and a joint, or only the
encoder's per-frame distribution), how the encoder lays out its output, how many trailing
joint logits are durations, and runs the search on plain arrays and callables. Adding an
algorithm means adding an entry here; nothing else compares algorithm names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from speechport.decoding.ctc import ctc_greedy
from speechport.decoding.transducer import rnnt_greedy, tdt_greedy
from speechport.decoding.types import Hypothesis, JointFn, PredictFn
from speechport.errors import BundleError


@dataclass(frozen=True)
class DecodeSettings:
    """The manifest's decoding numbers an algorithm may use."""

    blank_id: int
    max_symbols_per_frame: int = 10
    durations: tuple[int, ...] = ()


# (frames [T, D] or [T, V], valid length, settings, predict, joint, initial state) -> tokens
SearchFn = Callable[
    [np.ndarray, int, DecodeSettings, "PredictFn[Any] | None", "JointFn | None", Any],
    Hypothesis,
]


@dataclass(frozen=True)
class DecodingAlgorithm:
    """One decoding algorithm.

    ``transducer``: it calls a prediction network (``decoder_step`` component) and a joint
    (``joint`` component); otherwise it reads the encoder's per-frame distribution alone.
    ``frames_first``: the encoder output is ``[1, T, D]`` (CTC log-probabilities); otherwise
    ``[1, D, T]`` (transducer encodings). ``search`` decodes the first ``length`` frames.
    """

    name: str
    transducer: bool
    frames_first: bool
    search: SearchFn
    description: str = ""

    def time_major(self, encoder_output: np.ndarray) -> np.ndarray:
        """The first batch item of an encoder output as ``[frames, features]``."""
        first: np.ndarray = encoder_output[0]
        return first if self.frames_first else first.T

    def duration_logits(self, settings: DecodeSettings) -> int:
        """How many trailing joint logits are durations (normalised apart from the tokens)."""
        return len(settings.durations) if self.transducer else 0


def _ctc(
    frames: np.ndarray,
    length: int,
    s: DecodeSettings,
    predict: PredictFn[Any] | None,
    joint: JointFn | None,
    initial_state: Any,
) -> Hypothesis:
    return ctc_greedy(frames, length, s.blank_id)


def _rnnt(
    frames: np.ndarray,
    length: int,
    s: DecodeSettings,
    predict: PredictFn[Any] | None,
    joint: JointFn | None,
    initial_state: Any,
) -> Hypothesis:
    assert predict is not None and joint is not None
    return rnnt_greedy(
        frames,
        length,
        predict,
        joint,
        blank_id=s.blank_id,
        initial_state=initial_state,
        max_symbols_per_frame=s.max_symbols_per_frame,
    )


def _tdt(
    frames: np.ndarray,
    length: int,
    s: DecodeSettings,
    predict: PredictFn[Any] | None,
    joint: JointFn | None,
    initial_state: Any,
) -> Hypothesis:
    assert predict is not None and joint is not None
    return tdt_greedy(
        frames,
        length,
        predict,
        joint,
        blank_id=s.blank_id,
        durations=s.durations,
        initial_state=initial_state,
        max_symbols_per_frame=s.max_symbols_per_frame,
    )


DECODERS: dict[str, DecodingAlgorithm] = {
    a.name: a
    for a in (
        DecodingAlgorithm(
            "ctc_greedy",
            False,
            True,
            _ctc,
            "Greedy CTC: argmax per frame, collapse repeats, drop blanks.",
        ),
        DecodingAlgorithm(
            "rnnt_greedy",
            True,
            False,
            _rnnt,
            "Greedy RNN-T: start from the blank token with zero state; per encoder frame, "
            "argmax of the joint; a blank moves to the next frame, any other token is emitted "
            "and fed to the decoder step (at most max_symbols_per_frame per frame).",
        ),
        DecodingAlgorithm(
            "tdt_greedy",
            True,
            False,
            _tdt,
            "Greedy TDT: per step the joint gives a token and a duration; the duration "
            "(at least one frame after a blank) says how many frames to skip.",
        ),
    )
}


def decoding_algorithm(name: str) -> DecodingAlgorithm:
    """The table entry for ``name``."""
    try:
        return DECODERS[name]
    except KeyError:
        raise BundleError(
            f"unknown decoding algorithm {name!r}; known: {', '.join(DECODERS)}",
            hint="this bundle needs a newer speechport, or its manifest is damaged",
        ) from None
