"""Detokenization and word grouping as GigaAM's frames_to_words does it."""

from __future__ import annotations

from speechport.manifest import TokenizerSpec
from speechport.tokenizer import Tokenizer

CHARS = [" ", "а", "б", "в"]


def test_char_vocabulary_words_split_on_the_space_token() -> None:
    tok = Tokenizer(TokenizerSpec("chars", "tokens.json", None, 4, " "), CHARS)
    ids = [1, 2, 0, 0, 3, 1, 0]
    assert tok.decode(ids) == "аб  ва "
    assert [(w.text, w.first, w.last) for w in tok.words(ids)] == [("аб", 0, 1), ("ва", 4, 5)]


def test_sentencepiece_pieces_without_the_model() -> None:
    pieces = ["\u2581при", "вет", "\u2581м", "<0xD0>", "<0xB8>", "\u2581"]
    tok = Tokenizer(TokenizerSpec("sentencepiece", "tokens.json", None, 6, "\u2581"), pieces)
    assert tok.decode([0, 1, 2, 3, 4]) == "привет ми"
    assert [(w.text, w.first, w.last) for w in tok.words([0, 1, 2, 3, 4, 5])] == [
        ("привет", 0, 1),
        ("ми", 2, 4),
    ]
