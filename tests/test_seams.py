"""The overlap merge on synthetic windows: duplicates removed, nothing lost, words whole,
disagreements settled by the edge rule; window planning."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speechport.pipelines.seams import (
    WindowTokens,
    choose_seam,
    merge_windows,
    plan_overlapping_windows,
)
from speechport.pipelines.windowing import Window

# A word is (text, start time, seconds per letter); each letter is one token whose id is
# its code point, a space token (id 32, word -1) separates words, as in a character model.
Word = tuple[str, float]


def window(start: float, end: float, words: list[Word], step: float = 0.04) -> WindowTokens:
    """The tokens a window would decode for ``words`` (those starting inside it)."""
    ids: list[int] = []
    times: list[float] = []
    word_ids: list[int] = []
    for k, (text, t) in enumerate(w for w in words if start <= w[1] < end):
        if ids:
            ids.append(32)
            times.append(t)
            word_ids.append(-1)
        for n, letter in enumerate(text):
            ids.append(ord(letter))
            times.append(t + n * step)
            word_ids.append(k)
    return WindowTokens(start, end, ids, times, word_ids)


def text_of(windows: list[WindowTokens], ranges: list[tuple[int, int]]) -> str:
    pieces = [
        "".join(chr(i) for i in w.ids[a:b]).strip()
        for w, (a, b) in zip(windows, ranges, strict=False)
    ]
    return " ".join(p for p in pieces if p)


def words_at(times: list[float]) -> list[Word]:
    return [(f"w{k}x", t) for k, t in enumerate(times)]


def test_agreeing_windows_give_each_word_once() -> None:
    words = words_at([0.5, 1.4, 2.6, 3.3, 4.1, 4.6, 5.2, 6.0, 7.4])
    windows = [window(0.0, 5.0, words), window(3.0, 8.0, words)]
    ranges, seams = merge_windows(windows)
    assert text_of(windows, ranges) == " ".join(w for w, _ in words)
    (seam,) = seams
    # paired: "w3x", "w4x", "w5x" and the two spaces between them; disputed: the left
    # window's space before "w3x" (the right window starts with that word)
    assert (seam.paired, seam.disputed) == (5, 1)
    assert 3.0 <= seam.time <= 5.0


def test_a_word_is_never_split_even_where_it_crosses_the_middle() -> None:
    # a long word from 3.8 s to 4.3 s crosses the middle (4.0 s) of the overlap [3, 5]
    words = [("alpha", 2.0), ("extraordinarily", 3.8), ("omega", 6.0)]
    windows = [window(0.0, 5.0, words), window(3.0, 8.0, words)]
    ranges, seams = merge_windows(windows)
    assert text_of(windows, ranges) == "alpha extraordinarily omega"
    left, right = windows
    assert not left.cut_splits_word(seams[0].left_stop)
    assert not right.cut_splits_word(seams[0].right_start)


def test_garbage_at_window_edges_is_dropped_by_the_edge_rule() -> None:
    """Each window mishears the word its edge cuts: the left one near its end, the right one
    near its start. The windows disagree there, and the window farther from its edge wins."""
    words = words_at([0.4, 1.5, 3.2, 3.9, 4.5, 6.1, 7.0])
    left = window(0.0, 5.0, [*words[:4], ("zzz", 4.8)])  # "w4x" at 4.5 s cut into "zzz"
    right = window(3.0, 8.0, [("qq", 3.0), *words[3:]])  # "w2x" cut into "qq"
    ranges, seams = merge_windows([left, right], tolerance=0.25)
    assert text_of([left, right], ranges) == " ".join(w for w, _ in words)
    # paired: " " and "w3x"; disputed: the left window's " ", "w2x", " ", "zzz", the right's
    # "qq", " ", "w4x"
    assert (seams[0].paired, seams[0].disputed) == (2, 7)


def test_disagreement_goes_to_the_window_farther_from_its_edge() -> None:
    """The windows hear different words at 3.5 s (nearer the right window's start) and at
    4.6 s (nearer the left window's end): the left window wins the first, the right one the
    second."""
    left = window(0.0, 5.0, [("one", 1.0), ("left", 3.5), ("same", 4.0), ("lost", 4.6)])
    right = window(3.0, 8.0, [("rite", 3.5), ("same", 4.0), ("kept", 4.6), ("end", 7.0)])
    ranges, _ = merge_windows([left, right])
    assert text_of([left, right], ranges) == "one left same kept end"


def test_jittered_times_within_the_tolerance_still_pair() -> None:
    words = words_at([0.5, 3.4, 3.9, 4.4, 6.0])
    shifted = [(w, t + 0.08) for w, t in words]
    windows = [window(0.0, 5.0, words), window(3.0, 8.0, shifted)]
    ranges, seams = merge_windows(windows, tolerance=0.12)
    assert text_of(windows, ranges) == " ".join(w for w, _ in words)
    assert seams[0].disputed == 1  # the space before the right window's first word
    # with no tolerance nothing pairs, and the edge rule alone cannot tell that the two
    # copies of "w2x" (3.90-3.98 s and 3.98-4.06 s, across the middle at 4 s) are one word
    ranges, seams = merge_windows(windows, tolerance=0.0)
    assert seams[0].paired == 0
    assert text_of(windows, ranges) == "w0x w1x w2x w2x w3x w4x"


def test_repeated_words_are_kept_as_often_as_spoken() -> None:
    words = [("la", t) for t in (0.5, 2.9, 3.3, 3.7, 4.1, 4.5, 4.9, 5.3, 7.0)]
    windows = [window(0.0, 5.0, words), window(3.0, 8.0, words)]
    ranges, _ = merge_windows(windows)
    assert text_of(windows, ranges) == " ".join(["la"] * len(words))


def test_silence_in_the_overlap_and_empty_windows() -> None:
    words = words_at([0.5, 1.0, 6.0, 9.5])
    windows = [window(0.0, 5.0, words), window(3.0, 8.0, words), window(6.0, 11.0, words)]
    ranges, seams = merge_windows(windows)
    assert text_of(windows, ranges) == "w0x w1x w2x w3x"
    assert seams[0].time == pytest.approx(4.0)  # nothing in the overlap: its middle
    empty = [window(0.0, 5.0, []), window(3.0, 8.0, []), window(6.0, 9.0, [])]
    ranges, _ = merge_windows(empty)
    assert ranges == [(0, 0), (0, 0), (0, 0)]
    assert merge_windows([]) == ([], [])


def test_three_windows_and_a_floor() -> None:
    """The middle window's kept range starts where the first seam put it."""
    words = words_at([0.5 + 0.45 * k for k in range(24)])
    windows = [window(0.0, 5.0, words), window(3.0, 8.0, words), window(6.0, 11.0, words)]
    ranges, seams = merge_windows(windows)
    assert text_of(windows, ranges) == " ".join(w for w, _ in words)
    assert all(a <= b for a, b in ranges)
    assert seams[0].time < seams[1].time


def test_a_word_across_the_whole_overlap_comes_whole_from_one_window() -> None:
    """One long word covers the overlap [3, 5] in both windows, heard differently by each.
    Keeping both is not monotonic; of the rest, keeping the left window's version costs
    least (its letters at 4.0 and 4.5 s: 0.5 s past the middle; dropping the right one's at
    4.1 and 4.6 s: 0.7 s), less than keeping the right one's (2.9 s) or neither (2.3 s)."""
    left = WindowTokens(0.0, 5.0, [1, 2, 3, 4], [2.9, 3.5, 4.0, 4.5], [0, 0, 0, 0])
    right = WindowTokens(3.0, 8.0, [5, 6, 7, 8], [3.1, 3.6, 4.1, 4.6], [0, 0, 0, 0])
    seam = choose_seam(left, right)
    assert (seam.left_stop, seam.right_start) == (4, 4)
    assert (seam.paired, seam.disputed) == (0, 1)  # the left word starts before the overlap


def test_window_tokens_validate() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        WindowTokens(0.0, 1.0, [1], [0.1, 0.2], [0])
    with pytest.raises(ValueError, match="start < end"):
        WindowTokens(1.0, 1.0, [], [], [])
    with pytest.raises(ValueError, match="must not decrease"):
        WindowTokens(0.0, 1.0, [1, 2], [0.2, 0.1], [0, 0])
    with pytest.raises(ValueError, match="tolerance"):
        merge_windows([], tolerance=-1.0)


# --- planning -------------------------------------------------------------------------


def test_plan_overlapping_windows() -> None:
    assert plan_overlapping_windows(0, 100, 20) == []
    assert plan_overlapping_windows(90, 100, 20) == [Window(0, 90)]
    assert plan_overlapping_windows(100, 100, 20) == [Window(0, 100)]
    assert plan_overlapping_windows(250, 100, 20) == [
        Window(0, 100),
        Window(80, 180),
        Window(160, 250),
    ]
    # starts on multiples of `align`: the hop shrinks to 75, the overlap grows to 25
    assert plan_overlapping_windows(200, 100, 20, align=25) == [
        Window(0, 100),
        Window(75, 175),
        Window(150, 200),
    ]
    with pytest.raises(ValueError, match="overlap"):
        plan_overlapping_windows(100, 100, 60)
    with pytest.raises(ValueError, match="overlap"):
        plan_overlapping_windows(100, 100, 0)


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(1, 5000),
    window_len=st.integers(2, 1000),
    share=st.floats(0.01, 0.5),
    align=st.integers(1, 16),
)
def test_planned_windows_cover_everything_and_overlap(
    total: int, window_len: int, share: float, align: int
) -> None:
    overlap = max(1, int(window_len * share))
    if overlap > window_len // 2 or (window_len - overlap) // align == 0:
        return
    windows = plan_overlapping_windows(total, window_len, overlap, align=align)
    assert windows[0].start == 0 and windows[-1].end == total
    for a, b in itertools.pairwise(windows):
        assert b.start % align == 0
        assert overlap <= a.end - b.start < window_len  # they overlap, by at least `overlap`
        assert a.end <= b.end
    assert all(w.num_samples <= window_len for w in windows)
    if len(windows) > 1:
        assert windows[-1].num_samples > overlap


# --- properties -----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.floats(0.25, 1.5), min_size=1, max_size=40),
    lengths=st.lists(st.integers(1, 6), min_size=40, max_size=40),
    window_len=st.floats(3.0, 8.0),
    overlap_share=st.floats(0.2, 0.5),
    jitter=st.lists(st.sampled_from([-0.04, 0.0, 0.04]), min_size=40, max_size=40),
)
def test_agreeing_windows_keep_every_word_exactly_once(
    gaps: list[float],
    lengths: list[int],
    window_len: float,
    overlap_share: float,
    jitter: list[float],
) -> None:
    """Whatever the words, their lengths, the window and the overlap, and with each
    window's times jittered by a frame: when all windows hear every word that starts
    inside them, the merge gives every word once, in order, whole."""
    times = [sum(gaps[: k + 1]) for k in range(len(gaps))]
    words = [(chr(97 + k % 26) * lengths[k], t) for k, t in enumerate(times)]
    total = times[-1] + 1.0
    hop = window_len * (1 - overlap_share)
    windows: list[WindowTokens] = []
    start = 0.0
    while True:
        end = min(start + window_len, total)
        shift = jitter[len(windows) % len(jitter)]
        heard = [(w, t + shift) for w, t in words if start <= t < end]
        windows.append(window(start, end, heard))
        if end >= total:
            break
        start += hop
    ranges, seams = merge_windows(windows, tolerance=0.1)
    assert text_of(windows, ranges) == " ".join(w for w, _ in words)
    for (a, b), s in zip(itertools.pairwise(windows), seams, strict=True):
        assert not a.cut_splits_word(s.left_stop) and not b.cut_splits_word(s.right_start)


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(st.floats(0.1, 1.2), min_size=1, max_size=50),
    lengths=st.lists(st.integers(1, 8), min_size=50, max_size=50),
    window_len=st.floats(4.0, 8.0),
    overlap=st.floats(1.6, 2.0),
    edge=st.floats(0.0, 0.5),
)
def test_words_misheard_near_window_edges_are_taken_from_the_other_window(
    gaps: list[float], lengths: list[int], window_len: float, overlap: float, edge: float
) -> None:
    """Each window mishears every word that is not at least ``edge`` seconds inside it (as
    an encoder without context does): such words come out as other letters. With an
    overlap wider than twice the edge zone plus a word, the merge still gives every word
    once, as the window that heard it well heard it."""
    times: list[float] = []  # each word starts a gap after the previous one's last letter
    previous = 0
    for gap, n in zip(gaps, lengths, strict=False):
        times.append((times[-1] + 0.04 * previous if times else 0.0) + gap)
        previous = n
    words = [(chr(97 + k % 26) * lengths[k], t) for k, t in enumerate(times)]
    total = times[-1] + 1.0
    windows: list[WindowTokens] = []
    start = 0.0
    while True:
        end = min(start + window_len, total)
        heard = []
        for text, t in words:
            if not start <= t < end:
                continue
            inside = (start == 0 or t >= start + edge) and (
                end == total or t + 0.04 * len(text) <= end - edge
            )
            heard.append((text if inside else "Q" * len(text), t))
        windows.append(window(start, end, heard))
        if end >= total:
            break
        start += window_len - overlap
    ranges, seams = merge_windows(windows)
    assert text_of(windows, ranges) == " ".join(w for w, _ in words)
    for (a, b), s in zip(itertools.pairwise(windows), seams, strict=True):
        assert not a.cut_splits_word(s.left_stop) and not b.cut_splits_word(s.right_start)


def test_a_word_heard_by_one_window_and_garbled_across_the_middle_by_the_other_is_kept() -> None:
    """The left window hears "two hello" (hello just past the middle at 4 s); the right one
    garbles both into one word from 3.3 to 4.2 s. By the edge rule alone both copies of
    hello would go (the left one is past the middle, the garbled word starts before it);
    the orphan rule keeps the left window's words instead."""
    words = [("one", 1.0), ("two", 3.3), ("hello", 4.1), ("next", 4.7), ("end", 7.0)]
    left = window(0.0, 5.0, words[:3])
    right = window(3.0, 8.0, [("qqqqqqqqqqqqqqqqqqqqqqq", 3.3), *words[3:]])
    ranges, seams = merge_windows([left, right])
    assert text_of([left, right], ranges) == "one two hello next end"
    assert seams[0].paired == 0
