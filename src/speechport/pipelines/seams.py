"""Long audio in overlapping windows, merged at the seams so that every word appears once.

Windows are the encoder's length (or a shorter effective length) and overlap by ``O``
seconds; each is decoded from a fresh state and its tokens are placed on the absolute
timeline. Where two windows overlap, both have transcribed the same audio, each with less
context near its own edge (where the encoder hears only one side). The merge keeps, around
each overlap, a prefix of the left window's tokens and a suffix of the right window's:

1. *Alignment.* The tokens of the two windows that lie in the overlap (widened by the
   ``tolerance``) are aligned by identity and time: a longest common subsequence in which
   two tokens may be paired only when their ids are equal and their start times differ by
   at most ``tolerance`` (ties: the smallest total time difference). A paired token is the
   same token heard twice; the others are *disputed*: one window heard them, the other did
   not (or heard something else).
2. *Consistency.* The left window keeps its tokens ``[.., stop)`` and the right window its
   tokens ``[start, ..)`` such that of every pair exactly one copy is kept: the pairs
   before the seam come from the left window, the rest from the right. No paired token is
   dropped or repeated, whatever else is chosen.
3. *Whole words.* ``stop`` and ``start`` must fall between words of their windows (a cut
   between two tokens of one word is avoided whenever possible), so that every word comes
   whole from one window.
4. *Edge rule.* The two halves of the overlap belong to the window whose edge is farther
   away: the left window before its middle, the right window after it. Keeping a disputed
   token in the wrong half, or dropping one from the right half, costs its distance from
   the middle. The seam with the smallest cost wins; then the one whose time order is
   monotonic (the last kept left token starts no later than the first kept right token);
   then the one closest to the middle.

The order of the criteria is: whole words, monotonic times, edge cost, distance from the
middle. When the windows agree on the overlap, every seam at a word boundary costs nothing
and the result is the same token sequence whichever is taken; the seam then falls where
the overlap is quietest of tokens, as near its middle as the words allow.

Consecutive overlaps must not overlap each other: ``overlap <= window / 2``.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from speechport.pipelines.windowing import Window

DEFAULT_TOLERANCE = 0.25  # seconds: how far apart two windows may place the same token


@dataclass(frozen=True)
class WindowTokens:
    """One window's tokens on the absolute timeline.

    ``start``/``end`` bound the window's audio in seconds; ``times`` are the tokens' start
    times in seconds (absolute, non-decreasing); ``words`` gives each token's word index in
    the window (``-1`` for a token that belongs to no word, such as a space token).
    """

    start: float
    end: float
    ids: Sequence[int]
    times: Sequence[float]
    words: Sequence[int]

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.times) == len(self.words):
            raise ValueError(
                f"ids, times and words differ in length: "
                f"{len(self.ids)}, {len(self.times)}, {len(self.words)}"
            )
        if not self.start < self.end:
            raise ValueError(f"a window needs start < end, got [{self.start}, {self.end})")
        if any(a > b for a, b in itertools.pairwise(self.times)):
            raise ValueError("token times must not decrease")

    def __len__(self) -> int:
        return len(self.ids)

    def cut_splits_word(self, position: int) -> bool:
        """Whether keeping tokens ``[.., position)`` and ``[position, ..)`` apart cuts a word."""
        if position <= 0 or position >= len(self.ids):
            return False
        before = self.words[position - 1]
        return before >= 0 and before == self.words[position]


@dataclass(frozen=True)
class Seam:
    """Where two overlapping windows meet: the left one keeps tokens ``[.., left_stop)``, the
    right one ``[right_start, ..)``; ``time`` is the boundary in seconds."""

    left_stop: int
    right_start: int
    time: float
    paired: int  # tokens both windows heard in the overlap
    disputed: int  # tokens inside the overlap that only one window heard
    split_words: int  # words the seam had to cut (0 unless no whole-word seam exists)


def plan_overlapping_windows(
    total: int, window: int, overlap: int, *, align: int = 1
) -> list[Window]:
    """Windows of ``window`` samples starting every ``window - overlap`` samples, the last one
    ending at ``total`` (and longer than ``overlap``); starts are multiples of ``align`` (the
    samples per encoder frame, so that every window's frames fall on one absolute grid).
    """
    if window <= 0 or align <= 0:
        raise ValueError(f"window and align must be positive, got {window} and {align}")
    if not 0 < overlap <= window // 2:
        raise ValueError(
            f"overlap must lie in (0, window / 2] = (0, {window // 2}] samples, got {overlap}"
        )
    hop = (window - overlap) // align * align
    if hop <= 0:
        raise ValueError(f"a window of {window} samples leaves no hop at alignment {align}")
    if total <= 0:
        return []
    windows = [Window(0, min(window, total))]
    while windows[-1].end < total:
        start = windows[-1].start + hop
        windows.append(Window(start, min(start + window, total)))
    return windows


def merge_windows(
    windows: Sequence[WindowTokens], *, tolerance: float = DEFAULT_TOLERANCE
) -> tuple[list[tuple[int, int]], list[Seam]]:
    """The token range ``[first, stop)`` each window keeps, and the seams between them.

    Windows must be in time order; consecutive ones may overlap (by at most half a window).
    Concatenating the kept ranges gives every token once.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    ranges: list[tuple[int, int]] = []
    seams: list[Seam] = []
    first = 0
    for left, right in itertools.pairwise(windows):
        seam = choose_seam(left, right, tolerance=tolerance, left_floor=first)
        ranges.append((first, seam.left_stop))
        seams.append(seam)
        first = seam.right_start
    if windows:
        ranges.append((first, len(windows[-1])))
    return ranges, seams


def choose_seam(
    left: WindowTokens,
    right: WindowTokens,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    left_floor: int = 0,
) -> Seam:
    """The seam between two windows by the rules in the module docstring. The left
    window's tokens before ``left_floor`` went to the window before it (its own left seam):
    the seam never gives them out again."""
    overlap_start, overlap_end = right.start, left.end
    middle = (overlap_start + overlap_end) / 2 if overlap_end > overlap_start else overlap_start
    # the tokens that may be paired: the left window's from the overlap on, the right's up to
    # its end (both widened by the tolerance)
    a_lo = max(left_floor, _first_at_or_after(left.times, overlap_start - tolerance))
    b_hi = _first_at_or_after(right.times, overlap_end + tolerance)
    pairs = _align(left, right, a_lo, b_hi, tolerance)
    paired_a = {i for i, _ in pairs}
    paired_b = {j for _, j in pairs}
    cost_a = _cost_left(left, a_lo, paired_a, middle)
    cost_b = _cost_right(right, b_hi, paired_b, middle)
    # pair q of the alignment separates the candidates: with the first q pairs from the left
    # window, stop lies in (i_q, i_{q+1}] and start in (j_q, j_{q+1}]
    bounds_a = [a_lo - 1, *(i for i, _ in pairs), len(left)]
    bounds_b = [-1, *(j for _, j in pairs), b_hi]
    best: tuple[tuple[float, float, float, float], int, int, float] | None = None
    for q in range(len(pairs) + 1):
        for stop in range(bounds_a[q] + 1, bounds_a[q + 1] + 1):
            for start in range(bounds_b[q] + 1, bounds_b[q + 1] + 1):
                time, distance, monotonic = _seam_time(left, right, stop, start, left_floor, middle)
                splits = left.cut_splits_word(stop) + right.cut_splits_word(start)
                key = (
                    float(splits),
                    0.0 if monotonic else 1.0,
                    round(cost_a[stop - a_lo] + cost_b[start], 9),
                    round(distance, 9),
                )
                if best is None or key < best[0]:
                    best = (key, stop, start, time)
    assert best is not None  # q = 0 always offers stop = a_lo, start = 0
    key, stop, start, time = best
    disputed = sum(
        1 for i in range(a_lo, len(left)) if i not in paired_a and left.times[i] >= overlap_start
    ) + sum(1 for j in range(b_hi) if j not in paired_b and right.times[j] < overlap_end)
    return Seam(stop, start, time, len(pairs), disputed, int(key[0]))


def _first_at_or_after(times: Sequence[float], t: float) -> int:
    """Index of the first time >= ``t`` (times are non-decreasing)."""
    return bisect.bisect_left(times, t)


def _align(
    left: WindowTokens, right: WindowTokens, a_lo: int, b_hi: int, tolerance: float
) -> list[tuple[int, int]]:
    """Longest common subsequence of ``left[a_lo:]`` and ``right[:b_hi]`` where a pair needs
    equal ids and start times within ``tolerance``; ties go to the smallest total time
    difference. Returns the pairs ``(i, j)`` in order."""
    a = range(a_lo, len(left))
    n, m = len(a), b_hi
    # score[x][y]: (pairs, -time difference) of the best alignment of a[:x] and right[:y]
    score = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]
    for x in range(1, n + 1):
        i = a[x - 1]
        row, above = score[x], score[x - 1]
        for y in range(1, m + 1):
            best = max(above[y], row[y - 1])
            gap = abs(left.times[i] - right.times[y - 1])
            if left.ids[i] == right.ids[y - 1] and gap <= tolerance:
                diagonal = above[y - 1]
                best = max(best, (diagonal[0] + 1, diagonal[1] - gap))
            row[y] = best
    pairs: list[tuple[int, int]] = []
    x, y = n, m
    while x > 0 and y > 0:
        i = a[x - 1]
        gap = abs(left.times[i] - right.times[y - 1])
        if (
            left.ids[i] == right.ids[y - 1]
            and gap <= tolerance
            and score[x][y] == (score[x - 1][y - 1][0] + 1, score[x - 1][y - 1][1] - gap)
        ):
            pairs.append((i, y - 1))
            x, y = x - 1, y - 1
        elif score[x][y] == score[x - 1][y]:
            x -= 1
        else:
            y -= 1
    pairs.reverse()
    return pairs


def _cost_left(left: WindowTokens, a_lo: int, paired: set[int], middle: float) -> list[float]:
    """Edge cost of the left window's disputed tokens for each ``stop`` in ``[a_lo, len]``:
    a kept token after the middle, or a dropped one before it, costs its distance to it."""
    n = len(left)
    cost = [0.0] * (n - a_lo + 1)
    # all dropped (stop = a_lo): those before the middle cost
    total = sum(
        middle - left.times[i] for i in range(a_lo, n) if i not in paired and left.times[i] < middle
    )
    cost[0] = total
    for i in range(a_lo, n):
        if i not in paired:
            total += left.times[i] - middle  # kept now instead of dropped: cost moves sides
        cost[i - a_lo + 1] = total
    return cost


def _cost_right(right: WindowTokens, b_hi: int, paired: set[int], middle: float) -> list[float]:
    """Edge cost of the right window's disputed tokens for each ``start`` in ``[0, b_hi]``:
    a kept token before the middle, or a dropped one after it, costs its distance to it."""
    cost = [0.0] * (b_hi + 1)
    total = sum(
        middle - right.times[j] for j in range(b_hi) if j not in paired and right.times[j] < middle
    )
    cost[0] = total
    for j in range(b_hi):
        if j not in paired:
            total += right.times[j] - middle  # dropped now instead of kept
        cost[j + 1] = total
    return cost


def _seam_time(
    left: WindowTokens, right: WindowTokens, stop: int, start: int, floor: int, middle: float
) -> tuple[float, float, bool]:
    """The seam's time (the middle of the overlap, moved to lie between the last kept left
    token and the first kept right one), its distance from the middle, and whether the kept
    tokens stay in time order across it."""
    last = left.times[stop - 1] if stop > floor else -math.inf
    first = right.times[start] if start < len(right) else math.inf
    if last <= first:
        time = min(max(middle, last), first)
        return time, abs(time - middle), True
    time = (last + first) / 2
    return time, abs(time - middle), False
