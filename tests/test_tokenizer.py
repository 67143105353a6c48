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


def test_sentencepiece_words_decode_each_word_as_the_model_does() -> None:
    """With the model, every word's text is the model's decoding of its own pieces (all
    words decoded in one call), words start at pieces with the boundary marker, and a
    word whose text is empty is dropped."""
    from pathlib import Path

    import numpy as np

    from speechport.tokenizer import load_sentencepiece

    sp = load_sentencepiece(Path(__file__).parent / "data" / "gigaam" / "tokenizer.model")
    size = sp.GetPieceSize()
    pieces = [sp.IdToPiece(i) for i in range(size)]
    tok = Tokenizer(TokenizerSpec("sentencepiece", "tokens.json", None, size, "\u2581"), pieces, sp)
    ids = [int(i) for i in np.random.default_rng(0).integers(0, size, size=400)]
    starts = [p for p, i in enumerate(ids) if p == 0 or pieces[i].startswith("\u2581")]
    groups = [list(range(a, b)) for a, b in zip(starts, [*starts[1:], len(ids)], strict=True)]
    want = [(str(sp.DecodeIds([ids[p] for p in g])).strip(), g[0], g[-1]) for g in groups]
    want = [w for w in want if w[0]]
    assert [(w.text, w.first, w.last) for w in tok.words(ids)] == want
    assert len(want) >= 20  # byte pieces included: random ids start few words
    assert tok.decode_many([ids[:5], [], ids[5:9]]) == [
        tok.decode(ids[:5]),
        "",
        tok.decode(ids[5:9]),
    ]
