"""Error rates: edit distance over characters (CER) or words (WER)."""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(reference: Sequence[object], hypothesis: Sequence[object]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
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
