"""Keyword lists and the Aho-Corasick context graph that keyword search walks.

A keyword is a token sequence with a display phrase, a per-token boost (added to a
hypothesis' score for every token it matches, taken back when the path leaves the keyword)
and an acoustic threshold (the mean token probability a detection must reach). ``0`` for
either means "the spotter's default".

The graph is a trie of the keywords with a fail arc on every node (the longest proper
suffix of the node's path that is also a trie path) and an output arc (the nearest keyword
end along the fail chain). It reproduces icefall's ``ContextGraph`` and sherpa-onnx's
``ContextGraph`` node for node, including their scores: a node's ``node_score`` is the sum
of the token boosts from the root, its ``output_score`` the summed ``node_score`` of every
keyword that ends there or along its output chain; following a fail arc scores
``target.node_score - source.node_score`` (negative: the boost of the abandoned tokens is
cancelled).

Keyword lists come in sherpa-onnx's file syntax, one keyword per line::

    ▁HE LL O ▁WORLD :1.5 #0.35 @HELLO_WORLD

(tokens, then optional ``:boost``, ``#threshold``, ``@phrase``), or as plain phrases that a
tokenizer turns into tokens. An unknown token is an error naming the keyword.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from speechport.errors import SpeechportError

SPM_BOUNDARY = "\u2581"


class KeywordError(SpeechportError):
    """A keyword list that cannot be used: unknown tokens, no keywords, bad numbers."""


@dataclass(frozen=True)
class Keyword:
    """One keyword: its token ids, the phrase reported on detection, and its boost and
    threshold (``0``: the spotter's default)."""

    token_ids: tuple[int, ...]
    phrase: str
    boost: float = 0.0
    threshold: float = 0.0


@dataclass(eq=False)
class ContextNode:
    """A trie node. ``level`` is its depth (the number of tokens from the root); ``phrase``
    and ``threshold`` are meaningful only where ``is_end``."""

    token: int
    token_score: float
    node_score: float
    output_score: float
    is_end: bool
    level: int
    phrase: str = ""
    threshold: float = 0.0
    next: dict[int, ContextNode] = field(default_factory=dict)
    fail: ContextNode | None = None
    output: ContextNode | None = None

    @property
    def is_root(self) -> bool:
        return self.token == -1


class ContextGraph:
    """The Aho-Corasick graph of a keyword list (see the module docstring)."""

    def __init__(
        self, keywords: Sequence[Keyword], *, default_boost: float, default_threshold: float
    ):
        if not keywords:
            raise KeywordError(
                "the keyword list is empty", hint="give at least one keyword or phrase"
            )
        self.default_boost = float(default_boost)
        self.default_threshold = float(default_threshold)
        self.root = ContextNode(
            token=-1, token_score=0.0, node_score=0.0, output_score=0.0, is_end=False, level=0
        )
        self.root.fail = self.root
        self.keywords = tuple(keywords)
        for kw in self.keywords:
            self._insert(kw)
        self._fill_fail_output()

    def _insert(self, kw: Keyword) -> None:
        if not kw.token_ids:
            raise KeywordError(f"keyword {kw.phrase!r} has no tokens")
        boost = self.default_boost if kw.boost == 0.0 else kw.boost
        threshold = self.default_threshold if kw.threshold == 0.0 else kw.threshold
        node = self.root
        last = len(kw.token_ids) - 1
        for i, token in enumerate(kw.token_ids):
            child = node.next.get(token)
            if child is None:
                is_end = i == last
                score = node.node_score + boost
                child = ContextNode(
                    token=token,
                    token_score=boost,
                    node_score=score,
                    output_score=score if is_end else 0.0,
                    is_end=is_end,
                    level=i + 1,
                    phrase=kw.phrase if is_end else "",
                    threshold=threshold if is_end else 0.0,
                )
                node.next[token] = child
            else:
                # a shared prefix node keeps the largest boost of the keywords through it
                child.token_score = max(boost, child.token_score)
                child.node_score = node.node_score + child.token_score
                child.is_end = i == last or child.is_end
                child.output_score = child.node_score if child.is_end else 0.0
                if i == last:
                    child.phrase = kw.phrase
                    child.threshold = threshold
            node = child

    def _fill_fail_output(self) -> None:
        queue: deque[ContextNode] = deque()
        for node in self.root.next.values():
            node.fail = self.root
            queue.append(node)
        while queue:
            current = queue.popleft()
            assert current.fail is not None
            for token, node in current.next.items():
                fail = current.fail
                if token in fail.next:
                    fail = fail.next[token]
                else:
                    assert fail.fail is not None
                    fail = fail.fail
                    while token not in fail.next:
                        assert fail.fail is not None
                        fail = fail.fail
                        if fail.is_root:
                            break
                    if token in fail.next:
                        fail = fail.next[token]
                node.fail = fail
                output: ContextNode | None = fail
                while output is not None and not output.is_end:
                    output = output.fail
                    assert output is not None
                    if output.is_root:
                        output = None
                node.output = output
                node.output_score += 0.0 if output is None else output.output_score
                queue.append(node)

    def forward(self, state: ContextNode, token: int) -> tuple[float, ContextNode]:
        """Walk one token from ``state``: the score to add and the next state (the root when
        no keyword continues with this token)."""
        if token in state.next:
            node = state.next[token]
            score = node.token_score
        else:
            assert state.fail is not None
            node = state.fail
            while token not in node.next:
                assert node.fail is not None
                node = node.fail
                if node.is_root:
                    break
            if token in node.next:
                node = node.next[token]
            score = node.node_score - state.node_score
        return score + node.output_score, node

    @staticmethod
    def matched(state: ContextNode) -> ContextNode | None:
        """The keyword end reached at ``state`` (itself or along its output arc), if any."""
        if state.is_end:
            return state
        return state.output


# --- keyword lists ------------------------------------------------------------------------


def _number(word: str, what: str, line: str) -> float:
    try:
        return float(word[1:])
    except ValueError:
        raise KeywordError(f"bad {what} {word!r} in keyword line {line.strip()!r}") from None


def parse_keyword_lines(lines: Sequence[str], piece_ids: Mapping[str, int]) -> list[Keyword]:
    """Keywords in sherpa-onnx's file syntax (tokens, ``:boost``, ``#threshold``,
    ``@PHRASE``); blank lines are skipped. Without ``@``, the phrase is the tokens' text."""
    keywords: list[Keyword] = []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        ids: list[int] = []
        pieces: list[str] = []
        unknown: list[str] = []
        boost = threshold = 0.0
        phrase = ""
        for word in stripped.split():
            if word in piece_ids:
                ids.append(piece_ids[word])
                pieces.append(word)
            elif word[0] == ":":
                boost = _number(word, "boost", line)
            elif word[0] == "#":
                threshold = _number(word, "threshold", line)
            elif word[0] == "@":
                phrase = word[1:]
            else:
                unknown.append(word)
        name = phrase or "".join(pieces).replace(SPM_BOUNDARY, " ").strip() or stripped
        if unknown:
            raise KeywordError(
                f"keyword {name!r}: unknown token(s) {', '.join(map(repr, unknown))}",
                hint="every token must be a piece of the bundle's tokenizer "
                "(see its tokens file), or give the keyword as a plain phrase",
            )
        if not ids:
            raise KeywordError(f"keyword line {stripped!r} has no tokens")
        keywords.append(Keyword(tuple(ids), name, boost, threshold))
    if not keywords:
        raise KeywordError("the keyword list is empty", hint="give at least one keyword")
    return keywords


def keywords_from_phrases(
    phrases: Sequence[str],
    encode: Callable[[str], Sequence[int]],
    *,
    unk_id: int | None = None,
    boost: float = 0.0,
    threshold: float = 0.0,
) -> list[Keyword]:
    """Plain phrases tokenised with ``encode`` (the bundle's SentencePiece model); a phrase
    that needs the unknown token is an error naming it."""
    keywords: list[Keyword] = []
    for raw in phrases:
        phrase = " ".join(raw.split())
        if not phrase:
            continue
        ids = [int(i) for i in encode(phrase)]
        if not ids:
            raise KeywordError(f"keyword {phrase!r} gives no tokens")
        if unk_id is not None and unk_id in ids:
            raise KeywordError(
                f"keyword {phrase!r}: the tokenizer has no pieces for part of it "
                "(it maps to the unknown token)",
                hint="use only characters the model was trained on (for English models: "
                "letters and apostrophes; this model's vocabulary is case-sensitive)",
            )
        keywords.append(Keyword(tuple(ids), phrase, boost, threshold))
    if not keywords:
        raise KeywordError("the keyword list is empty", hint="give at least one keyword")
    return keywords
