"""The cache-aware NeMo transducer as speechport modules, the mapping of NeMo's state dict
onto them, and the exact chunk schedule of NeMo's cache-aware streaming."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from speechport.families.nemo_streaming.config import PRE_ENCODE_HISTORY, StreamingConfig
from speechport.families.parakeet.model import build_nemo_model, nemo_to_speechport
from speechport.nn.streaming_conformer import (
    CausalStridingSubsampling,
    StreamingConformerLayer,
    StreamingFastConformer,
)
from speechport.nn.transducer import LSTMPredictor, RNNTJoint

DROP_EXTRA_PRE_ENCODED = 2  # encoder frames the mel history yields, dropped after the first chunk


class StreamingTransducer(nn.Module):
    """Subsampling, conformer layers, optional prompt kernel, prediction network, joint."""

    def __init__(self, config: StreamingConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.pre_encode = CausalStridingSubsampling(
            c.feat_in, c.d_model, factor=c.subsampling_factor, channels=c.subsampling_conv_channels
        )
        self.layers = nn.ModuleList(
            StreamingConformerLayer(
                c.d_model,
                c.d_model * c.ff_expansion_factor,
                c.n_heads,
                c.conv_kernel_size,
                bias=c.use_bias,
            )
            for _ in range(c.n_layers)
        )
        self.prompt_kernel: nn.Module | None = None
        if c.num_prompts:
            self.prompt_kernel = nn.Sequential(
                nn.Linear(c.d_model + c.num_prompts, 2 * c.d_model),
                nn.ReLU(),
                nn.Linear(2 * c.d_model, c.d_model),
            )
        self.decoder = LSTMPredictor(
            c.vocab_size + 1, c.pred_hidden, c.pred_rnn_layers, blank_id=c.blank_id
        )
        self.joint = RNNTJoint(c.d_model, c.pred_hidden, c.joint_hidden, c.vocab_size + 1)

    def encoder(self, lookahead: int, *, drop: int, max_frames: int) -> StreamingFastConformer:
        """The encoder at ``lookahead`` (shared weights), dropping ``drop`` frames after the
        subsampling, with a position table for ``max_frames`` chunk frames."""
        left, _ = self.config.context_of(lookahead)
        return StreamingFastConformer(
            self.pre_encode,
            list(self.layers),  # type: ignore[arg-type]
            d_model=self.config.d_model,
            left_context=left,
            lookahead=lookahead,
            cache_frames=left,
            xscaling=self.config.xscaling,
            drop=drop,
            max_frames=max_frames,
            prompt_kernel=self.prompt_kernel,
        ).eval()

    def initial_caches(self, left: int) -> tuple[Tensor, Tensor, Tensor]:
        c = self.config
        return (
            torch.zeros(c.n_layers, 1, left, c.d_model),
            torch.zeros(c.n_layers, 1, c.d_model, c.conv_kernel_size - 1),
            torch.zeros(1, dtype=torch.int32),
        )

    def prompt_vector(self, language: str | None) -> Tensor | None:
        """The one-hot prompt of ``language`` (``None`` for a model without prompts)."""
        c = self.config
        if not c.num_prompts:
            return None
        index = c.prompt_dictionary[language or default_language(c)]
        out = torch.zeros(1, c.num_prompts)
        out[0, index] = 1.0
        return out


def default_language(config: StreamingConfig) -> str:
    """``en-US`` where the model knows it, else its first prompt."""
    return "en-US" if "en-US" in config.prompt_dictionary else next(iter(config.prompt_dictionary))


@dataclass(frozen=True)
class ChunkSchedule:
    """The sizes of NeMo's cache-aware chunks at one lookahead, in mel frames: the first
    ``1 + 8L``, then ``8(L + 1)`` (``L`` the lookahead), each after ``history`` (9) frames
    whose 2 encoder frames are dropped. They become the manifest's ``ChunkingSpec``, which
    places each chunk's window (`speechport.pipelines.streaming.chunk_windows`)."""

    lookahead: int
    factor: int = 8
    history: int = PRE_ENCODE_HISTORY

    @property
    def first(self) -> int:
        return 1 + self.factor * self.lookahead

    @property
    def step(self) -> int:
        return self.factor * (self.lookahead + 1)

    @property
    def width(self) -> int:
        """The fixed window of the encoder component: history and one steady chunk."""
        return self.history + self.step


def build_model(
    config: StreamingConfig, state_dict: dict[str, Any] | None, *, source: Path | None = None
) -> tuple[StreamingTransducer, list[str]]:
    """Instantiate the model and load NeMo's weights (``None``: keep random weights)."""
    return build_nemo_model(StreamingTransducer, config, state_dict, _rename, source=source)


def _rename(name: str) -> str:
    if name.startswith("encoder."):
        return name[len("encoder.") :]
    return nemo_to_speechport(name)
