"""Splitting a long phoneme string into pieces a fixed-size model can speak.

Each sentence is its own piece; a sentence that does not fit is split at phrase marks
(``, ; : —``), then between words, then (a single word longer than the limit) inside the
word; at each of those levels neighbouring parts are packed together while they fit. Every
phoneme ends up in exactly one piece, in order: nothing is dropped. ``Piece.boundary`` says
what ends a piece (the host puts a pause after sentences and phrases).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

SENTENCE, PHRASE, WORD, CUT, END = "sentence", "phrase", "word", "cut", "end"
_CLOSE = '”"»)\\]'
_LEVELS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (SENTENCE, re.compile(r"[.!?…]+[" + _CLOSE + r"]*\s+")),
    (PHRASE, re.compile(r"[,;:—]+[" + _CLOSE + r"]*\s+|\s+—\s*")),
    (WORD, re.compile(r"\s+")),
)


@dataclass(frozen=True)
class Piece:
    phonemes: str
    boundary: str  # what ends it: SENTENCE, PHRASE, WORD, CUT, or END (the text's end)


def split_phonemes(phonemes: str, fits: Callable[[str], bool], *, last: str = END) -> list[Piece]:
    """``phonemes`` as pieces that each satisfy ``fits`` (see the module's docstring);
    ``last``: the boundary of the final piece."""
    text = phonemes.strip()
    if not text:
        return []
    pieces = _split(text, fits, 0)
    return [*pieces[:-1], Piece(pieces[-1].phonemes, last)]


def _parts(text: str, level: int) -> list[tuple[str, str]]:
    """``text`` cut at ``level``'s boundaries, each part with the boundary that ends it."""
    name, pattern = _LEVELS[level]
    parts: list[tuple[str, str]] = []
    position = 0
    for match in pattern.finditer(text):
        part = text[position : match.end()].strip()
        if part:
            parts.append((part, name))
        position = match.end()
    rest = text[position:].strip()
    if rest:
        parts.append((rest, name))
    return parts


def _split(text: str, fits: Callable[[str], bool], level: int) -> list[Piece]:
    if level == len(_LEVELS):
        return _cut(text, fits)
    out: list[Piece] = []
    pending: list[str] = []
    pending_end = _LEVELS[level][0]

    def flush() -> None:
        if pending:
            out.append(Piece(" ".join(pending), pending_end))
            pending.clear()

    for part, end in _parts(text, level):
        if not fits(part):
            flush()
            finer = _split(part, fits, level + 1)
            out.extend([*finer[:-1], Piece(finer[-1].phonemes, end)])
            continue
        # sentences are never packed together: each sentence is spoken on its own
        if pending and (level == 0 or not fits(" ".join([*pending, part]))):
            flush()
        pending.append(part)
        pending_end = end
    flush()
    return out


def _cut(text: str, fits: Callable[[str], bool]) -> list[Piece]:
    """A word longer than the limit, cut into the longest prefixes that fit (at least one
    character each)."""
    out: list[Piece] = []
    while text:
        low, high = 1, len(text)
        while low < high:  # the longest prefix that fits
            mid = (low + high + 1) // 2
            if fits(text[:mid]):
                low = mid
            else:
                high = mid - 1
        out.append(Piece(text[:low], CUT))
        text = text[low:]
    return out
