"""Cache-aware NeMo FastConformer transducers for streaming (Nemotron ASR streaming with
language prompts, Parakeet realtime EOU).

Checkpoints are ``.nemo`` archives, read as the Parakeet family reads them (members checked,
nothing extracted outside a private temporary directory, weights through the restricted
unpickler). A bundle holds one encoder per exported lookahead, each a fixed window of mel
frames with every cache explicit (see `speechport.nn.streaming_conformer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechport.errors import CheckpointError
from speechport.families.base import BundlePlan, LoadedCheckpoint
from speechport.families.nemo_streaming.bundle import FAMILY, StreamingCheckpoint, plan_bundle
from speechport.families.nemo_streaming.config import StreamingConfig
from speechport.families.nemo_streaming.model import StreamingTransducer, build_model
from speechport.families.parakeet import read_nemo_transducer


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
        nemo = read_nemo_transducer(Path(checkpoint), tokenizer, StreamingConfig.from_nemo)
        config: StreamingConfig = nemo.config
        model, notes = build_model(config, nemo.archive.state_dict, source=nemo.path)
        return nemo.loaded(
            FAMILY,
            config.variant,
            model,
            StreamingCheckpoint(config, nemo.tokens, nemo.model_bytes),
            notes,
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
