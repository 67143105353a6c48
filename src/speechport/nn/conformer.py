"""Conformer blocks: half-step feed-forwards, self-attention, convolution module."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from speechport.nn.masks import valid_mask


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, *, bias: bool = True) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.activation = nn.SiLU()
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear2(self.activation(self.linear1(x)))
        return out


class ConvolutionModule(nn.Module):
    """Pointwise conv -> GLU -> depthwise conv -> norm -> SiLU -> pointwise conv.

    Padded frames are zeroed before the depthwise convolution, the only place where
    neighbouring frames mix, so they never leak into valid ones.
    """

    def __init__(
        self,
        d_model: int,
        kernel_size: int,
        *,
        norm: Literal["layer_norm", "batch_norm"],
        bias: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"conv kernel size must be odd, got {kernel_size}")
        self.norm_type = norm
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, kernel_size=1, bias=bias)
        self.depthwise_conv = nn.Conv1d(
            d_model,
            d_model,
            kernel_size=kernel_size,
            padding=(kernel_size - 1) // 2,
            groups=d_model,
            bias=bias,
        )
        self.batch_norm: nn.Module = (
            nn.LayerNorm(d_model) if norm == "layer_norm" else nn.BatchNorm1d(d_model)
        )
        self.activation = nn.SiLU()
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, kernel_size=1, bias=bias)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        x = x.transpose(1, 2)
        x = nn.functional.glu(self.pointwise_conv1(x), dim=1)
        x = x.masked_fill(~valid.unsqueeze(1), 0.0)
        x = self.depthwise_conv(x)
        if self.norm_type == "layer_norm":
            x = self.batch_norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.batch_norm(x)
        x = self.pointwise_conv2(self.activation(x))
        return x.transpose(1, 2)


class ConformerLayer(nn.Module):
    """FF/2 -> self-attention -> convolution -> FF/2 -> LayerNorm, each with a residual."""

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        self_attn: nn.Module,
        conv: ConvolutionModule,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.fc_factor = 0.5
        self.norm_feed_forward1 = nn.LayerNorm(d_model)
        self.feed_forward1 = FeedForward(d_model, d_ff, bias=bias)
        self.norm_self_att = nn.LayerNorm(d_model)
        self.self_attn = self_attn
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = conv
        self.norm_feed_forward2 = nn.LayerNorm(d_model)
        self.feed_forward2 = FeedForward(d_model, d_ff, bias=bias)
        self.norm_out = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, pos: Any, valid: Tensor) -> Tensor:
        residual = x + self.fc_factor * self.feed_forward1(self.norm_feed_forward1(x))
        residual = residual + self.self_attn(self.norm_self_att(residual), pos, valid)
        residual = residual + self.conv(self.norm_conv(residual), valid)
        residual = residual + self.fc_factor * self.feed_forward2(self.norm_feed_forward2(residual))
        out: Tensor = self.norm_out(residual)
        return out


class ConformerEncoder(nn.Module):
    """Subsampling, positional encoding and conformer layers.

    ``forward(features [B, F, T], length [B]) -> (encoded [B, D, T'], encoded_len [B] int32)``;
    encoded frames at or past ``encoded_len`` are zero.
    """

    def __init__(
        self,
        pre_encode: nn.Module,
        pos_enc: nn.Module,
        layers: list[ConformerLayer],
    ) -> None:
        super().__init__()
        self.pre_encode = pre_encode
        self.pos_enc = pos_enc
        self.layers = nn.ModuleList(layers)

    def forward(self, features: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        x, length = self.pre_encode(features, length)
        pos = self.pos_enc(x)
        valid = valid_mask(length, x.shape[1], x)
        for layer in self.layers:
            x = layer(x, pos, valid)
        x = x.masked_fill(~valid.unsqueeze(-1), 0.0)
        return x.transpose(1, 2), length
