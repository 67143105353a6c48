"""Pieces of ``speechport bench kws`` that run in a test: the placeholder tokenizer of the
full-size model and the chunk timer (on the trained spotter's ONNX encoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechport.bench.kws import VOCAB_SIZE, chunk_times, placeholder_tokenizer
from speechport.families.sentencepiece import sentencepiece_pieces

TRAINED = Path(__file__).parent / "data" / "kws_trained"


def test_placeholder_tokenizer_has_the_real_size_and_icefall_symbols(tmp_path: Path) -> None:
    pieces = sentencepiece_pieces(placeholder_tokenizer(tmp_path / "bpe.model"))
    assert len(pieces) == VOCAB_SIZE == 500
    assert pieces[:3] == ["<blk>", "<sos/eos>", "<unk>"]


def test_chunk_times_thread_the_caches(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from speechport.conversion import convert
    from speechport.runtime import load_bundle

    out = tmp_path / "bundle"
    convert("zipformer-kws", TRAINED / "pretrained.pt", out, formats="onnx", quiet=True)
    encoder = load_bundle(out, "onnx").of_kind("streaming_encoder")
    calls: list[int] = []

    def counting(*inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        calls.append(int(inputs[-1].reshape(-1)[0]))  # processed_lens, the last input
        return encoder(*inputs)

    counting.spec = encoder.spec  # type: ignore[attr-defined]
    times = chunk_times(counting, 3)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert calls == [0, 16, 32]  # processed_lens grows by one chunk per call
