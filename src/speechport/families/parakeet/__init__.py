"""Parakeet: NVIDIA NeMo FastConformer transducers (Parakeet-TDT v2/v3, Parakeet-RNNT).

Checkpoints are ``.nemo`` archives, read by `speechport.families.nemo_archive` (members
checked before anything is read, nothing extracted outside a private temporary directory,
weights through the restricted unpickler). The config is validated into `ParakeetConfig`
and the weights mapped onto speechport's modules.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechport.errors import CheckpointError
from speechport.families.base import BundlePlan, LoadedCheckpoint, refuse_options
from speechport.families.nemo_archive import NemoArchive, read_nemo_archive
from speechport.families.parakeet.bundle import (
    DEFAULT_WINDOW_SECONDS,
    FAMILY,
    ParakeetCheckpoint,
    plan_bundle,
)
from speechport.families.parakeet.config import ParakeetConfig, full_size_config
from speechport.families.parakeet.model import ParakeetModel, build_model
from speechport.families.sentencepiece import sentencepiece_pieces
from speechport.fsutil import sha256_file

TOKENIZER_KEY = "tokenizer.model_path"


class ParakeetFamily:
    """Family ``parakeet``: load ``.nemo`` archives and describe their bundles."""

    name = FAMILY

    def load(self, checkpoint: Path | None, *, tokenizer: Path | None = None) -> LoadedCheckpoint:
        """Read a ``.nemo`` archive. Its own SentencePiece model is used; ``tokenizer``
        (e.g. the bundle's copy, given by the torch reference backend) must then be the same
        model."""
        if checkpoint is None:
            raise CheckpointError(
                "Parakeet needs a .nemo checkpoint",
                hint="pass --checkpoint parakeet-tdt-0.6b-v3.nemo",
            )
        nemo = read_nemo_transducer(Path(checkpoint), tokenizer, ParakeetConfig.from_nemo)
        config: ParakeetConfig = nemo.config
        model, notes = build_model(config, nemo.archive.state_dict, source=nemo.path)
        return nemo.loaded(
            FAMILY,
            config.variant,
            model,
            ParakeetCheckpoint(config, nemo.tokens, nemo.model_bytes),
            notes,
        )

    def plan(
        self, loaded: LoadedCheckpoint, *, window_seconds: float | None = None, **options: Any
    ) -> BundlePlan:
        buckets = options.pop("encoder_buckets", None)
        refuse_options(self.name, options)
        return plan_bundle(
            loaded,
            window_seconds=DEFAULT_WINDOW_SECONDS if window_seconds is None else window_seconds,
            encoder_buckets=buckets,
        )


@dataclass(frozen=True)
class NemoTransducer:
    """A ``.nemo`` transducer archive read and checked: its config (the family's type), its
    SentencePiece model and pieces."""

    path: Path
    archive: NemoArchive
    config: Any
    model_bytes: bytes
    tokens: list[str]

    def loaded(
        self, family: str, variant: str, model: Any, config: Any, notes: list[str]
    ) -> LoadedCheckpoint:
        return LoadedCheckpoint(
            family=family,
            variant=variant,
            model=model,
            config=config,
            checkpoint=self.path,
            tokenizer_path=None,
            checkpoint_sha256=self.archive.sha256 or sha256_file(self.path),
            tokenizer_sha256=hashlib.sha256(self.model_bytes).hexdigest(),
            notes=notes,
        )


def read_nemo_transducer(
    checkpoint: Path, tokenizer: Path | None, parse: Callable[..., Any]
) -> NemoTransducer:
    """Read a ``.nemo`` archive safely, its config with ``parse`` (``from_nemo(cfg,
    source=)``: a config with ``vocab_size`` and ``vocabulary``) and its tokenizer. A
    ``tokenizer`` given too (e.g. the bundle's copy, by the torch reference backend) must be
    the archive's own."""
    archive = read_nemo_archive(checkpoint, wanted=(TOKENIZER_KEY,))
    try:
        config = parse(archive.config, source=checkpoint)
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
    return NemoTransducer(checkpoint, archive, config, model_bytes, tokens)


def archive_tokenizer(
    archive: NemoArchive, vocab_size: int, vocabulary: tuple[str, ...]
) -> tuple[bytes, list[str]]:
    """The archive's SentencePiece model and its pieces, checked against the model's
    ``vocab_size`` and (where the config lists it) the joint's ``vocabulary``."""
    tokenizer_cfg = archive.config.get("tokenizer") or {}
    if "model_path" not in tokenizer_cfg:
        raise CheckpointError(
            "the config names no tokenizer model (tokenizer.model_path)",
            path=archive.path,
            component="tokenizer",
            hint="pass a .nemo of a SentencePiece (BPE) transducer",
        )
    data = archive.referenced(tokenizer_cfg["model_path"], "the tokenizer model")
    with tempfile.TemporaryDirectory(prefix="speechport-spm-") as scratch:
        path = Path(scratch) / "tokenizer.model"
        path.write_bytes(data)
        try:
            pieces = sentencepiece_pieces(path)
        except CheckpointError as exc:
            raise CheckpointError(
                exc.message, path=archive.path, component="tokenizer", hint=exc.hint
            ) from exc
    if len(pieces) != vocab_size:
        raise CheckpointError(
            f"the tokenizer has {len(pieces)} pieces but the model predicts "
            f"{vocab_size} tokens + blank",
            path=archive.path,
            component="tokenizer",
            hint="the archive is corrupt or mixes files of different models",
        )
    if vocabulary and list(vocabulary) != pieces:
        raise CheckpointError(
            "the tokenizer's pieces differ from the joint's vocabulary in the config",
            path=archive.path,
            component="tokenizer",
            hint="the archive is corrupt or mixes files of different models",
        )
    return data, pieces


__all__ = [
    "ParakeetCheckpoint",
    "ParakeetConfig",
    "ParakeetFamily",
    "ParakeetModel",
    "build_model",
    "full_size_config",
]
