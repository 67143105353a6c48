"""Parakeet (NeMo FastConformer transducer) as speechport modules, its components, and the
mapping of NeMo's state dict onto them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from speechport.errors import CheckpointError
from speechport.families.base import load_weights
from speechport.families.parakeet.config import ParakeetConfig
from speechport.features.torch_frontend import TorchLogMel
from speechport.nn.conformer import ConformerEncoder, ConformerLayer, ConvolutionModule
from speechport.nn.masks import valid_mask
from speechport.nn.relpos_attention import RelPositionalEncoding, RelPositionMultiHeadAttention
from speechport.nn.subsampling import DepthwiseStridingSubsampling
from speechport.nn.transducer import LSTMPredictor, RNNTJoint


class FastConformerEncoder(ConformerEncoder):
    """dw_striding subsampling, relative positions (optional x-scaling), conformer layers.

    ``forward(features [B, F, T], length [B]) -> (encoded [B, D, T'], encoded_len [B] int32)``;
    frames at or past ``encoded_len`` are zero.
    """

    def forward(self, features: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        x, length = self.pre_encode(features, length)
        x, pos = self.pos_enc(x)
        valid = valid_mask(length, x.shape[1], x)
        for layer in self.layers:
            x = layer(x, pos, valid)
        x = x.masked_fill(~valid.unsqueeze(-1), 0.0)
        return x.transpose(1, 2), length

    def with_positions(self, max_len: int) -> FastConformerEncoder:
        """The same encoder (shared weights) with a position table for ``max_len`` frames."""
        pos_enc = self.pos_enc
        assert isinstance(pos_enc, RelPositionalEncoding)
        twin = FastConformerEncoder(
            self.pre_encode,
            RelPositionalEncoding(pos_enc.d_model, max_len, xscale=pos_enc.xscale is not None),
            list(self.layers),  # type: ignore[arg-type]
        )
        return twin.eval()


class ParakeetModel(nn.Module):
    """Encoder, prediction network and joint."""

    def __init__(self, config: ParakeetConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        layers = [
            ConformerLayer(
                c.d_model,
                c.d_model * c.ff_expansion_factor,
                RelPositionMultiHeadAttention(c.n_heads, c.d_model, bias=c.use_bias),
                ConvolutionModule(
                    c.d_model, c.conv_kernel_size, norm="batch_norm", bias=c.use_bias
                ),
                bias=c.use_bias,
            )
            for _ in range(c.n_layers)
        ]
        self.encoder = FastConformerEncoder(
            DepthwiseStridingSubsampling(
                c.feat_in,
                c.d_model,
                factor=c.subsampling_factor,
                channels=c.subsampling_conv_channels,
            ),
            RelPositionalEncoding(c.d_model, c.pos_emb_max_len, xscale=c.xscaling),
            layers,
        )
        self.decoder = LSTMPredictor(
            c.vocab_size + 1, c.pred_hidden, c.pred_rnn_layers, blank_id=c.blank_id
        )
        self.joint = RNNTJoint(c.d_model, c.pred_hidden, c.joint_hidden, c.num_outputs)


# --- Components (canonical contracts) --------------------------------------------------


class Preprocessor(nn.Module):
    """``audio [1, N] f32, audio_length [1] int32 -> mel [1, F, T], mel_length [1] int32``."""

    def __init__(self, frontend: TorchLogMel) -> None:
        super().__init__()
        self.frontend = frontend

    def forward(self, audio: Tensor, audio_length: Tensor) -> tuple[Tensor, Tensor]:
        mel, mel_length = self.frontend(audio, audio_length)
        return mel, mel_length.to(torch.int32)


class MelEncoder(nn.Module):
    """Preprocessor and encoder fused: ``audio, audio_length -> encoded, encoded_len``."""

    def __init__(self, frontend: TorchLogMel, encoder: FastConformerEncoder) -> None:
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder

    def forward(self, audio: Tensor, audio_length: Tensor) -> tuple[Tensor, Tensor]:
        mel, mel_length = self.frontend(audio, audio_length)
        encoded, encoded_len = self.encoder(mel, mel_length.to(torch.int32))
        return encoded, encoded_len.to(torch.int32)


class Decision(nn.Module):
    """From joint logits ``[..., V + 1 (+ N)]``: the token (argmax over tokens + blank), its
    probability (softmax over tokens + blank), the duration (``durations[argmax]`` over the
    duration logits; TDT only) and the top-``k`` token ids and logits."""

    durations: Tensor

    def __init__(self, num_tokens: int, durations: tuple[int, ...], top_k: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.top_k = top_k
        self.tdt = bool(durations)
        self.register_buffer(
            "durations", torch.tensor(durations or (0,), dtype=torch.int32), persistent=False
        )

    def forward(self, logits: Tensor) -> tuple[Tensor, ...]:
        tokens = logits[..., : self.num_tokens]
        best, token = torch.max(tokens, dim=-1)
        prob = 1.0 / torch.exp(tokens - best.unsqueeze(-1)).sum(dim=-1)
        top_logits, top_ids = torch.topk(tokens, self.top_k, dim=-1)
        token, top_ids = token.to(torch.int32), top_ids.to(torch.int32)
        if not self.tdt:
            return token, prob, top_ids, top_logits
        index = torch.argmax(logits[..., self.num_tokens :], dim=-1)
        duration = self.durations[index]
        return token, prob, duration, top_ids, top_logits


class JointDecisionFrame(nn.Module):
    """Joint + decision on one frame: ``enc_t [1, D], dec_t [1, H] -> token_id [1],
    token_prob [1], (duration [1],) top_k_ids [1, K], top_k_logits [1, K]``."""

    def __init__(self, joint: RNNTJoint, decision: Decision) -> None:
        super().__init__()
        self.joint = joint
        self.decision = decision

    def forward(self, enc_t: Tensor, dec_t: Tensor) -> tuple[Tensor, ...]:
        decided: tuple[Tensor, ...] = self.decision(self.joint(enc_t, dec_t))
        return decided


class JointDecisionWindow(nn.Module):
    """Joint + decision on every frame of a window for one decoder output:
    ``encoded [1, D, T], dec_t [1, H] -> token_id [1, T], token_prob [1, T],
    (duration [1, T],) top_k_ids [1, T, K], top_k_logits [1, T, K]``."""

    def __init__(self, joint: RNNTJoint, decision: Decision) -> None:
        super().__init__()
        self.joint = joint
        self.decision = decision

    def forward(self, encoded: Tensor, dec_t: Tensor) -> tuple[Tensor, ...]:
        logits = self.joint(encoded.transpose(1, 2), dec_t.unsqueeze(1))
        decided: tuple[Tensor, ...] = self.decision(logits)
        return decided


# --- Upstream ONNX layouts (NeMo's export names: onnx-asr and sherpa-onnx) -------------


class NemoDecoderLayout(nn.Module):
    """NeMo's exported ``RNNTDecoder`` (sherpa-onnx ``decoder.onnx``): ``targets [B, 1]
    int32, target_length [B] int32, input_states_1/2 [L, B, H] -> outputs [B, H, 1],
    prednet_lengths [B] int32, output_states_1/2``."""

    def __init__(self, predictor: LSTMPredictor) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(
        self, targets: Tensor, target_length: Tensor, h: Tensor, c: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dec, h_out, c_out = self.predictor(targets, h, c)
        return dec.transpose(1, 2), target_length.to(torch.int32), h_out, c_out


class NemoJointLayout(nn.Module):
    """NeMo's exported ``RNNTJoint`` (sherpa-onnx ``joiner.onnx``): ``encoder_outputs
    [B, D, 1], decoder_outputs [B, H, 1] -> outputs [B, 1, 1, V + 1 (+ N)]`` (raw logits:
    NeMo's export skips the log-softmax; the argmaxes are the same)."""

    def __init__(self, joint: RNNTJoint) -> None:
        super().__init__()
        self.joint = joint

    def forward(self, enc: Tensor, dec: Tensor) -> Tensor:
        logits: Tensor = self.joint(
            enc.transpose(1, 2).unsqueeze(2), dec.transpose(1, 2).unsqueeze(1)
        )
        return logits


class DecoderJointStep(nn.Module):
    """One predictor step and the joint on one frame: ``enc_t [1, D], token [1, 1] int32,
    h/c -> logits [1, C], h', c'`` (onnx-asr's fused ``decoder_joint`` contract)."""

    def __init__(self, predictor: LSTMPredictor, joint: RNNTJoint) -> None:
        super().__init__()
        self.predictor = predictor
        self.joint = joint

    def forward(
        self, enc_t: Tensor, token: Tensor, h: Tensor, c: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        dec, h_out, c_out = self.predictor(token, h, c)
        return self.joint(enc_t, dec[:, 0, :]), h_out, c_out


class NemoDecoderJointLayout(nn.Module):
    """NeMo's ``RNNTDecoderJoint`` export as onnx-asr reads ``decoder_joint-model.onnx``:
    ``encoder_outputs [B, D, 1], targets [B, 1] int32, target_length [B] int32,
    input_states_1/2 -> outputs [B, 1, 1, C], prednet_lengths [B] int32, output_states_1/2``."""

    def __init__(self, predictor: LSTMPredictor, joint: RNNTJoint) -> None:
        super().__init__()
        self.predictor = predictor
        self.joint = joint

    def forward(
        self, enc: Tensor, targets: Tensor, target_length: Tensor, h: Tensor, c: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dec, h_out, c_out = self.predictor(targets, h, c)
        logits = self.joint(enc.transpose(1, 2).unsqueeze(2), dec.unsqueeze(1))
        return logits, target_length.to(torch.int32), h_out, c_out


# --- Weights ---------------------------------------------------------------------------

_RENAMES = (
    ("decoder.prediction.embed.", "decoder.embed."),
    ("decoder.prediction.dec_rnn.lstm.", "decoder.lstm."),
    ("joint.joint_net.2.", "joint.joint_net.1."),
)
_IGNORED_PREFIXES = ("preprocessor.",)


def nemo_to_speechport(name: str) -> str:
    """A NeMo state-dict key -> this model's key."""
    for old, new in _RENAMES:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


M = TypeVar("M", bound=nn.Module)


def build_nemo_model(
    model_class: Callable[[Any], M],
    config: Any,
    state_dict: dict[str, Any] | None,
    rename: Callable[[str], str],
    *,
    source: Path | None = None,
) -> tuple[M, list[str]]:
    """Instantiate a NeMo transducer's modules from ``config`` and load NeMo's weights
    (``rename``: a NeMo key -> the model's; ``None``: keep random weights), leaving out the
    preprocessor's buffers and zeroing the predictor's blank row as NeMo pads it."""
    try:
        model = model_class(config)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"the config describes an impossible model ({exc})", path=source, component="config"
        ) from exc
    notes: list[str] = []
    if state_dict is not None:
        load_weights(
            model,
            {rename(k): v for k, v in state_dict.items() if not k.startswith(_IGNORED_PREFIXES)},
            source=source,
            architecture="the architecture the config describes",
            hint="the archive is corrupt or its config and weights belong to different models",
        )
        predictor = model.decoder
        assert isinstance(predictor, LSTMPredictor), type(predictor).__name__
        notes.extend(predictor.zero_blank_row("NeMo's padding_idx row"))
    model.eval()
    return model, notes


def build_model(
    config: ParakeetConfig,
    state_dict: dict[str, Any] | None,
    *,
    source: Path | None = None,
) -> tuple[ParakeetModel, list[str]]:
    """Instantiate the model and load NeMo's weights (``None``: keep random weights)."""
    return build_nemo_model(ParakeetModel, config, state_dict, nemo_to_speechport, source=source)
