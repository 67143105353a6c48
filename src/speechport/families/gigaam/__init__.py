"""GigaAM v3 (salute-developers/GigaAM): Conformer encoders with RNN-T or CTC heads.

Checkpoints are ``torch.save({"cfg": <OmegaConf DictConfig>, "state_dict": ...})``. They
are read through the restricted unpickler (OmegaConf classes become inert records) and
mapped onto speechport's own modules. Four v3 variants share the encoder: ``v3_e2e_rnnt``
and ``v3_e2e_ctc`` (SentencePiece, punctuated text), ``v3_rnnt`` and ``v3_ctc`` (the
33-symbol Russian alphabet with a space, blank last).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechport.errors import CheckpointError
from speechport.families.base import BundlePlan, LoadedCheckpoint, refuse_options
from speechport.families.gigaam.bundle import FAMILY, plan_bundle
from speechport.families.gigaam.config import GigaAMConfig, full_size_config
from speechport.families.gigaam.model import GigaAMASR, build_model
from speechport.families.omegaconf_compat import omegaconf_globals, to_plain
from speechport.families.sentencepiece import sentencepiece_pieces
from speechport.families.torch_checkpoint import load_torch_checkpoint
from speechport.fsutil import sha256_file


class GigaAMFamily:
    """Family ``gigaam``: load upstream checkpoints and describe their bundles."""

    name = FAMILY

    def load(self, checkpoint: Path | None, *, tokenizer: Path | None = None) -> LoadedCheckpoint:
        if checkpoint is None:
            raise CheckpointError(
                "GigaAM needs a checkpoint",
                hint="pass --checkpoint v3_e2e_rnnt.ckpt (upstream's "
                "gigaam.load_model downloads them to ~/.cache/gigaam)",
            )
        checkpoint = Path(checkpoint)
        raw = load_torch_checkpoint(checkpoint, extra_globals=omegaconf_globals())
        if not isinstance(raw, dict) or "cfg" not in raw or "state_dict" not in raw:
            keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            raise CheckpointError(
                f"not a GigaAM checkpoint: expected a dict with 'cfg' and 'state_dict', "
                f"found {keys}",
                path=checkpoint,
                hint="pass an upstream GigaAM .ckpt file (gigaam.load_model downloads them)",
            )
        cfg = to_plain(raw["cfg"])
        if not isinstance(cfg, dict):
            raise CheckpointError("the checkpoint's cfg is not a mapping", path=checkpoint)
        try:
            config = GigaAMConfig.from_upstream(cfg, source=checkpoint)
        except CheckpointError as exc:
            raise CheckpointError(
                exc.message, path=checkpoint, component="config", hint=exc.hint
            ) from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"the config is malformed ({type(exc).__name__}: {exc})",
                path=checkpoint,
                component="config",
                hint="the checkpoint is corrupt or not a GigaAM v3 ASR checkpoint",
            ) from exc
        tokenizer_path = self._resolve_tokenizer(config, checkpoint, tokenizer)
        model, notes = build_model(config, raw["state_dict"], source=checkpoint)
        return LoadedCheckpoint(
            family=FAMILY,
            variant=config.model_name,
            model=model,
            config=config,
            checkpoint=checkpoint,
            tokenizer_path=tokenizer_path,
            checkpoint_sha256=sha256_file(checkpoint),
            tokenizer_sha256=None if tokenizer_path is None else sha256_file(tokenizer_path),
            notes=notes,
        )

    @staticmethod
    def _resolve_tokenizer(
        config: GigaAMConfig, checkpoint: Path, tokenizer: Path | None
    ) -> Path | None:
        if config.vocabulary is not None:
            return None
        candidates = (
            [tokenizer]
            if tokenizer is not None
            else [
                checkpoint.with_name(f"{config.model_name}_tokenizer.model"),
                checkpoint.with_name("tokenizer.model"),
            ]
        )
        for candidate in candidates:
            if candidate.is_file():
                _check_sentencepiece(candidate, config)
                return candidate
        raise CheckpointError(
            f"{config.model_name} needs its SentencePiece model and none was found "
            f"(looked for {', '.join(str(c) for c in candidates)})",
            path=checkpoint,
            component="tokenizer",
            hint="pass --tokenizer PATH (upstream names it <variant>_tokenizer.model)",
        )

    def plan(
        self, loaded: LoadedCheckpoint, *, window_seconds: float | None = None, **options: Any
    ) -> BundlePlan:
        buckets = options.pop("encoder_buckets", None)
        refuse_options(self.name, options)
        return plan_bundle(
            loaded,
            window_seconds=30.0 if window_seconds is None else window_seconds,
            encoder_buckets=buckets,
        )


def _check_sentencepiece(path: Path, config: GigaAMConfig) -> None:
    pieces = sentencepiece_pieces(path)
    if len(pieces) != config.num_classes - 1:
        raise CheckpointError(
            f"tokenizer has {len(pieces)} pieces but the model predicts "
            f"{config.num_classes - 1} tokens + blank",
            path=path,
            component="tokenizer",
            hint="pass the tokenizer that belongs to this checkpoint",
        )


__all__ = ["GigaAMASR", "GigaAMConfig", "GigaAMFamily", "build_model", "full_size_config"]
