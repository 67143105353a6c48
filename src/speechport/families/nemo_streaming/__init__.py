"""Cache-aware NeMo FastConformer transducers for streaming (Nemotron ASR streaming with
language prompts, Parakeet realtime EOU).

Checkpoints are ``.nemo`` archives, read as the Parakeet family reads them (members checked,
nothing extracted outside a private temporary directory, weights through the restricted
unpickler). A bundle holds one encoder per exported lookahead, each a fixed window of mel
frames with every cache explicit (see `speechport.nn.streaming_conformer`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from speechport.errors import CheckpointError
from speechport.families.base import BundlePlan, LoadedCheckpoint
from speechport.families.nemo_archive import read_nemo_archive
from speechport.families.nemo_streaming.bundle import FAMILY, StreamingCheckpoint, plan_bundle
from speechport.families.nemo_streaming.config import StreamingConfig
from speechport.families.nemo_streaming.model import StreamingTransducer, build_model
from speechport.families.parakeet import TOKENIZER_KEY, archive_tokenizer
from speechport.fsutil import sha256_file


class NemoStreamingFamily:
    """Family ``nemo-streaming``: load cache-aware ``.nemo`` archives, describe their
    bundles (``lookaheads``: which to export, default the model's first)."""

    name = FAMILY

    def load(self, checkpoint: Path | None, *, tokenizer: Path | None = None) -> LoadedCheckpoint:
        if checkpoint is None:
            raise CheckpointError(
                "a streaming model needs a .nemo checkpoint",
                hint="pass --checkpoint nemotron-speech-streaming.nemo",
            )
        checkpoint = Path(checkpoint)
        archive = read_nemo_archive(checkpoint, wanted=(TOKENIZER_KEY,))
        try:
            config = StreamingConfig.from_nemo(archive.config, source=checkpoint)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"the config is malformed ({type(exc).__name__}: {exc})",
                path=checkpoint,
                component="config",
                hint="the archive is corrupt or not a NeMo transducer",
            ) from exc
        model_bytes, tokens = archive_tokenizer(archive, config.vocab_size, config.vocabulary)
        if tokenizer is not None and tokenizer.is_file() and tokenizer.read_bytes() != model_bytes:
            raise CheckpointError(
                "this SentencePiece model is not the one inside the .nemo archive",
                path=tokenizer,
                component="tokenizer",
                hint="a .nemo carries its tokenizer: leave out --tokenizer",
            )
        model, notes = build_model(config, archive.state_dict, source=checkpoint)
        return LoadedCheckpoint(
            family=FAMILY,
            variant=config.variant,
            model=model,
            config=StreamingCheckpoint(config, tokens, model_bytes),
            checkpoint=checkpoint,
            tokenizer_path=None,
            checkpoint_sha256=archive.sha256 or sha256_file(checkpoint),
            tokenizer_sha256=hashlib.sha256(model_bytes).hexdigest(),
            notes=notes,
        )

    def plan(
        self, loaded: LoadedCheckpoint, *, window_seconds: float | None = None, **options: Any
    ) -> BundlePlan:
        if window_seconds is not None:
            raise CheckpointError(
                "a streaming bundle has no window: it is fed chunk by chunk",
                hint="leave out --window (choose --lookahead instead)",
            )
        unknown = sorted(set(options) - {"lookaheads"})
        if unknown:
            raise CheckpointError(f"the {FAMILY} family takes no option {', '.join(unknown)}")
        lookaheads = options.get("lookaheads")
        return plan_bundle(loaded, lookaheads=None if lookaheads is None else tuple(lookaheads))


__all__ = ["NemoStreamingFamily", "StreamingConfig", "StreamingTransducer"]
