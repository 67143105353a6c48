"""icefall's streaming Zipformer2 transducer for open-vocabulary keyword spotting.

The model of icefall's gigaspeech KWS recipe (``egs/gigaspeech/KWS/zipformer``; sherpa-onnx
ships it as ``sherpa-onnx-kws-zipformer-gigaspeech-3.3M-2024-01-01``). The checkpoint is
icefall's ``pretrained.pt`` (``{"model": state_dict}``), read as data through the restricted
unpickler; its hyper-parameters come from a JSON file beside it (``model_config.json``,
icefall's train.py argument names, e.g. ``"encoder_dim": "128,128,128,128,128,128"``) or,
without one, are the recipe's (3,487,033 parameters). The SentencePiece model
(``bpe.model``) is taken from ``--tokenizer`` or from beside the checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from speechport.errors import CheckpointError
from speechport.families.base import BundlePlan, LoadedCheckpoint, load_weights
from speechport.families.torch_checkpoint import load_torch_checkpoint
from speechport.fsutil import sha256_file

FAMILY = "zipformer-kws"
CONFIG_NAMES = ("model_config.json", "config.json")
# weights of training-only heads (the pruned RNN-T's simple projections, a CTC head)
_UNUSED_PREFIXES = ("simple_am_proj.", "simple_lm_proj.", "ctc_output.")
_PER_STACK = (
    "num_encoder_layers",
    "downsampling_factor",
    "feedforward_dim",
    "num_heads",
    "encoder_dim",
    "query_head_dim",
    "value_head_dim",
    "pos_head_dim",
    "cnn_module_kernel",
)
_SCALARS = (
    "feature_dim",
    "pos_dim",
    "decoder_dim",
    "joiner_dim",
    "vocab_size",
    "blank_id",
    "context_size",
    "layer1_channels",
    "layer2_channels",
    "layer3_channels",
)


def _int_tuple(value: Any, name: str, where: Path | None) -> tuple[int, ...]:
    try:
        if isinstance(value, (list, tuple)):
            return tuple(int(v) for v in value)
        return tuple(int(v) for v in str(value).split(","))
    except ValueError:
        raise CheckpointError(f"config {name}: not integers: {value!r}", path=where) from None


def config_from_dict(data: dict[str, Any], where: Path | None = None) -> Any:
    """A ``ZipformerConfig`` from icefall's train.py arguments (only the streaming,
    transducer, output-downsampling-2 setting is supported; anything else is refused)."""
    from speechport.families.zipformer_kws.model import ZipformerConfig

    def refuse(what: str) -> CheckpointError:
        return CheckpointError(
            f"config: {what}",
            path=where,
            hint="this family converts the "
            "streaming (causal) Zipformer2 transducer of icefall's KWS recipe",
        )

    if not data.get("causal", True):
        raise refuse("causal is false: only streaming (causal) models can be converted")
    if not data.get("use_transducer", True):
        raise refuse("use_transducer is false")
    if int(data.get("subsampling_factor", 4)) != 4:
        raise refuse(f"subsampling_factor {data.get('subsampling_factor')} (expected 4)")
    if int(data.get("output_downsampling_factor", 2)) != 2:
        raise refuse("output_downsampling_factor must be 2")
    values: dict[str, Any] = {}
    defaults = ZipformerConfig()
    stacks = len(_int_tuple(data.get("downsampling_factor", "1,2,4,8,4,2"), "ds", where))
    for name in _PER_STACK:
        if name in data:
            items = _int_tuple(data[name], name, where)
            if len(items) == 1:
                items = items * stacks
            if len(items) != stacks:
                raise refuse(f"{name} has {len(items)} values for {stacks} stacks")
            values[name] = items
    for name in _SCALARS:
        if name in data:
            values[name] = int(data[name])
    for name in ("chunk_size", "left_context_frames"):
        if name in data:
            items = _int_tuple(data[name], name, where)
            if len(items) != 1 or items[0] <= 0:
                raise refuse(f"{name} must be one positive value for streaming, got {data[name]}")
            values[name] = items[0]
    unknown_fields = set(values) - {f.name for f in fields(ZipformerConfig)}
    assert not unknown_fields, unknown_fields
    cfg = ZipformerConfig(
        **{**{f.name: getattr(defaults, f.name) for f in fields(defaults)}, **values}
    )
    if cfg.chunk_size % max(cfg.downsampling_factor) or cfg.chunk_size % 2:
        raise refuse(f"chunk_size {cfg.chunk_size} is not a multiple of every downsampling factor")
    return cfg


def read_config(checkpoint: Path) -> tuple[Any, Path | None]:
    """The config beside ``checkpoint`` (or the recipe's defaults when there is none)."""
    from speechport.families.zipformer_kws.model import ZipformerConfig

    for name in CONFIG_NAMES:
        path = checkpoint.with_name(name)
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise CheckpointError(f"cannot read the model config ({exc})", path=path) from exc
            if not isinstance(data, dict):
                raise CheckpointError("the model config is not a JSON object", path=path)
            return config_from_dict(data, path), path
    return ZipformerConfig(), None


class ZipformerKwsFamily:
    """Family ``zipformer_kws``: icefall's streaming Zipformer2 transducer for keyword
    spotting (Core ML and ONNX in icefall's streaming export layout)."""

    name = FAMILY

    def load(self, checkpoint: Path | None, *, tokenizer: Path | None = None) -> LoadedCheckpoint:
        from speechport.families.zipformer_kws.model import ZipformerTransducer, count_parameters

        if checkpoint is None:
            raise CheckpointError(
                "zipformer-kws needs a checkpoint",
                hint="pass icefall's pretrained.pt (with model_config.json and bpe.model "
                "beside it)",
            )
        checkpoint = Path(checkpoint)
        cfg, config_path = read_config(checkpoint)
        raw = load_torch_checkpoint(checkpoint)
        state = raw.get("model") if isinstance(raw, dict) else None
        if not isinstance(state, dict):
            keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            raise CheckpointError(
                f"not an icefall checkpoint: expected a dict with 'model' (a state_dict), "
                f"found {keys}",
                path=checkpoint,
                hint="pass the pretrained.pt that icefall's export.py writes",
            )
        weights = {
            k: np.asarray(v)
            for k, v in state.items()
            if isinstance(v, np.ndarray) and not k.startswith(_UNUSED_PREFIXES)
        }
        model = ZipformerTransducer(cfg)
        described = (
            f"the Zipformer2 transducer {config_path.name} describes"
            if config_path is not None
            else "the recipe's full-size Zipformer2 transducer (no model_config.json beside "
            "the checkpoint)"
        )
        hint = (
            "put the model's model_config.json (icefall's train.py arguments) beside the "
            "checkpoint, or pass a checkpoint of this model"
        )
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        wrong = [
            f"{k} {tuple(v.shape)} (expected {expected[k]})"
            for k, v in weights.items()
            if k in expected and tuple(v.shape) != expected[k]
        ]
        if wrong:
            shown = "; ".join(wrong[:3]) + (f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else "")
            raise CheckpointError(
                f"weights do not fit {described}: {shown}", path=checkpoint, hint=hint
            )
        load_weights(model, weights, source=checkpoint, architecture=described, hint=hint)
        model.eval()
        bpe = Path(tokenizer) if tokenizer is not None else checkpoint.with_name("bpe.model")
        if not bpe.is_file():
            raise CheckpointError(
                "the SentencePiece model (bpe.model) is missing",
                path=bpe,
                hint="pass --tokenizer bpe.model (the data/lang_bpe_500/bpe.model of the recipe)",
            )
        from speechport.families.sentencepiece import sentencepiece_pieces

        pieces = sentencepiece_pieces(bpe)
        if len(pieces) != cfg.vocab_size:
            raise CheckpointError(
                f"the tokenizer has {len(pieces)} pieces, the model {cfg.vocab_size} outputs",
                path=bpe,
            )
        return LoadedCheckpoint(
            family=FAMILY,
            variant=f"zipformer2-kws-chunk{cfg.chunk_size}-left{cfg.left_context_frames}",
            model=model,
            config=cfg,
            checkpoint=checkpoint,
            tokenizer_path=bpe,
            checkpoint_sha256=sha256_file(checkpoint),
            tokenizer_sha256=sha256_file(bpe),
            notes=[f"{count_parameters(model):,} parameters ({described})"],
        )

    def plan(
        self, loaded: LoadedCheckpoint, *, window_seconds: float | None = None, **options: Any
    ) -> BundlePlan:
        from speechport.families.base import refuse_options
        from speechport.families.zipformer_kws.bundle import plan_bundle

        refuse_options(self.name, options)

        return plan_bundle(loaded)


__all__ = ["FAMILY", "ZipformerKwsFamily", "config_from_dict", "read_config"]
