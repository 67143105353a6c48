"""NeMo FastConformer transducer configs (Parakeet-TDT v2/v3, Parakeet-RNNT): what defines
the computation, validated with clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechport.errors import CheckpointError
from speechport.features.spec import LogMelSpec, nemo_spec

MODEL_CLASSES = ("EncDecRNNTBPEModel",)
ENCODER_CLASSES = ("ConformerEncoder",)


@dataclass(frozen=True)
class ParakeetConfig:
    """The parts of a NeMo config that define the computation."""

    model_class: str
    head: str  # "tdt" | "rnnt"
    frontend: LogMelSpec
    feat_in: int
    d_model: int
    n_layers: int
    n_heads: int
    ff_expansion_factor: int
    subsampling_factor: int
    subsampling_conv_channels: int
    conv_kernel_size: int
    conv_norm_type: str
    pos_emb_max_len: int
    xscaling: bool
    use_bias: bool
    vocab_size: int  # tokens, blank excluded (blank id = vocab_size)
    pred_hidden: int
    pred_rnn_layers: int
    joint_hidden: int
    durations: tuple[int, ...] = ()
    max_symbols_per_frame: int = 10
    vocabulary: tuple[str, ...] = ()
    upstream: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def blank_id(self) -> int:
        return self.vocab_size

    @property
    def num_outputs(self) -> int:
        """Joint outputs: tokens + blank, then one logit per TDT duration."""
        return self.vocab_size + 1 + len(self.durations)

    @property
    def variant(self) -> str:
        return "parakeet-tdt" if self.head == "tdt" else "parakeet-rnnt"

    @classmethod
    def from_nemo(cls, cfg: dict[str, Any], *, source: Path | None = None) -> ParakeetConfig:
        """Validate and read a ``model_config.yaml`` (plain dict)."""

        def fail(message: str, hint: str | None = None) -> CheckpointError:
            return CheckpointError(message, path=source, component="config", hint=hint)

        target = str(cfg.get("target", cfg.get("_target_", "")))
        model_class = target.rsplit(".", 1)[-1]
        if model_class not in MODEL_CLASSES:
            raise fail(
                f"unknown model class {target or '(none)'!r}; speechport converts NeMo "
                f"transducers of class {', '.join(MODEL_CLASSES)} (Parakeet-TDT, Parakeet-RNNT)",
                "pass a Parakeet-TDT or Parakeet-RNNT .nemo (CTC, hybrid and AED models are "
                "not supported)",
            )
        missing = [k for k in ("preprocessor", "encoder", "decoder", "joint") if k not in cfg]
        if missing:
            raise fail(f"the config has no {', '.join(missing)} section")
        pre, enc, dec, joint = cfg["preprocessor"], cfg["encoder"], cfg["decoder"], cfg["joint"]
        enc_class = str(enc.get("_target_", "")).rsplit(".", 1)[-1]
        if enc_class not in ENCODER_CLASSES:
            raise fail(f"unknown encoder class {enc.get('_target_')!r}; expected ConformerEncoder")
        for key, want in (
            ("self_attention_model", "rel_pos"),
            ("subsampling", "dw_striding"),
            ("conv_norm_type", "batch_norm"),
        ):
            if str(enc.get(key, want)) != want:
                raise fail(f"encoder {key} {enc.get(key)!r} is not supported (only {want!r})")
        context = enc.get("att_context_size", [-1, -1])
        if list(context) != [-1, -1]:
            raise fail(
                f"limited attention context {list(context)} is not supported (full context only)"
            )
        if not enc.get("untie_biases", True):
            raise fail("tied pos_bias_u/v (untie_biases: false) is not supported")
        if bool(enc.get("causal_downsampling", False)):
            raise fail("causal_downsampling is not supported")
        frontend = nemo_frontend(pre, fail)
        decoding = cfg.get("decoding", {}) or {}
        model_type = str(decoding.get("model_type", "rnnt"))
        durations = tuple(int(d) for d in (decoding.get("durations") or ()))
        num_extra = int(joint.get("num_extra_outputs", 0) or 0)
        head = "tdt" if model_type == "tdt" or durations else "rnnt"
        if head == "tdt":
            if not durations:
                raise fail("a TDT model's config must list decoding.durations")
            if num_extra != len(durations):
                raise fail(
                    f"joint.num_extra_outputs is {num_extra} but there are "
                    f"{len(durations)} durations"
                )
        elif num_extra:
            raise fail(f"an RNN-T joint with {num_extra} extra outputs is not supported")
        prednet = dec.get("prednet", {})
        jointnet = joint.get("jointnet", {})
        vocab_size = int(dec.get("vocab_size", joint.get("num_classes", 0)))
        if int(joint.get("num_classes", vocab_size)) != vocab_size:
            raise fail("decoder.vocab_size and joint.num_classes disagree")
        if not bool(dec.get("blank_as_pad", True)):
            raise fail("blank_as_pad: false is not supported")
        if str(jointnet.get("activation", "relu")) != "relu":
            raise fail(f"joint activation {jointnet.get('activation')!r} is not supported")
        greedy = decoding.get("greedy", {}) or {}
        max_symbols = greedy.get("max_symbols", greedy.get("max_symbols_per_step", 10))
        config = cls(
            model_class=model_class,
            head=head,
            frontend=frontend,
            feat_in=int(enc["feat_in"]),
            d_model=int(enc["d_model"]),
            n_layers=int(enc["n_layers"]),
            n_heads=int(enc["n_heads"]),
            ff_expansion_factor=int(enc.get("ff_expansion_factor", 4)),
            subsampling_factor=int(enc.get("subsampling_factor", 8)),
            subsampling_conv_channels=int(enc.get("subsampling_conv_channels", 256)),
            conv_kernel_size=int(enc.get("conv_kernel_size", 9)),
            conv_norm_type=str(enc.get("conv_norm_type", "batch_norm")),
            pos_emb_max_len=int(enc.get("pos_emb_max_len", 5000)),
            xscaling=bool(enc.get("xscaling", True)),
            use_bias=bool(enc.get("use_bias", True)),
            vocab_size=vocab_size,
            pred_hidden=int(prednet["pred_hidden"]),
            pred_rnn_layers=int(prednet.get("pred_rnn_layers", 1)),
            joint_hidden=int(jointnet["joint_hidden"]),
            durations=durations,
            max_symbols_per_frame=int(10 if max_symbols is None else max_symbols),
            vocabulary=tuple(str(v) for v in joint.get("vocabulary", ()) or ()),
            upstream=cfg,
        )
        config.validate(fail)
        return config

    def validate(self, fail: Any) -> None:
        """Reject values no such model can have, before building anything."""
        for key in (
            "feat_in",
            "d_model",
            "n_layers",
            "n_heads",
            "vocab_size",
            "pred_hidden",
            "pred_rnn_layers",
            "joint_hidden",
            "subsampling_conv_channels",
            "max_symbols_per_frame",
        ):
            if getattr(self, key) <= 0:
                raise fail(f"{key} must be positive, got {getattr(self, key)}")
        if self.d_model % self.n_heads:
            raise fail(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        factor = self.subsampling_factor
        if factor < 2 or factor & (factor - 1):
            raise fail(f"subsampling factor {factor} is not a power of two")
        if self.conv_kernel_size % 2 != 1:
            raise fail(f"conv kernel size {self.conv_kernel_size} must be odd")
        if self.feat_in != self.frontend.n_mels:
            raise fail(f"encoder feat_in {self.feat_in} != {self.frontend.n_mels} mel bins")
        if self.durations and (
            min(self.durations) < 0 or len(set(self.durations)) != len(self.durations)
        ):
            raise fail(f"durations must be distinct and >= 0, got {list(self.durations)}")
        if self.vocabulary and len(self.vocabulary) != self.vocab_size:
            raise fail(
                f"the joint's vocabulary has {len(self.vocabulary)} entries, "
                f"vocab_size is {self.vocab_size}"
            )


def nemo_frontend(pre: dict[str, Any], fail: Any) -> LogMelSpec:
    """NeMo's ``AudioToMelSpectrogramPreprocessor`` in eval mode (no dither), as a spec."""
    target = str(pre.get("_target_", "")).rsplit(".", 1)[-1]
    if target != "AudioToMelSpectrogramPreprocessor":
        raise fail(f"unknown preprocessor {pre.get('_target_')!r}")
    sr = int(pre.get("sample_rate", 16000))
    unsupported = {
        "frame_splicing": (pre.get("frame_splicing", 1), 1),
        "pad_to": (pre.get("pad_to", 16), 0),
        "exact_pad": (bool(pre.get("exact_pad", False)), False),
        "log": (bool(pre.get("log", True)), True),
        "mag_power": (float(pre.get("mag_power", 2.0)), 2.0),
        "log_zero_guard_type": (pre.get("log_zero_guard_type", "add"), "add"),
        "mel_norm": (pre.get("mel_norm", "slaney"), "slaney"),
    }
    for key, (value, want) in unsupported.items():
        if value != want:
            raise fail(f"preprocessor {key} {value!r} is not supported (only {want!r})")
    normalize = pre.get("normalize", "per_feature")
    if normalize not in ("per_feature", None, "NA"):
        raise fail(f"preprocessor normalize {normalize!r} is not supported")
    window = str(pre.get("window", "hann"))
    if window not in ("hann", "hamming"):
        raise fail(f"preprocessor window {window!r} is not supported")
    guard = pre.get("log_zero_guard_value", 2**-24)
    win_length = round(float(pre.get("window_size", 0.02)) * sr)
    return nemo_spec(
        int(pre.get("features", 64)),
        sample_rate=sr,
        n_fft=int(pre.get("n_fft") or 1 << (win_length - 1).bit_length()),
        win_length=win_length,
        hop_length=round(float(pre.get("window_stride", 0.01)) * sr),
        window=window,
        preemphasis=pre.get("preemph", 0.97),
        f_min=float(pre.get("lowfreq", 0.0) or 0.0),
        f_max=None if pre.get("highfreq") is None else float(pre["highfreq"]),
        log_guard=float(guard),
        normalize=None if normalize in (None, "NA") else "per_feature",
        pad_value=float(pre.get("pad_value", 0.0)),
    )


def full_size_config(head: str = "tdt") -> dict[str, Any]:
    """A ``model_config.yaml``-shaped config of Parakeet-TDT-0.6B-v3 (or its RNN-T
    counterpart) for benchmarks with random weights: 128 mels, FastConformer d_model 1024,
    24 layers, 8 heads, ff 4096, conv kernel 9, dw_striding x8 with 256 channels, 2-layer
    LSTM predictor and joint of 640, 8192 tokens + blank, durations 0..4."""
    durations = [0, 1, 2, 3, 4] if head == "tdt" else []
    return {
        "target": "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel",
        "sample_rate": 16000,
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": 16000,
            "normalize": "per_feature",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": 128,
            "n_fft": 512,
            "log": True,
            "frame_splicing": 1,
            "dither": 1e-5,
            "pad_to": 0,
            "pad_value": 0.0,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": 128,
            "n_layers": 24,
            "d_model": 1024,
            "use_bias": False,
            "subsampling": "dw_striding",
            "subsampling_factor": 8,
            "subsampling_conv_channels": 256,
            "causal_downsampling": False,
            "ff_expansion_factor": 4,
            "self_attention_model": "rel_pos",
            "n_heads": 8,
            "att_context_size": [-1, -1],
            "xscaling": False,
            "untie_biases": True,
            "pos_emb_max_len": 5000,
            "conv_kernel_size": 9,
            "conv_norm_type": "batch_norm",
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "blank_as_pad": True,
            "prednet": {"pred_hidden": 640, "pred_rnn_layers": 2},
            "vocab_size": 8192,
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "jointnet": {
                "joint_hidden": 640,
                "activation": "relu",
                "encoder_hidden": 1024,
                "pred_hidden": 640,
            },
            "num_extra_outputs": len(durations),
            "num_classes": 8192,
        },
        "decoding": {
            "model_type": "tdt" if head == "tdt" else "rnnt",
            "strategy": "greedy_batch",
            "greedy": {"max_symbols": 10},
            "durations": durations,
        },
    }
