"""Cache-aware NeMo FastConformer transducers (Nemotron ASR streaming, Parakeet realtime EOU):
the parts of the config that define the computation, validated with clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechport.errors import CheckpointError
from speechport.families.parakeet.config import nemo_frontend
from speechport.features.spec import LogMelSpec

MODEL_CLASSES = ("EncDecRNNTBPEModel", "EncDecRNNTBPEModelWithPrompt")
PRE_ENCODE_HISTORY = 9  # mel frames of history before each chunk: subsampling factor + 1
END_OF_UTTERANCE = "<EOU>"
END_OF_BACKCHANNEL = "<EOB>"


@dataclass(frozen=True)
class StreamingConfig:
    """A cache-aware encoder (``chunked_limited`` attention, causal subsampling and
    convolutions) with an RNN-T head."""

    model_class: str
    frontend: LogMelSpec
    feat_in: int
    d_model: int
    n_layers: int
    n_heads: int
    ff_expansion_factor: int
    subsampling_factor: int
    subsampling_conv_channels: int
    conv_kernel_size: int
    xscaling: bool
    use_bias: bool
    att_context_sizes: tuple[tuple[int, int], ...]  # (left, lookahead); the first is default
    vocab_size: int  # tokens, blank excluded (blank id = vocab_size)
    pred_hidden: int
    pred_rnn_layers: int
    joint_hidden: int
    max_symbols_per_frame: int = 10
    num_prompts: int = 0
    prompt_dictionary: dict[str, int] = field(default_factory=dict)
    vocabulary: tuple[str, ...] = ()

    @property
    def blank_id(self) -> int:
        return self.vocab_size

    @property
    def lookaheads(self) -> tuple[int, ...]:
        return tuple(right for _, right in self.att_context_sizes)

    @property
    def left_context(self) -> int:
        return self.att_context_sizes[0][0]

    @property
    def variant(self) -> str:
        if self.num_prompts:
            return "nemotron-streaming"
        if END_OF_UTTERANCE in self.vocabulary:
            return "parakeet-realtime-eou"
        return "fastconformer-streaming"

    @classmethod
    def from_nemo(cls, cfg: dict[str, Any], *, source: Path | None = None) -> StreamingConfig:
        """Validate and read a ``model_config.yaml`` (plain dict)."""

        def fail(message: str, hint: str | None = None) -> CheckpointError:
            return CheckpointError(message, path=source, component="config", hint=hint)

        target = str(cfg.get("target", cfg.get("_target_", "")))
        model_class = target.rsplit(".", 1)[-1]
        if model_class not in MODEL_CLASSES:
            raise fail(
                f"unknown model class {target or '(none)'!r}; the streaming family converts "
                f"cache-aware NeMo transducers ({', '.join(MODEL_CLASSES)})",
                "pass a cache-aware RNN-T .nemo (Nemotron ASR streaming, Parakeet realtime EOU)",
            )
        missing = [k for k in ("preprocessor", "encoder", "decoder", "joint") if k not in cfg]
        if missing:
            raise fail(f"the config has no {', '.join(missing)} section")
        pre, enc, dec, joint = cfg["preprocessor"], cfg["encoder"], cfg["decoder"], cfg["joint"]
        if str(enc.get("att_context_style", "regular")) != "chunked_limited" or not bool(
            enc.get("causal_downsampling", False)
        ):
            raise fail(
                "this encoder is not cache-aware (it needs att_context_style: chunked_limited "
                "and causal_downsampling: true)",
                "an offline model converts with `speechport convert parakeet`",
            )
        for key, want in (
            ("self_attention_model", "rel_pos"),
            ("subsampling", "dw_striding"),
            ("conv_norm_type", "layer_norm"),
            ("conv_context_size", "causal"),
        ):
            if str(enc.get(key, want)) != want:
                raise fail(f"encoder {key} {enc.get(key)!r} is not supported (only {want!r})")
        if not enc.get("untie_biases", True):
            raise fail("tied pos_bias_u/v (untie_biases: false) is not supported")
        sizes = enc.get("att_context_size")
        if sizes and isinstance(sizes[0], int):
            sizes = [sizes]
        contexts = tuple((int(a), int(b)) for a, b in (sizes or ()))
        if not contexts:
            raise fail("att_context_size is missing")
        lefts = {left for left, _ in contexts}
        if len(lefts) != 1:
            raise fail(f"every att_context_size must share its left context, got {contexts}")
        decoding = cfg.get("decoding", {}) or {}
        if str(decoding.get("model_type", "rnnt")) != "rnnt" or joint.get("num_extra_outputs"):
            raise fail("only RNN-T heads are supported for streaming (no TDT durations)")
        prednet = dec.get("prednet", {})
        jointnet = joint.get("jointnet", {})
        vocab_size = int(dec.get("vocab_size", joint.get("num_classes", 0)))
        if int(joint.get("num_classes", vocab_size)) != vocab_size:
            raise fail("decoder.vocab_size and joint.num_classes disagree")
        if str(jointnet.get("activation", "relu")) != "relu":
            raise fail(f"joint activation {jointnet.get('activation')!r} is not supported")
        greedy = decoding.get("greedy", {}) or {}
        max_symbols = greedy.get("max_symbols", greedy.get("max_symbols_per_step", 10))
        defaults = cfg.get("model_defaults", {}) or {}
        num_prompts = int(cfg.get("num_prompts", defaults.get("num_prompts", 0)) or 0)
        prompts = {str(k): int(v) for k, v in (defaults.get("prompt_dictionary") or {}).items()}
        if (model_class == "EncDecRNNTBPEModelWithPrompt") != bool(num_prompts):
            raise fail("a prompt model needs num_prompts, and only a prompt model has them")
        config = cls(
            model_class=model_class,
            frontend=nemo_frontend(pre, fail),
            feat_in=int(enc["feat_in"]),
            d_model=int(enc["d_model"]),
            n_layers=int(enc["n_layers"]),
            n_heads=int(enc["n_heads"]),
            ff_expansion_factor=int(enc.get("ff_expansion_factor", 4)),
            subsampling_factor=int(enc.get("subsampling_factor", 8)),
            subsampling_conv_channels=int(enc.get("subsampling_conv_channels", 256)),
            conv_kernel_size=int(enc.get("conv_kernel_size", 9)),
            xscaling=bool(enc.get("xscaling", True)),
            use_bias=bool(enc.get("use_bias", True)),
            att_context_sizes=contexts,
            vocab_size=vocab_size,
            pred_hidden=int(prednet["pred_hidden"]),
            pred_rnn_layers=int(prednet.get("pred_rnn_layers", 1)),
            joint_hidden=int(jointnet["joint_hidden"]),
            max_symbols_per_frame=int(10 if max_symbols is None else max_symbols),
            num_prompts=num_prompts,
            prompt_dictionary=prompts,
            vocabulary=tuple(str(v) for v in joint.get("vocabulary", ()) or ()),
        )
        config.validate(fail)
        return config

    def validate(self, fail: Any) -> None:
        """Reject values no such model can have, before building anything."""
        for key in ("feat_in", "d_model", "n_layers", "n_heads", "vocab_size", "pred_hidden"):
            if getattr(self, key) <= 0:
                raise fail(f"{key} must be positive, got {getattr(self, key)}")
        if self.d_model % self.n_heads:
            raise fail(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.subsampling_factor != 8:
            raise fail(f"subsampling factor {self.subsampling_factor} is not supported (only 8)")
        if self.feat_in != self.frontend.n_mels:
            raise fail(f"encoder feat_in {self.feat_in} != {self.frontend.n_mels} mel bins")
        if self.frontend.normalize is not None:
            raise fail("a streaming front end cannot normalise per utterance (normalize: NA)")
        for left, right in self.att_context_sizes:
            if right < 0 or left <= 0 or left % (right + 1):
                raise fail(
                    f"att_context_size [{left}, {right}]: the left context must be a positive "
                    "multiple of the chunk (lookahead + 1)"
                )
        if any(not 0 <= v < self.num_prompts for v in self.prompt_dictionary.values()):
            raise fail("a prompt_dictionary entry is outside num_prompts")

    def context_of(self, lookahead: int) -> tuple[int, int]:
        for left, right in self.att_context_sizes:
            if right == lookahead:
                return left, right
        raise CheckpointError(
            f"this model has no lookahead {lookahead}; it has: "
            f"{', '.join(str(r) for r in self.lookaheads)}",
            hint="pick one of those (--lookahead)",
        )
