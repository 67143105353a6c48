"""GigaAM's model as speechport modules, its components, and upstream weight loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from speechport.errors import CheckpointError
from speechport.families.base import load_weights
from speechport.families.gigaam.config import GigaAMConfig
from speechport.nn.attention import RotaryEmbedding, RotaryMultiHeadAttention
from speechport.nn.conformer import ConformerEncoder, ConformerLayer, ConvolutionModule
from speechport.nn.ctc import CTCHead
from speechport.nn.subsampling import Conv1dSubsampling
from speechport.nn.transducer import LSTMPredictor, RNNTJoint


class RNNTHead(nn.Module):
    def __init__(self, decoder: LSTMPredictor, joint: RNNTJoint) -> None:
        super().__init__()
        self.decoder = decoder
        self.joint = joint


class GigaAMASR(nn.Module):
    """Encoder + head, with attribute names matching the upstream state dict."""

    def __init__(self, config: GigaAMConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        d_k = c.d_model // c.n_heads
        layers = [
            ConformerLayer(
                c.d_model,
                c.d_model * c.ff_expansion_factor,
                RotaryMultiHeadAttention(c.n_heads, c.d_model),
                ConvolutionModule(c.d_model, c.conv_kernel_size, norm=_norm_type(c.conv_norm_type)),
            )
            for _ in range(c.n_layers)
        ]
        self.encoder = ConformerEncoder(
            Conv1dSubsampling(
                c.feat_in, c.d_model, kernel_size=c.subs_kernel_size, num_stages=c.num_stages
            ),
            # GigaAM passes pos_emb_max_len as the rotary base and builds that many positions.
            RotaryEmbedding(d_k, base=c.pos_emb_max_len, max_len=c.pos_emb_max_len),
            layers,
        )
        self.head: nn.Module
        if c.head == "rnnt":
            self.head = RNNTHead(
                LSTMPredictor(c.num_classes, c.pred_hidden, c.pred_rnn_layers, blank_id=c.blank_id),
                RNNTJoint(c.d_model, c.pred_hidden, c.joint_hidden, c.num_classes),
            )
        else:
            self.head = CTCHead(c.d_model, c.num_classes)


def _norm_type(name: str) -> Any:
    if name not in ("layer_norm", "batch_norm"):
        raise CheckpointError(f"unknown conv norm type {name!r}")
    return name


def windowed_encoder(encoder: ConformerEncoder, frames: int) -> ConformerEncoder:
    """The same encoder (shared weights) whose rotary tables hold only ``frames`` positions:
    a program whose time axis takes a few lengths up to the window keeps the tables as
    constants, and the model's own hold ``pos_emb_max_len`` positions."""
    rotary = encoder.pos_enc
    assert isinstance(rotary, RotaryEmbedding)
    layers = list(encoder.layers)
    return ConformerEncoder(encoder.pre_encode, rotary.first(frames), layers).eval()  # type: ignore[arg-type]


class EncoderCTC(nn.Module):
    """Encoder and CTC head in one: ``-> log_probs [B, T', C], encoded_len [B] int32``."""

    def __init__(self, encoder: ConformerEncoder, head: CTCHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, features: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        encoded, encoded_len = self.encoder(features, length.to(torch.int32))
        return self.head(encoded), encoded_len.to(torch.int32)


class UpstreamJointLayout(nn.Module):
    """GigaAM's ONNX joint: ``enc [B, D, 1], dec [B, H, 1] -> joint [B, 1, 1, C]``, the
    log-softmax of the logits as upstream exports it (same argmax as the raw logits)."""

    def __init__(self, joint: RNNTJoint) -> None:
        super().__init__()
        self.joint = joint

    def forward(self, enc: Tensor, dec: Tensor) -> Tensor:
        logits = self.joint(enc.transpose(1, 2).unsqueeze(2), dec.transpose(1, 2).unsqueeze(1))
        return torch.log_softmax(logits, dim=-1)


def build_model(
    config: GigaAMConfig,
    state_dict: dict[str, Any] | None,
    *,
    source: Path | None = None,
) -> tuple[GigaAMASR, list[str]]:
    """Instantiate the model and load upstream weights (``None``: keep random weights)."""
    try:
        model = GigaAMASR(config)
    except CheckpointError as exc:
        raise CheckpointError(exc.message, path=source, component="config") from exc
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"the config describes an impossible model ({exc})", path=source, component="config"
        ) from exc
    notes: list[str] = []
    if state_dict is not None:
        if not isinstance(state_dict, dict) or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state_dict.items()
        ):
            raise CheckpointError(
                "state_dict is not a mapping of names to tensors",
                path=source,
                component="state_dict",
                hint="the checkpoint is corrupt or of another model",
            )
        load_weights(
            model,
            {k: v for k, v in state_dict.items() if not k.startswith("preprocessor.")},
            source=source,
            architecture=f"the {config.model_name} architecture its config describes",
            hint="the checkpoint is corrupt or of another model",
        )
        if isinstance(model.head, RNNTHead):
            notes.extend(model.head.decoder.zero_blank_row("upstream starts from a zero input"))
    model.eval()
    return model, notes
