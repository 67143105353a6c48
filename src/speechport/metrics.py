"""Error rates: edit distance over characters (CER) or words (WER); plain Python, no model."""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(reference: Sequence[object], hypothesis: Sequence[object]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1).

    The common prefix and suffix cost nothing and are skipped, so near-identical texts (the
    usual case when checking a conversion) are compared in linear time.
    """
    start = 0
    while start < min(len(reference), len(hypothesis)) and reference[start] == hypothesis[start]:
        start += 1
    end_r, end_h = len(reference), len(hypothesis)
    while end_r > start and end_h > start and reference[end_r - 1] == hypothesis[end_h - 1]:
        end_r -= 1
        end_h -= 1
    reference, hypothesis = reference[start:end_r], hypothesis[start:end_h]
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i]
        for j, hyp_item in enumerate(hypothesis, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item))
            )
        previous = current
    return previous[-1]


def _rate(reference: Sequence[object], hypothesis: Sequence[object]) -> float:
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return edit_distance(reference, hypothesis) / len(reference)


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Character edits per reference character (whitespace runs count as one space)."""
    return _rate(" ".join(reference.split()), " ".join(hypothesis.split()))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edits per reference word."""
    return _rate(reference.split(), hypothesis.split())


def token_agreement(reference: list[int], candidate: list[int]) -> float:
    """1 - (token edit distance / reference tokens), floored at 0: the share of the
    reference's tokens the candidate reproduces in order (1.0 when both are empty)."""
    if not reference:
        return 1.0 if not candidate else 0.0
    return max(0.0, 1.0 - edit_distance(reference, candidate) / len(reference))
