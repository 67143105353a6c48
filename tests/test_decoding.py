"""Tests for speechport.decoding: CTC, RNN-T and TDT greedy loops on toy callables.

The toy predictor's state is the tuple of tokens it has consumed, and its output is that
history as an array; encoder frame ``t`` is the array ``[t]``. So a joint sees exactly
(frame, history) and a scripted joint can decide by (frame, number of emissions so far).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechport.decoding import Hypothesis, ctc_greedy, rnnt_greedy, tdt_greedy

History = tuple[int, ...]
Script = dict[tuple[int, int], int]
TdtScript = dict[tuple[int, int], tuple[int, int]]


# --------------------------------------------------------------------------- toy callables


class ToyPredictor:
    """Records every (token, state) call; the new state is the history plus the token."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, History]] = []

    def __call__(self, token: int, state: History) -> tuple[np.ndarray, History]:
        self.calls.append((token, state))
        history = (*state, token)
        return np.array(history, dtype=np.float64), history


class RecordingJoint:
    """Wraps a function of (frame, history) into a joint that records its calls."""

    def __init__(self, logits_for: Callable[[int, History], np.ndarray]) -> None:
        self.logits_for = logits_for
        self.calls: list[tuple[int, History]] = []

    def __call__(self, enc_t: np.ndarray, dec_out: np.ndarray) -> np.ndarray:
        key = (int(enc_t[0]), tuple(int(x) for x in dec_out))
        self.calls.append(key)
        return self.logits_for(*key)


def frames_array(num_frames: int) -> np.ndarray:
    """Encoder output whose frame t is the vector [t]."""
    return np.arange(num_frames, dtype=np.float64)[:, None]


def one_hot(index: int, size: int) -> np.ndarray:
    logits = np.full(size, -3.0)
    logits[index] = 2.0
    return logits


def scripted_rnnt_joint(script: Script, num_classes: int, blank_id: int) -> RecordingJoint:
    """Emit script[(frame, emissions so far)], blank where the script is silent."""

    def logits_for(t: int, history: History) -> np.ndarray:
        return one_hot(script.get((t, len(history) - 1), blank_id), num_classes)

    return RecordingJoint(logits_for)


def scripted_tdt_joint(
    script: TdtScript, num_classes: int, blank_id: int, durations: Sequence[int]
) -> RecordingJoint:
    """Emit (token, duration value) = script[(frame, emissions so far)]; default blank/1."""

    def logits_for(t: int, history: History) -> np.ndarray:
        token, duration = script.get((t, len(history) - 1), (blank_id, 1))
        return np.concatenate(
            [one_hot(token, num_classes), one_hot(list(durations).index(duration), len(durations))]
        )

    return RecordingJoint(logits_for)


def random_joint(
    seed: int, num_classes: int, blank_id: int, p_blank: float, num_durations: int = 0
) -> RecordingJoint:
    """A deterministic pseudo-random joint: the logits are a function of (frame, history)."""

    def logits_for(t: int, history: History) -> np.ndarray:
        rng = np.random.default_rng([seed, t, *history])
        token = blank_id if rng.random() < p_blank else int(rng.integers(num_classes))
        logits = rng.standard_normal(num_classes + num_durations)
        logits[token] = 10.0
        if num_durations:
            logits[num_classes + int(rng.integers(num_durations))] = 10.0
        return logits

    return RecordingJoint(logits_for)


def dedupe_consecutive(calls: list[tuple[int, History]]) -> list[tuple[int, History]]:
    return [key for key, _ in itertools.groupby(calls)]


# --------------------------------------------------------------------------- reference loops


def reference_rnnt(
    encoded: np.ndarray,
    length: int,
    predict: ToyPredictor,
    joint: RecordingJoint,
    blank_id: int,
    max_symbols: int,
) -> Hypothesis:
    """GigaAM's RNNTGreedyDecoding._greedy_decode: recompute predict before every joint."""
    token_ids: list[int] = []
    frames: list[int] = []
    last_label, dec_state = blank_id, cast(History, ())
    for t in range(length):
        new_symbols = 0
        not_blank = True
        while not_blank and new_symbols < max_symbols:
            g, hidden = predict(last_label, dec_state)
            k = int(np.argmax(joint(encoded[t], g)))
            if k == blank_id:
                not_blank = False
            else:
                token_ids.append(k)
                frames.append(t)
                dec_state, last_label = hidden, k
                new_symbols += 1
    return Hypothesis(token_ids, frames)


def reference_tdt_label_looping(
    encoded: np.ndarray,
    length: int,
    predict: ToyPredictor,
    joint: RecordingJoint,
    blank_id: int,
    durations: Sequence[int],
    max_symbols: int,
) -> Hypothesis:
    """NeMo's TDT label-looping rules, one utterance, recomputing predict every step."""
    n = len(durations)
    token_ids: list[int] = []
    frames: list[int] = []
    token_durations: list[int] = []
    last_label, dec_state = blank_id, cast(History, ())
    last_timestamp, last_timestamp_lasts = -1, 0
    t = 0
    while t < length:
        g, hidden = predict(last_label, dec_state)
        logits = joint(encoded[t], g)
        k = int(np.argmax(logits[:-n]))
        d = durations[int(np.argmax(logits[-n:]))]
        if k == blank_id:
            t += 1 if d == 0 else d
            continue
        token_ids.append(k)
        frames.append(t)
        token_durations.append(d)
        dec_state, last_label = hidden, k
        last_timestamp_lasts = last_timestamp_lasts + 1 if last_timestamp == t else 1
        last_timestamp = t
        t += d
        if last_timestamp_lasts >= max_symbols and last_timestamp == t:
            t += 1
    return Hypothesis(token_ids, frames, token_durations)


def reference_tdt_per_utterance(
    encoded: np.ndarray,
    length: int,
    predict: ToyPredictor,
    joint: RecordingJoint,
    blank_id: int,
    durations: Sequence[int],
    max_symbols: int,
) -> tuple[Hypothesis, bool]:
    """NeMo's GreedyTDTInfer._greedy_decode; also says whether its extra-skip corner fired."""
    n = len(durations)
    token_ids: list[int] = []
    frames: list[int] = []
    token_durations: list[int] = []
    last_label, dec_state = blank_id, cast(History, ())
    extra_skip = False
    time_idx = 0
    while time_idx < length:
        symbols_added = 0
        need_loop = True
        skip = 0
        while need_loop and symbols_added < max_symbols:
            g, hidden = predict(last_label, dec_state)
            logits = joint(encoded[time_idx], g)
            k = int(np.argmax(logits[:-n]))
            skip = durations[int(np.argmax(logits[-n:]))]
            if k != blank_id:
                token_ids.append(k)
                frames.append(time_idx)
                token_durations.append(skip)
                dec_state, last_label = hidden, k
            symbols_added += 1
            time_idx += skip
            need_loop = skip == 0
        if symbols_added == max_symbols:
            extra_skip = extra_skip or skip > 0
            time_idx += 1
    return Hypothesis(token_ids, frames, token_durations), extra_skip


# --------------------------------------------------------------------------- CTC


def ctc_log_probs(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Log-probabilities whose per-frame argmax is `labels`."""
    log_probs = np.full((len(labels), num_classes), np.log(0.1 / (num_classes - 1)))
    log_probs[np.arange(len(labels)), labels] = np.log(0.9)
    return log_probs


LABELS = [1, 1, 0, 1, 2, 2, 0, 0, 3, 3]  # blank = 0


@pytest.mark.parametrize(
    ("length", "ids", "frames"),
    [
        (10, [1, 1, 2, 3], [0, 3, 4, 8]),
        (9, [1, 1, 2, 3], [0, 3, 4, 8]),
        (8, [1, 1, 2], [0, 3, 4]),
        (4, [1, 1], [0, 3]),
        (1, [1], [0]),
        (0, [], []),
    ],
)
def test_ctc_collapses_repeats_drops_blanks_and_truncates(
    length: int, ids: list[int], frames: list[int]
) -> None:
    hyp = ctc_greedy(ctc_log_probs(LABELS, 5), length, blank_id=0)
    assert hyp == Hypothesis(token_ids=ids, frames=frames, durations=None)


def test_ctc_blank_last_as_in_gigaam() -> None:
    labels = [4, 2, 2, 4, 2, 3, 0, 0, 4]
    hyp = ctc_greedy(ctc_log_probs(labels, 5), len(labels), blank_id=4)
    assert hyp.token_ids == [2, 2, 3, 0]
    assert hyp.frames == [1, 4, 5, 6]


def test_ctc_repeat_without_blank_is_one_token() -> None:
    hyp = ctc_greedy(ctc_log_probs([2, 2, 2], 3), 3, blank_id=0)
    assert (hyp.token_ids, hyp.frames) == ([2], [0])


def test_ctc_all_blank_is_empty() -> None:
    hyp = ctc_greedy(ctc_log_probs([0] * 6, 3), 6, blank_id=0)
    assert (hyp.token_ids, hyp.frames) == ([], [])


def test_ctc_returns_python_ints() -> None:
    hyp = ctc_greedy(ctc_log_probs([1, 2], 3), 2, blank_id=0)
    assert all(type(x) is int for x in hyp.token_ids + hyp.frames)


@given(
    labels=st.lists(st.integers(0, 3), max_size=30),
    blank_id=st.integers(0, 3),
    data=st.data(),
)
def test_ctc_matches_naive_run_collapse(
    labels: list[int], blank_id: int, data: st.DataObject
) -> None:
    length = data.draw(st.integers(0, len(labels)))
    runs: list[tuple[int, int]] = []  # (label, first frame) of each run
    for t, label in enumerate(labels[:length]):
        if not runs or label != labels[t - 1]:
            runs.append((label, t))
    expected = [(label, t) for label, t in runs if label != blank_id]
    hyp = ctc_greedy(ctc_log_probs(labels, 4), length, blank_id)
    assert list(zip(hyp.token_ids, hyp.frames, strict=True)) == expected


@pytest.mark.parametrize(
    ("shape", "length", "blank_id"), [((4, 3), 5, 0), ((4, 3), -1, 0), ((4, 3), 4, 3), ((4,), 2, 0)]
)
def test_ctc_rejects_bad_arguments(shape: tuple[int, ...], length: int, blank_id: int) -> None:
    with pytest.raises(ValueError):
        ctc_greedy(np.zeros(shape), length, blank_id)


# --------------------------------------------------------------------------- RNN-T

RNNT_SCRIPT: Script = {(0, 0): 1, (0, 1): 2, (2, 2): 2, (3, 3): 3, (4, 4): 0}


def test_rnnt_scripted_sequence() -> None:
    predict, joint = ToyPredictor(), scripted_rnnt_joint(RNNT_SCRIPT, 5, blank_id=4)
    hyp = rnnt_greedy(frames_array(6), 5, predict, joint, blank_id=4, initial_state=())
    assert hyp == Hypothesis(token_ids=[1, 2, 2, 3, 0], frames=[0, 0, 2, 3, 4], durations=None)
    # frame 1 reuses the decoder output of frame 0: one joint call per emission or blank
    assert [t for t, _ in joint.calls] == [0, 0, 0, 1, 2, 2, 3, 3, 4, 4]


def test_rnnt_predictor_runs_once_per_emission_with_exact_inputs() -> None:
    predict, joint = ToyPredictor(), scripted_rnnt_joint(RNNT_SCRIPT, 5, blank_id=4)
    rnnt_greedy(frames_array(5), 5, predict, joint, blank_id=4, initial_state=())
    assert predict.calls == [
        (4, ()),
        (1, (4,)),
        (2, (4, 1)),
        (2, (4, 1, 2)),
        (3, (4, 1, 2, 2)),
        (0, (4, 1, 2, 2, 3)),
    ]


def test_rnnt_length_truncates() -> None:
    predict, joint = ToyPredictor(), scripted_rnnt_joint(RNNT_SCRIPT, 5, blank_id=4)
    hyp = rnnt_greedy(frames_array(5), 3, predict, joint, blank_id=4, initial_state=())
    assert (hyp.token_ids, hyp.frames) == ([1, 2, 2], [0, 0, 2])
    assert {t for t, _ in joint.calls} == {0, 1, 2}


def test_rnnt_zero_length_calls_nothing() -> None:
    predict, joint = ToyPredictor(), scripted_rnnt_joint(RNNT_SCRIPT, 5, blank_id=4)
    hyp = rnnt_greedy(frames_array(5), 0, predict, joint, blank_id=4, initial_state=())
    assert hyp == Hypothesis([], [])
    assert predict.calls == joint.calls == []


def test_rnnt_blank_zero() -> None:
    script: Script = {(1, 0): 3, (1, 1): 3}
    predict, joint = ToyPredictor(), scripted_rnnt_joint(script, 4, blank_id=0)
    hyp = rnnt_greedy(frames_array(3), 3, predict, joint, blank_id=0, initial_state=())
    assert (hyp.token_ids, hyp.frames) == ([3, 3], [1, 1])
    assert predict.calls == [(0, ()), (3, (0,)), (3, (0, 3))]


def never_blank_on_frame_zero(t: int, history: History) -> np.ndarray:
    return one_hot(1 if t == 0 else 2, 3)  # blank = 2


def test_rnnt_default_cap_is_ten_symbols_per_frame() -> None:
    predict, joint = ToyPredictor(), RecordingJoint(never_blank_on_frame_zero)
    hyp = rnnt_greedy(frames_array(3), 3, predict, joint, blank_id=2, initial_state=())
    assert hyp.token_ids == [1] * 10
    assert hyp.frames == [0] * 10
    assert [t for t, _ in joint.calls] == [0] * 10 + [1, 2]
    assert len(predict.calls) == 11


def test_rnnt_custom_cap() -> None:
    predict, joint = ToyPredictor(), RecordingJoint(never_blank_on_frame_zero)
    hyp = rnnt_greedy(
        frames_array(2), 2, predict, joint, blank_id=2, initial_state=(), max_symbols_per_frame=3
    )
    assert (hyp.token_ids, hyp.frames) == ([1, 1, 1], [0, 0, 0])
    assert predict.calls == [(2, ()), (1, (2,)), (1, (2, 1)), (1, (2, 1, 1))]


def test_rnnt_cap_on_last_frame_makes_no_trailing_predictor_call() -> None:
    predict, joint = ToyPredictor(), RecordingJoint(never_blank_on_frame_zero)
    hyp = rnnt_greedy(frames_array(1), 1, predict, joint, blank_id=2, initial_state=())
    assert hyp.token_ids == [1] * 10
    assert len(predict.calls) == 10  # upstream never feeds the 10th token either


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_frames=st.integers(0, 12),
    vocab=st.integers(1, 4),
    blank_last=st.booleans(),
    p_blank=st.floats(0.0, 1.0),
    max_symbols=st.integers(1, 4),
    data=st.data(),
)
def test_rnnt_matches_eager_upstream_loop(
    seed: int,
    num_frames: int,
    vocab: int,
    blank_last: bool,
    p_blank: float,
    max_symbols: int,
    data: st.DataObject,
) -> None:
    length = data.draw(st.integers(0, num_frames))
    blank_id = vocab if blank_last else 0
    encoded = frames_array(num_frames)

    ref_predict, ref_joint = ToyPredictor(), random_joint(seed, vocab + 1, blank_id, p_blank)
    expected = reference_rnnt(encoded, length, ref_predict, ref_joint, blank_id, max_symbols)

    predict, joint = ToyPredictor(), random_joint(seed, vocab + 1, blank_id, p_blank)
    hyp = rnnt_greedy(
        encoded,
        length,
        predict,
        joint,
        blank_id=blank_id,
        initial_state=(),
        max_symbols_per_frame=max_symbols,
    )
    assert hyp == expected
    assert joint.calls == ref_joint.calls
    assert predict.calls == dedupe_consecutive(ref_predict.calls)


# --------------------------------------------------------------------------- TDT

DURATIONS = (0, 1, 2, 4)


def run_tdt(
    script: TdtScript, num_frames: int, length: int | None = None, max_symbols: int = 10
) -> tuple[Hypothesis, ToyPredictor, RecordingJoint]:
    """Decode a scripted TDT joint with vocabulary {0, 1, 2} and blank 3."""
    predict, joint = ToyPredictor(), scripted_tdt_joint(script, 4, 3, DURATIONS)
    hyp = tdt_greedy(
        frames_array(num_frames),
        num_frames if length is None else length,
        predict,
        joint,
        blank_id=3,
        durations=DURATIONS,
        initial_state=(),
        max_symbols_per_frame=max_symbols,
    )
    return hyp, predict, joint


def test_tdt_scripted_sequence_with_skips() -> None:
    script: TdtScript = {
        (0, 0): (1, 0),  # duration 0: stay on frame 0
        (0, 1): (2, 2),  # skip frame 1
        (2, 2): (3, 0),  # blank with duration 0 advances by one
        (3, 2): (0, 1),
        (4, 3): (3, 4),  # blank skipping frames 5-7
        (8, 3): (2, 4),  # emitted although it runs past the end
    }
    hyp, predict, joint = run_tdt(script, 10)
    assert hyp == Hypothesis(token_ids=[1, 2, 0, 2], frames=[0, 0, 3, 8], durations=[0, 2, 1, 4])
    assert [t for t, _ in joint.calls] == [0, 0, 2, 3, 4, 8]
    assert predict.calls == [(3, ()), (1, (3,)), (2, (3, 1)), (0, (3, 1, 2))]


def test_tdt_blank_with_duration_zero_advances_one_frame() -> None:
    hyp, _, joint = run_tdt({(0, 0): (3, 0), (1, 0): (1, 1)}, 3)
    assert (hyp.token_ids, hyp.frames, hyp.durations) == ([1], [1], [1])
    assert [t for t, _ in joint.calls] == [0, 1, 2]


def test_tdt_blank_with_duration_zero_after_token_on_same_frame() -> None:
    hyp, _, joint = run_tdt({(0, 0): (1, 0), (0, 1): (3, 0), (1, 1): (2, 1)}, 3)
    assert (hyp.token_ids, hyp.frames, hyp.durations) == ([1, 2], [0, 1], [0, 1])
    assert [t for t, _ in joint.calls] == [0, 0, 1, 2]


def test_tdt_length_stops_before_frames_beyond_it() -> None:
    hyp, _, joint = run_tdt({(0, 0): (1, 2), (2, 1): (2, 1)}, 5, length=2)
    assert (hyp.token_ids, hyp.frames) == ([1], [0])
    assert [t for t, _ in joint.calls] == [0]


def test_tdt_zero_length_calls_nothing() -> None:
    hyp, predict, joint = run_tdt({(0, 0): (1, 0)}, 3, length=0)
    assert hyp == Hypothesis([], [], [])
    assert predict.calls == joint.calls == []


def test_tdt_default_cap_forces_next_frame() -> None:
    script: TdtScript = {(0, n): (1, 0) for n in range(20)}
    hyp, predict, joint = run_tdt(script, 3)
    assert hyp.token_ids == [1] * 10
    assert hyp.frames == [0] * 10
    assert hyp.durations == [0] * 10
    assert [t for t, _ in joint.calls] == [0] * 10 + [1, 2]
    assert len(predict.calls) == 11


def test_tdt_cap_counts_tokens_per_frame_not_in_total() -> None:
    script: TdtScript = {
        (0, 0): (1, 0),
        (0, 1): (1, 0),
        (0, 2): (2, 1),  # third token on frame 0 leaves by its own duration
        (1, 3): (1, 0),
        (1, 4): (1, 0),
        (1, 5): (1, 0),  # third token on frame 1 with duration 0: forced on
        (1, 6): (2, 1),  # never reached
    }
    hyp, _, joint = run_tdt(script, 3, max_symbols=3)
    assert hyp.token_ids == [1, 1, 2, 1, 1, 1]
    assert hyp.frames == [0, 0, 0, 1, 1, 1]
    assert hyp.durations == [0, 0, 1, 0, 0, 0]
    assert [t for t, _ in joint.calls] == [0, 0, 0, 1, 1, 1, 2]


def test_tdt_capped_token_with_duration_does_not_skip_an_extra_frame() -> None:
    # NeMo's per-utterance GreedyTDTInfer would jump to frame 3 here; label looping does not.
    script: TdtScript = {(0, 0): (1, 0), (0, 1): (2, 2), (2, 2): (0, 1)}
    hyp, _, _ = run_tdt(script, 4, max_symbols=2)
    assert (hyp.token_ids, hyp.frames, hyp.durations) == ([1, 2, 0], [0, 0, 2], [0, 2, 1])


def test_tdt_blank_first_in_vocabulary() -> None:
    durations = (1, 2)
    script: TdtScript = {(0, 0): (2, 2), (2, 1): (1, 1)}
    predict, joint = ToyPredictor(), scripted_tdt_joint(script, 3, 0, durations)
    hyp = tdt_greedy(
        frames_array(4), 4, predict, joint, blank_id=0, durations=durations, initial_state=()
    )
    assert (hyp.token_ids, hyp.frames, hyp.durations) == ([2, 1], [0, 2], [2, 1])


def test_tdt_durations_are_python_ints() -> None:
    durations = cast(Sequence[int], tuple(np.arange(3)))  # numpy integers slip through
    predict, joint = ToyPredictor(), scripted_tdt_joint({(0, 0): (1, 2)}, 3, 2, [0, 1, 2])
    hyp = tdt_greedy(
        frames_array(2), 2, predict, joint, blank_id=2, durations=durations, initial_state=()
    )
    assert hyp.durations == [2]
    assert hyp.durations is not None
    assert type(hyp.durations[0]) is int


tdt_cases = {
    "seed": st.integers(0, 2**32 - 1),
    "num_frames": st.integers(0, 12),
    "vocab": st.integers(1, 4),
    "blank_last": st.booleans(),
    "p_blank": st.floats(0.0, 1.0),
    "durations": st.lists(st.integers(0, 4), min_size=1, max_size=4),
    "max_symbols": st.integers(1, 4),
    "data": st.data(),
}


@settings(max_examples=300, deadline=None)
@given(**tdt_cases)
def test_tdt_matches_label_looping_reference(
    seed: int,
    num_frames: int,
    vocab: int,
    blank_last: bool,
    p_blank: float,
    durations: list[int],
    max_symbols: int,
    data: st.DataObject,
) -> None:
    length = data.draw(st.integers(0, num_frames))
    blank_id = vocab if blank_last else 0
    encoded = frames_array(num_frames)
    n = len(durations)

    ref_predict, ref_joint = ToyPredictor(), random_joint(seed, vocab + 1, blank_id, p_blank, n)
    expected = reference_tdt_label_looping(
        encoded, length, ref_predict, ref_joint, blank_id, durations, max_symbols
    )

    predict, joint = ToyPredictor(), random_joint(seed, vocab + 1, blank_id, p_blank, n)
    hyp = tdt_greedy(
        encoded,
        length,
        predict,
        joint,
        blank_id=blank_id,
        durations=durations,
        initial_state=(),
        max_symbols_per_frame=max_symbols,
    )
    assert hyp == expected
    assert joint.calls == ref_joint.calls
    assert predict.calls == dedupe_consecutive(ref_predict.calls)


@settings(max_examples=300, deadline=None)
@given(**tdt_cases)
def test_tdt_matches_per_utterance_nemo_outside_its_extra_skip_corner(
    seed: int,
    num_frames: int,
    vocab: int,
    blank_last: bool,
    p_blank: float,
    durations: list[int],
    max_symbols: int,
    data: st.DataObject,
) -> None:
    length = data.draw(st.integers(0, num_frames))
    blank_id = vocab if blank_last else 0
    encoded = frames_array(num_frames)
    n = len(durations)

    ref_joint = random_joint(seed, vocab + 1, blank_id, p_blank, n)
    expected, extra_skip = reference_tdt_per_utterance(
        encoded, length, ToyPredictor(), ref_joint, blank_id, durations, max_symbols
    )
    joint = random_joint(seed, vocab + 1, blank_id, p_blank, n)
    hyp = tdt_greedy(
        encoded,
        length,
        ToyPredictor(),
        joint,
        blank_id=blank_id,
        durations=durations,
        initial_state=(),
        max_symbols_per_frame=max_symbols,
    )
    if not extra_skip:
        assert hyp == expected


# --------------------------------------------------------------------------- argument checks


def test_transducers_reject_bad_arguments() -> None:
    predict, joint = ToyPredictor(), RecordingJoint(never_blank_on_frame_zero)
    enc = frames_array(3)
    with pytest.raises(ValueError, match="length 4"):
        rnnt_greedy(enc, 4, predict, joint, blank_id=2, initial_state=())
    with pytest.raises(ValueError, match="max_symbols_per_frame"):
        rnnt_greedy(enc, 3, predict, joint, blank_id=2, initial_state=(), max_symbols_per_frame=0)
    with pytest.raises(ValueError, match=r"\[T, D\]"):
        rnnt_greedy(enc[:, 0], 3, predict, joint, blank_id=2, initial_state=())
    with pytest.raises(ValueError, match="empty"):
        tdt_greedy(enc, 3, predict, joint, blank_id=2, durations=[], initial_state=())
    with pytest.raises(ValueError, match=">= 0"):
        tdt_greedy(enc, 3, predict, joint, blank_id=2, durations=[0, -1], initial_state=())
    assert predict.calls == joint.calls == []
