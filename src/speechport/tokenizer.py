"""Token ids to text and words, from a bundle's ``tokens.json`` (and SentencePiece model).

Runtime path: needs only ``sentencepiece`` for byte-fallback-exact detokenization; without
the model file, pieces are joined with the word-boundary marker turned into spaces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechport.errors import BundleError, SpeechportError
from speechport.manifest import TokenizerSpec

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@dataclass(frozen=True)
class WordSpan:
    """A word and the token positions (indices into the token sequence) it spans."""

    text: str
    first: int
    last: int


class Tokenizer:
    """Detokenize ids and group them into words (SentencePiece ``▁`` prefix or space token)."""

    def __init__(self, spec: TokenizerSpec, pieces: Sequence[str], sp_model: Any | None = None):
        if len(pieces) != spec.vocab_size:
            raise BundleError(
                f"{spec.tokens_file} has {len(pieces)} tokens, the manifest says {spec.vocab_size}"
            )
        self.spec = spec
        self.pieces = list(pieces)
        self._sp = sp_model

    @classmethod
    def from_bundle(cls, bundle: Path, spec: TokenizerSpec) -> Tokenizer:
        from speechport.limits import read_json

        tokens_path = bundle / spec.tokens_file
        pieces = read_json(tokens_path, what="the token list", error=BundleError)
        if not isinstance(pieces, list) or not all(isinstance(p, str) for p in pieces):
            raise BundleError(
                "the token list must be a JSON list of strings (the pieces)", path=tokens_path
            )
        sp_model = None
        if spec.model_file:
            model_path = bundle / spec.model_file
            if not model_path.is_file():
                raise BundleError("tokenizer model is missing", path=model_path)
            sp_model = load_sentencepiece(model_path, BundleError)
        return cls(spec, pieces, sp_model)

    def piece(self, token_id: int) -> str:
        return self.pieces[token_id]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of a token sequence."""
        ids = [int(i) for i in ids]
        if self._sp is not None:
            return str(self._sp.DecodeIds(ids))
        if self.spec.kind == "chars":
            return "".join(self.pieces[i] for i in ids)
        return _join_pieces([self.pieces[i] for i in ids], self.spec.word_boundary)

    def decode_many(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        """``decode`` of each sequence (SentencePiece decodes them all in one call)."""
        lists = [[int(i) for i in ids] for ids in sequences]
        if self._sp is not None and lists:
            return [str(text) for text in self._sp.DecodeIds(lists)]
        return [self.decode(ids) for ids in lists]

    def words(self, ids: Sequence[int]) -> list[WordSpan]:
        """Group tokens into words the way GigaAM's ``frames_to_words`` does: a piece
        starting with the boundary marker, or a space token, starts a new word."""
        groups: list[list[int]] = []  # positions in ids, a list per word
        current: list[int] = []
        boundary = self.spec.word_boundary
        space = boundary == " "  # a space token between words, else a prefix on the first piece
        for position, token_id in enumerate(ids):
            piece = self.pieces[int(token_id)]
            if piece == " " if space else piece.startswith(boundary):
                if current:
                    groups.append(current)
                    current = []
                if space:
                    continue
            current.append(position)
        if current:
            groups.append(current)
        texts = self.decode_many([[ids[p] for p in group] for group in groups])
        return [
            WordSpan(text.strip(), group[0], group[-1])
            for text, group in zip(texts, groups, strict=True)
            if text.strip()
        ]


def load_sentencepiece(path: Path, error: type[SpeechportError] = BundleError) -> Any:
    """A loaded SentencePiece processor, or ``error`` naming the file if it is not one."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor()
    try:
        processor.Load(str(path))
    except (OSError, RuntimeError) as exc:
        raise error(
            "not a SentencePiece model",
            path=path,
            component="tokenizer",
            hint="pass the .model file of the tokenizer",
        ) from exc
    return processor


def _join_pieces(pieces: list[str], boundary: str) -> str:
    out = bytearray()
    for piece in pieces:
        match = _BYTE_PIECE.fullmatch(piece)
        if match:
            out.append(int(match.group(1), 16))
        else:
            out.extend(piece.replace(boundary, " ").encode("utf-8"))
    return out.decode("utf-8", errors="replace").strip()
