"""Kokoro's ``config.json``: the architecture's sizes, read and checked (no torch).

Defaults are Kokoro-82M's (hexgrad/Kokoro-82M ``config.json``). Upstream hard-codes a few
decoder widths (1024, 512 and 64, and a text input of 512 channels); they are fields here,
read from the optional key ``speechport_decoder_widths`` (the tiny test fixture sets them),
so that one set of modules serves both sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechport.errors import CheckpointError

SAMPLE_RATE = 24000
# Harmonics of SineGen's source: the fundamental and 8 overtones.
HARMONICS = 9
# Voice packs hold one style per phoneme count 1..510.
VOICE_ROWS = 510


@dataclass(frozen=True)
class AlbertSizes:
    """The PL-BERT (ALBERT) encoder: one shared layer applied ``num_hidden_layers`` times."""

    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 2048
    max_position_embeddings: int = 512
    num_hidden_layers: int = 12
    embedding_size: int = 128
    layer_norm_eps: float = 1e-12


@dataclass(frozen=True)
class IstftNetSizes:
    """The iSTFTNet generator."""

    upsample_rates: tuple[int, ...] = (10, 6)
    upsample_kernel_sizes: tuple[int, ...] = (20, 12)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    gen_istft_n_fft: int = 20
    gen_istft_hop_size: int = 5


@dataclass(frozen=True)
class KokoroConfig:
    """Sizes of a Kokoro model (Kokoro-82M by default) and its phoneme vocabulary."""

    n_token: int = 178
    hidden_dim: int = 512
    style_dim: int = 128
    n_layer: int = 3
    max_dur: int = 50
    text_encoder_kernel_size: int = 5
    plbert: AlbertSizes = field(default_factory=AlbertSizes)
    istftnet: IstftNetSizes = field(default_factory=IstftNetSizes)
    # Widths upstream hard-codes in its decoder.
    decoder_encode_dim: int = 1024
    decoder_out_dim: int = 512
    decoder_asr_res_dim: int = 64
    vocab: dict[str, int] = field(default_factory=dict)

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per predicted frame (600 at full size: 2 F0 steps of 300)."""
        hop = self.istftnet.gen_istft_hop_size
        up = 1
        for rate in self.istftnet.upsample_rates:
            up *= rate
        return 2 * up * hop

    @property
    def prosody_dim(self) -> int:
        """Channels of the prosody features (predictor text-encoder output): hidden + style."""
        return self.hidden_dim + self.style_dim

    @property
    def voice_dim(self) -> int:
        """Length of a voice-pack row: the decoder's style, then the predictor's."""
        return 2 * self.style_dim

    @property
    def max_tokens(self) -> int:
        """Input ids the text stage can take, boundary tokens included."""
        return self.plbert.max_position_embeddings


def read_config(path: Path) -> KokoroConfig:
    """``config.json`` of a Kokoro model; a file of another model is named, not guessed at."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            "config file not found", path=path, hint="pass Kokoro's config.json with --config"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"not a JSON config ({exc})", path=path, hint="pass Kokoro's config.json"
        ) from exc
    return config_from_dict(raw, path=path)


def config_from_dict(raw: Any, *, path: Path | None = None) -> KokoroConfig:
    hint = "pass the config.json that comes with this Kokoro checkpoint"
    if not isinstance(raw, dict) or not {"istftnet", "plbert", "vocab", "hidden_dim"} <= set(raw):
        raise CheckpointError(
            "not a Kokoro config (istftnet, plbert, vocab or hidden_dim missing)",
            path=path,
            hint=hint,
        )
    try:
        plbert = dict(raw["plbert"])
        istft = dict(raw["istftnet"])
        widths = dict(raw.get("speechport_decoder_widths", {}))
        defaults = AlbertSizes()
        albert_fields = {
            k: type(getattr(defaults, k))(plbert[k])
            for k in AlbertSizes.__dataclass_fields__
            if k in plbert
        }
        for key in ("num_hidden_groups", "inner_group_num"):
            if plbert.get(key, 1) != 1:
                raise CheckpointError(
                    f"plbert.{key} = {plbert[key]}: only one shared ALBERT layer is supported",
                    path=path,
                    hint=hint,
                )
        vocab = {str(k): int(v) for k, v in raw["vocab"].items()}
        config = KokoroConfig(
            n_token=int(raw.get("n_token", 178)),
            hidden_dim=int(raw["hidden_dim"]),
            style_dim=int(raw.get("style_dim", 128)),
            n_layer=int(raw.get("n_layer", 3)),
            max_dur=int(raw.get("max_dur", 50)),
            text_encoder_kernel_size=int(raw.get("text_encoder_kernel_size", 5)),
            plbert=AlbertSizes(
                **{k: type(getattr(AlbertSizes(), k))(v) for k, v in albert_fields.items()}
            ),
            istftnet=IstftNetSizes(
                upsample_rates=tuple(int(v) for v in istft["upsample_rates"]),
                upsample_kernel_sizes=tuple(int(v) for v in istft["upsample_kernel_sizes"]),
                upsample_initial_channel=int(istft["upsample_initial_channel"]),
                resblock_kernel_sizes=tuple(int(v) for v in istft["resblock_kernel_sizes"]),
                resblock_dilation_sizes=tuple(
                    tuple(int(d) for d in ds) for ds in istft["resblock_dilation_sizes"]
                ),
                gen_istft_n_fft=int(istft["gen_istft_n_fft"]),
                gen_istft_hop_size=int(istft["gen_istft_hop_size"]),
            ),
            decoder_encode_dim=int(widths.get("encode_dim", 1024)),
            decoder_out_dim=int(widths.get("decode_dim", 512)),
            decoder_asr_res_dim=int(widths.get("asr_res_dim", 64)),
            vocab=vocab,
        )
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"malformed Kokoro config ({type(exc).__name__}: {exc})", path=path, hint=hint
        ) from exc
    if config.style_dim != 128:
        # Upstream slices the voice row at 128 whatever the config says.
        raise CheckpointError(
            f"style_dim {config.style_dim}: Kokoro's voice rows are split at 128",
            path=path,
            hint=hint,
        )
    if len(config.istftnet.upsample_rates) != len(config.istftnet.upsample_kernel_sizes):
        raise CheckpointError(
            "istftnet upsample_rates and upsample_kernel_sizes differ in length",
            path=path,
            hint=hint,
        )
    bad = sorted(k for k, v in config.vocab.items() if not 0 < v < config.n_token or len(k) != 1)
    if bad:
        raise CheckpointError(
            f"vocab entries out of range or not one character: {bad[:4]}", path=path, hint=hint
        )
    return config


__all__ = [
    "HARMONICS",
    "SAMPLE_RATE",
    "VOICE_ROWS",
    "AlbertSizes",
    "IstftNetSizes",
    "KokoroConfig",
    "config_from_dict",
    "read_config",
]
