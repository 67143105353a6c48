"""The cache-aware NeMo transducer as speechport modules, the mapping of NeMo's state dict
onto them, and the exact chunk schedule of NeMo's cache-aware streaming."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from speechport.errors import CheckpointError
from speechport.families.base import load_weights
from speechport.families.nemo_streaming.config import PRE_ENCODE_HISTORY, StreamingConfig
from speechport.families.parakeet.model import nemo_to_speechport
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
    """Where each chunk's mel window lies, as NeMo's cache-aware streaming cuts it.

    Chunk sizes in mel frames: the first ``1 + 8L``, then ``8(L + 1)`` (``L`` the lookahead).
    After the first chunk every window starts ``history`` (9) frames before its chunk and
    the encoder drops the 2 frames that history yields; while fewer than 9 frames of history
    exist (lookahead 0 only), the window starts at frame 0 and is padded before it, so the
    result is the one an exact driver gets, not a zero-padded history.
    """

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

    def windows(self, total: int) -> list[tuple[int, int, int]]:
        """``(mel start, mel end, lead)`` per chunk for ``total`` mel frames: the window is
        ``mel[start:end]`` placed after ``lead`` frames of padding in the fixed window."""
        out = []
        pos = min(self.first, total)
        out.append((0, pos, self.width - self.first))
        while pos < total:
            end = min(pos + self.step, total)
            start = max(pos - self.history, 0)
            out.append((start, end, self.history - (pos - start)))
            pos = end
        return out


def build_model(
    config: StreamingConfig, state_dict: dict[str, Any] | None, *, source: Path | None = None
) -> tuple[StreamingTransducer, list[str]]:
    """Instantiate the model and load NeMo's weights (``None``: keep random weights)."""
    try:
        model = StreamingTransducer(config)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"the config describes an impossible model ({exc})", path=source, component="config"
        ) from exc
    notes: list[str] = []
    if state_dict is not None:
        load_weights(
            model,
            {_rename(k): v for k, v in state_dict.items() if not k.startswith("preprocessor.")},
            source=source,
            architecture="the architecture the config describes",
            hint="the archive is corrupt or its config and weights belong to different models",
        )
        notes.extend(model.decoder.zero_blank_row("NeMo's padding_idx row"))
    model.eval()
    return model, notes


def _rename(name: str) -> str:
    if name.startswith("encoder."):
        return name[len("encoder.") :]
    return nemo_to_speechport(name)
