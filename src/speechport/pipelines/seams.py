"""Long audio in overlapping windows, merged at the seams so that every word appears once.

Windows are the encoder's length (or a shorter effective length) and overlap by ``O``
seconds; each is decoded from a fresh state and its tokens are placed on the absolute
timeline. Where two windows overlap, both have transcribed the same audio, each with less
context near its own edge (where the encoder hears only one side). The merge keeps, around
each overlap, a prefix of the left window's tokens and a suffix of the right window's:

The merge works on *units*: a word (the tokens that make it up) or a token outside any
word (a space token, for instance). A seam never falls inside a unit, so every word comes
whole from one window.

1. *Alignment.* The units of the two windows that start in the overlap (widened by the
   ``tolerance``) are aligned by identity and time: a longest common subsequence in which
   two units may be paired only when their token ids are equal and their start times
   differ by at most ``tolerance`` (ties: the smallest total time difference). A pair is
   the same word heard twice; the other units are *disputed*: one window heard them, the
   other did not (or heard something else). Pairing whole words, not single tokens, keeps
   a letter of a misheard word from pairing with the same letter of another word.
2. *Consistency.* The left window keeps its tokens ``[.., stop)`` and the right window its
   tokens ``[start, ..)`` such that of every pair exactly one copy is kept: the pairs
   before the seam come from the left window, the rest from the right. No paired word is
   dropped or repeated, whatever else is chosen.
3. *Edge rule.* The two halves of the overlap belong to the window whose edge is farther
   away: the left window before its middle, the right window after it. Keeping a token of
   a disputed unit in the wrong half, or dropping one from its own half, costs its distance
   from the middle.
4. *Choice.* Seams are compared by, in order: monotonic time (the last kept left token
   starts no later than the first kept right token: no word heard twice on both sides);
   orphans (disputed words dropped from both windows although they lie wholly between the
   last kept left token and the first kept right one, where nothing kept stands in for
   them: a word one window heard and the other garbled across the middle is kept, not
   lost); the edge cost; the distance of the seam from the middle.

When the windows agree on the overlap, every seam between pairs costs nothing and the
result is the same token sequence whichever is taken; the seam then falls as near the
middle of the overlap as the words allow.

Consecutive overlaps must not overlap each other: ``overlap <= window / 2``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from speechport.pipelines.windowing import Window

# seconds: how far apart two windows may place the same word (the tiny CTC fixture moves a
# word by up to 0.36 s between windows; identical words are rarely spoken closer)
DEFAULT_TOLERANCE = 0.4


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
    paired: int  # units (words, separators) both windows heard in the overlap
    disputed: int  # units starting inside the overlap that only one window heard


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
    # the units that may be paired: the left window's from the overlap on, the right's up to
    # its end (both widened by the tolerance); a unit is (first token, stop token)
    units_a = [
        u
        for u in _units(left, left_floor, len(left))
        if left.times[u[0]] >= overlap_start - tolerance
    ]
    units_b = [
        u for u in _units(right, 0, len(right)) if right.times[u[0]] < overlap_end + tolerance
    ]
    b_hi = units_b[-1][1] if units_b else 0
    pairs = _align(left, units_a, right, units_b, tolerance)
    paired_a = {units_a[x][0] for x, _ in pairs}
    paired_b = {units_b[y][0] for _, y in pairs}
    # edge cost of each cut: a is the number of left units kept, b of right units dropped
    cost_a = _edge_costs(left, units_a, paired_a, middle)
    cost_b = _edge_costs(right, units_b, paired_b, middle)
    # with the first q pairs from the left window, a lies in (x_q, x_{q+1}] and b in
    # (y_q, y_{q+1}]
    bounds_a = [-1, *(x for x, _ in pairs), len(units_a)]
    bounds_b = [-1, *(y for _, y in pairs), len(units_b)]
    best: tuple[tuple[float, float, float, float], int, int, float] | None = None
    for q in range(len(pairs) + 1):
        for a in range(bounds_a[q] + 1, bounds_a[q + 1] + 1):
            stop = units_a[a][0] if a < len(units_a) else len(left)
            for b in range(bounds_b[q] + 1, bounds_b[q + 1] + 1):
                start = units_b[b][0] if b < len(units_b) else b_hi
                time, distance, monotonic = _seam_time(left, right, stop, start, left_floor, middle)
                key = (
                    0.0 if monotonic else 1.0,
                    float(_orphans(left, units_a, a, right, units_b, b, paired_a, paired_b)),
                    round(cost_a[a] + cost_b[b], 9),
                    round(distance, 9),
                )
                if best is None or key < best[0]:
                    best = (key, stop, start, time)
    assert best is not None  # q = 0 always offers a = b = 0
    _, stop, start, time = best
    disputed = sum(
        1 for u in units_a if u[0] not in paired_a and left.times[u[0]] >= overlap_start
    ) + sum(1 for u in units_b if u[0] not in paired_b and right.times[u[0]] < overlap_end)
    return Seam(stop, start, time, len(pairs), disputed)


def _orphans(
    left: WindowTokens,
    units_a: list[tuple[int, int]],
    a: int,
    right: WindowTokens,
    units_b: list[tuple[int, int]],
    b: int,
    paired_a: set[int],
    paired_b: set[int],
) -> int:
    """Disputed words that a seam drops from both windows: those lying wholly in the gap
    between the last token kept on the left and the first kept on the right, where no kept
    word stands in for them."""
    low = left.times[units_a[a - 1][1] - 1] if a > 0 else -math.inf
    high = right.times[units_b[b][0]] if b < len(units_b) else math.inf
    count = 0
    for u0, u1 in units_a[a:]:  # dropped after the kept ones: orphans if they end before high
        count += u0 not in paired_a and left.words[u0] >= 0 and left.times[u1 - 1] < high
    for u0, _ in units_b[:b]:  # dropped before the kept ones: orphans if they start after low
        count += u0 not in paired_b and right.words[u0] >= 0 and right.times[u0] > low
    return count


def _units(tokens: WindowTokens, first: int, stop: int) -> list[tuple[int, int]]:
    """``(first, stop)`` token ranges of the words and of the tokens outside words."""
    out: list[tuple[int, int]] = []
    for index in range(first, stop):
        word = tokens.words[index]
        if out and word >= 0 and tokens.words[out[-1][0]] == word:
            out[-1] = (out[-1][0], index + 1)
        else:
            out.append((index, index + 1))
    return out


def _align(
    left: WindowTokens,
    units_a: list[tuple[int, int]],
    right: WindowTokens,
    units_b: list[tuple[int, int]],
    tolerance: float,
) -> list[tuple[int, int]]:
    """Longest common subsequence of two unit lists where a pair needs equal token ids and
    start times within ``tolerance``; ties go to the smallest total time difference.
    Returns the pairs ``(x, y)`` of unit indices, in order."""
    n, m = len(units_a), len(units_b)

    def gap(x: int, y: int) -> float | None:
        (a0, a1), (b0, b1) = units_a[x], units_b[y]
        difference = abs(left.times[a0] - right.times[b0])
        same = list(left.ids[a0:a1]) == list(right.ids[b0:b1])
        return difference if same and difference <= tolerance else None

    # score[x][y]: (pairs, -time difference) of the best alignment of units_a[:x], units_b[:y]
    score = [[(0, 0.0)] * (m + 1) for _ in range(n + 1)]
    for x in range(1, n + 1):
        row, above = score[x], score[x - 1]
        for y in range(1, m + 1):
            best = max(above[y], row[y - 1])
            g = gap(x - 1, y - 1)
            if g is not None:
                best = max(best, (above[y - 1][0] + 1, above[y - 1][1] - g))
            row[y] = best
    pairs: list[tuple[int, int]] = []
    x, y = n, m
    while x > 0 and y > 0:
        g = gap(x - 1, y - 1)
        if g is not None and score[x][y] == (
            score[x - 1][y - 1][0] + 1,
            score[x - 1][y - 1][1] - g,
        ):
            pairs.append((x - 1, y - 1))
            x, y = x - 1, y - 1
        elif score[x][y] == score[x - 1][y]:
            x -= 1
        else:
            y -= 1
    pairs.reverse()
    return pairs


def _edge_costs(
    tokens: WindowTokens,
    units: list[tuple[int, int]],
    paired: set[int],
    middle: float,
) -> list[float]:
    """Edge cost for each cut ``k`` in ``[0, len(units)]`` of one window's disputed units.

    The left window keeps units ``[:k]``: a kept token after the middle, or
    a dropped one before it, costs its distance to it. The right window drops units
    ``[:k]``: a kept token before the middle, or a dropped one after it, costs likewise.
    Moving one token across the cut changes the cost by ``t - middle`` either way.
    """
    disputed = [[tokens.times[i] for i in range(u0, u1)] for u0, u1 in units if u0 not in paired]
    # k = 0 (left: all dropped; right: all kept): the tokens before the middle cost
    total = sum(middle - t for times in disputed for t in times if t < middle)
    costs = [total]
    for u0, u1 in units:
        if u0 not in paired:
            total += sum(tokens.times[i] - middle for i in range(u0, u1))
        costs.append(total)
    return costs


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
