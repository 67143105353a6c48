"""SentencePiece tokenizers shipped beside checkpoints (GigaAM e2e, NeMo)."""

from __future__ import annotations

from pathlib import Path

from speechport.errors import CheckpointError

SPM_BOUNDARY = "\u2581"


def sentencepiece_pieces(path: Path) -> list[str]:
    """The pieces of a SentencePiece model, in id order; a clear error if it is not one."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor()
    try:
        processor.Load(str(path))
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(
            "not a SentencePiece model",
            path=path,
            component="tokenizer",
            hint="pass the .model file of the tokenizer",
        ) from exc
    return [processor.IdToPiece(i) for i in range(processor.GetPieceSize())]
