"""GigaAM upstream configs: what defines the computation, validated with clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechport.errors import CheckpointError
from speechport.features.spec import LogMelSpec


@dataclass(frozen=True)
class GigaAMConfig:
    """The parts of an upstream config that define the computation."""

    model_name: str
    head: str  # "rnnt" | "ctc"
    frontend: LogMelSpec
    feat_in: int
    d_model: int
    n_layers: int
    n_heads: int
    ff_expansion_factor: int
    subsampling_factor: int
    subs_kernel_size: int
    conv_kernel_size: int
    conv_norm_type: str
    pos_emb_max_len: int
    num_classes: int  # tokens + blank
    pred_hidden: int = 0
    pred_rnn_layers: int = 0
    joint_hidden: int = 0
    vocabulary: tuple[str, ...] | None = None
    tokenizer_model: str | None = None
    max_symbols_per_frame: int = 10
    upstream: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def blank_id(self) -> int:
        return self.num_classes - 1

    @property
    def num_stages(self) -> int:
        stages = int(np.log2(self.subsampling_factor))
        if 2**stages != self.subsampling_factor:
            raise CheckpointError(
                f"subsampling factor {self.subsampling_factor} is not a power of two"
            )
        return stages

    @classmethod
    def from_upstream(cls, cfg: dict[str, Any], *, source: Path | None = None) -> GigaAMConfig:
        """Validate and read an upstream config (plain dict); errors say what is unsupported."""

        def fail(message: str, hint: str | None = None) -> CheckpointError:
            return CheckpointError(message, path=source, component="config", hint=hint)

        missing = [k for k in ("preprocessor", "encoder", "head", "decoding") if k not in cfg]
        if missing:
            raise fail(
                f"not a GigaAM ASR checkpoint: its config has no {', '.join(missing)}",
                "pass a GigaAM v3 ASR checkpoint (v3_e2e_rnnt, v3_rnnt, v3_e2e_ctc or v3_ctc)",
            )
        pre, enc, head = cfg["preprocessor"], cfg["encoder"], cfg["head"]
        name = str(cfg.get("model_name", "gigaam"))
        target = str(enc.get("_target_", ""))
        if not target.endswith("ConformerEncoder"):
            raise fail(f"unknown encoder class {target!r}; GigaAM uses ConformerEncoder")
        if enc.get("self_attention_model", "rotary") != "rotary":
            raise fail(
                f"{name}: {enc.get('self_attention_model')!r} attention (GigaAM v1/v2) is not "
                "supported; speechport converts GigaAM v3 (rotary attention)"
            )
        if enc.get("subsampling", "conv2d") != "conv1d":
            raise fail(
                f"{name}: {enc.get('subsampling')!r} subsampling (GigaAM v1/v2) is not "
                "supported; speechport converts GigaAM v3 (conv1d subsampling)"
            )
        head_target = str(head.get("_target_", ""))
        if head_target.endswith("RNNTHead"):
            kind = "rnnt"
            dec, joint = head["decoder"], head["joint"]
            num_classes = int(dec["num_classes"])
            if int(joint["num_classes"]) != num_classes:
                raise fail("decoder and joint disagree on the number of classes")
            extra = {
                "pred_hidden": int(dec["pred_hidden"]),
                "pred_rnn_layers": int(dec.get("pred_rnn_layers", 1)),
                "joint_hidden": int(joint["joint_hidden"]),
            }
        elif head_target.endswith("CTCHead"):
            kind = "ctc"
            num_classes = int(head["num_classes"])
            extra = {}
        else:
            raise fail(
                f"head {head_target or '?'!r} is not an ASR head (RNNTHead or CTCHead)",
                "speechport converts GigaAM ASR models; emotion and SSL models have no decoder",
            )
        decoding = cfg["decoding"]
        vocabulary = decoding.get("vocabulary")
        tokenizer_model = decoding.get("model_path")
        if vocabulary is None and tokenizer_model is None:
            raise fail("the config names neither a vocabulary nor a SentencePiece model")
        sample_rate = int(pre.get("sample_rate", cfg.get("sample_rate", 16000)))
        # Upstream's FeatureExtractor hands torchaudio's MelSpectrogram only these keys;
        # everything else (mel scale, norm, padding) is torchaudio's default: HTK mel, no
        # filter norm, periodic Hann, reflect padding when centred. Keys such as
        # ``mel_scale`` in the config are not passed on upstream, so they are not here either.
        frontend = LogMelSpec(
            sample_rate=sample_rate,
            n_fft=int(pre.get("n_fft", sample_rate // 40)),
            win_length=int(pre.get("win_length", sample_rate // 40)),
            hop_length=int(pre.get("hop_length", sample_rate // 100)),
            center=bool(pre.get("center", True)),
            pad_mode="reflect",
            n_mels=int(pre.get("features", 64)),
            mel_scale="htk",
            mel_norm=None,
        )
        if int(enc["feat_in"]) != frontend.n_mels:
            raise fail(f"encoder feat_in {enc['feat_in']} != {frontend.n_mels} mel bins")
        config = cls(
            model_name=name,
            head=kind,
            frontend=frontend,
            feat_in=int(enc["feat_in"]),
            d_model=int(enc["d_model"]),
            n_layers=int(enc["n_layers"]),
            n_heads=int(enc["n_heads"]),
            ff_expansion_factor=int(enc.get("ff_expansion_factor", 4)),
            subsampling_factor=int(enc.get("subsampling_factor", 4)),
            subs_kernel_size=int(enc.get("subs_kernel_size", 5)),
            conv_kernel_size=int(enc.get("conv_kernel_size", 31)),
            conv_norm_type=str(enc.get("conv_norm_type", "batch_norm")),
            pos_emb_max_len=int(enc.get("pos_emb_max_len", 5000)),
            num_classes=num_classes,
            vocabulary=None if vocabulary is None else tuple(str(v) for v in vocabulary),
            tokenizer_model=None if tokenizer_model is None else str(tokenizer_model),
            max_symbols_per_frame=int(decoding.get("max_symbols_per_step", 10)),
            upstream=cfg,
            **extra,
        )
        config.validate(fail)
        return config

    def validate(self, fail: Any) -> None:
        """Reject values no GigaAM v3 model can have, before building anything."""
        sizes = {
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "num_classes": self.num_classes,
            "feat_in": self.feat_in,
        }
        for key, value in sizes.items():
            if value <= 0:
                raise fail(f"{key} must be positive, got {value}")
        if self.max_symbols_per_frame <= 0:
            raise fail(f"max_symbols_per_step must be positive, got {self.max_symbols_per_frame}")
        if self.d_model % self.n_heads:
            raise fail(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.conv_norm_type not in ("layer_norm", "batch_norm"):
            raise fail(f"unknown conv norm type {self.conv_norm_type!r}")
        if self.subsampling_factor < 2 or self.subsampling_factor & (self.subsampling_factor - 1):
            raise fail(f"subsampling factor {self.subsampling_factor} is not a power of two")
        if (
            self.head == "rnnt"
            and min(self.pred_hidden, self.pred_rnn_layers, self.joint_hidden) <= 0
        ):
            raise fail("prediction and joint sizes must be positive")


def full_size_config(
    variant: str = "v3_e2e_rnnt",
    *,
    d_model: int = 768,
    n_layers: int = 16,
    n_heads: int = 16,
    ff_expansion_factor: int = 4,
    hidden: int = 320,
) -> dict[str, Any]:
    """An upstream-shaped config of the full-size v3 architecture (for benchmarks with
    random weights): d_model 768, 16 layers, 16 heads, prediction/joint ``hidden`` 320; the
    sizes can shrink (the same architecture for tests)."""
    e2e = "e2e" in variant
    num_classes = 1025 if e2e else 34
    head: dict[str, Any]
    if variant.endswith("rnnt"):
        head = {
            "_target_": "gigaam.decoder.RNNTHead",
            "decoder": {
                "pred_hidden": hidden,
                "pred_rnn_layers": 1,
                "num_classes": num_classes,
            },
            "joint": {
                "enc_hidden": d_model,
                "pred_hidden": hidden,
                "joint_hidden": hidden,
                "num_classes": num_classes,
            },
        }
    else:
        head = {
            "_target_": "gigaam.decoder.CTCHead",
            "feat_in": d_model,
            "num_classes": num_classes,
        }
    return {
        "model_name": variant,
        "sample_rate": 16000,
        "preprocessor": {
            "sample_rate": 16000,
            "features": 64,
            "win_length": 320,
            "hop_length": 160,
            "n_fft": 320,
            "mel_scale": "htk",
            "mel_norm": None,
            "center": False,
        },
        "encoder": {
            "_target_": "gigaam.encoder.ConformerEncoder",
            "feat_in": 64,
            "n_layers": n_layers,
            "d_model": d_model,
            "subsampling_factor": 4,
            "ff_expansion_factor": ff_expansion_factor,
            "self_attention_model": "rotary",
            "pos_emb_max_len": 5000,
            "n_heads": n_heads,
            "conv_kernel_size": 5,
            "subs_kernel_size": 5,
            "subsampling": "conv1d",
            "conv_norm_type": "layer_norm",
        },
        "head": head,
        "decoding": {
            "model_path": "tokenizer.model" if e2e else None,
            "vocabulary": None if e2e else [" ", *(chr(ord("а") + i) for i in range(32))],
        },
    }
