"""SentencePiece tokenizers shipped beside checkpoints (GigaAM e2e, NeMo)."""

from __future__ import annotations

from pathlib import Path

from speechport.errors import CheckpointError
from speechport.tokenizer import load_sentencepiece

SPM_BOUNDARY = "\u2581"


def sentencepiece_pieces(path: Path) -> list[str]:
    """The pieces of a SentencePiece model, in id order; a clear error if it is not one."""
    processor = load_sentencepiece(path, CheckpointError)
    return [processor.IdToPiece(i) for i in range(processor.GetPieceSize())]
