"""NeMo's cache-aware (streaming) FastConformer encoder, one chunk at a time with every cache
explicit.

The encoder sees a window of mel frames and three caches per call:

- ``cache_channel`` ``[layers, B, C, D]``: each layer's self-attention input (after its
  LayerNorm) for the last ``C`` frames; the keys and values of a chunk are the cache
  followed by the chunk;
- ``cache_time`` ``[layers, B, D, K - 1]``: the depthwise convolution's last ``K - 1`` input
  frames (causal convolution, kernel ``K``);
- ``cache_len`` ``[B]``: how many of the ``C`` cached frames are real (the rest, at the
  start of a stream, are masked out).

Attention is ``chunked_limited``: frames are grouped in chunks of ``lookahead + 1``; a frame
sees its own chunk and ``left // (lookahead + 1)`` chunks before it. The subsampling is
``dw_striding`` with causal convolutions (zero padding of ``kernel - 1`` before and
``stride - 1`` after, in time and in frequency). Given the whole utterance and empty caches,
one call is NeMo's offline encoder; given NeMo's windows (9 mel frames of history before each
chunk, 2 encoder frames dropped), successive calls are its cache-aware streaming step.

A window may hold padding before (``start``) and after (``length``) its real frames: every
stage zeroes the frames outside them, which is what the causal convolutions' own zero padding
would see, so one fixed-size window serves the first chunk of a stream, the steady chunks and
the shorter last one. This requires ``start`` to be a multiple of ``2 ** (stages - 1)``
(``0``, ``8`` or ``16`` frames here).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from speechport.nn.attention import MASK_VALUE, MultiHeadAttention
from speechport.nn.conformer import FeedForward
from speechport.nn.relpos_attention import rel_shift, relative_positions_table


def _span_mask(start: Tensor, length: Tensor, size: int, like: Tensor) -> Tensor:
    """``[B, size]`` bool: true for positions in ``[start, length)``."""
    time = torch.arange(size, device=like.device, dtype=torch.int32).unsqueeze(0)
    return (time >= start.to(torch.int32).unsqueeze(1)) & (
        time < length.to(torch.int32).unsqueeze(1)
    )


class CausalStridingSubsampling(nn.Module):
    """``dw_striding`` with causal convolutions (NeMo ``causal_downsampling: true``): a 3x3
    stride-2 ``Conv2d`` with ReLU, then ``log2(factor) - 1`` stages of depthwise 3x3
    stride-2 conv + pointwise conv + ReLU, then a linear projection of channels x
    frequencies. Attribute names match NeMo's state dict (``conv.0``, ``conv.2`` ... ``out``).

    ``forward(features [B, F, T], start [B], length [B]) -> (x [B, T', D], start', length')``.
    """

    kernel_size = 3
    stride = 2

    def __init__(self, feat_in: int, d_model: int, *, factor: int, channels: int) -> None:
        super().__init__()
        stages = factor.bit_length() - 1
        if factor < 2 or 1 << stages != factor:
            raise ValueError(f"subsampling factor {factor} is not a power of two >= 2")
        self.num_stages = stages
        self.left = self.kernel_size - 1
        self.right = self.stride - 1
        layers: list[nn.Module] = [nn.Conv2d(1, channels, kernel_size=3, stride=2), nn.ReLU()]
        for _ in range(stages - 1):
            layers += [
                nn.Conv2d(channels, channels, kernel_size=3, stride=2, groups=channels),
                nn.Conv2d(channels, channels, kernel_size=1),
                nn.ReLU(),
            ]
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(channels * self.frames_after(feat_in), d_model)

    def frames_after(self, frames: int) -> int:
        """Frames (or frequency bins) after every stage: ``n // 2 + 1`` per stage."""
        for _ in range(self.num_stages):
            frames = (frames + self.left + self.right - self.kernel_size) // self.stride + 1
        return frames

    def forward(
        self, features: Tensor, start: Tensor, length: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        start = start.to(torch.int32)
        length = length.to(torch.int32)
        x = features.transpose(1, 2).unsqueeze(1)  # [B, 1, T, F]
        x = _mask_outside(x, start, length)
        for module in self.conv:
            if isinstance(module, nn.Conv2d) and module.stride[0] > 1:
                x = nn.functional.pad(x, (self.left, self.right, self.left, self.right))
                x = module(x)
                start = torch.div(start, self.stride, rounding_mode="floor")
                length = (
                    torch.div(
                        length + (self.left + self.right - self.kernel_size),
                        self.stride,
                        rounding_mode="floor",
                    )
                    + 1
                )
                x = _mask_outside(x, start, length)
            else:
                x = _mask_outside(module(x), start, length)
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f)), start, length


def _last_frames(x: Tensor, end: Tensor, count: int, axis: int) -> Tensor:
    """The ``count`` frames of ``x`` before position ``end`` (``[B]``) along ``axis``: the
    cache after a chunk whose real frames stop at ``end`` (padding after them is not
    cached). An index computed from the input, so one fixed-shape graph serves a short
    last chunk too."""
    index = torch.arange(count, device=x.device).unsqueeze(0) + (
        end.to(torch.int64) - count
    ).unsqueeze(1)
    shape = [1] * x.dim()
    shape[0], shape[axis] = index.shape[0], count
    index = index.view(shape).expand(*[count if d == axis else n for d, n in enumerate(x.shape)])
    return torch.gather(x, axis, index)


def _mask_outside(x: Tensor, start: Tensor, length: Tensor) -> Tensor:
    """Zero the frames of ``x`` ``[B, C, T, F]`` outside ``[start, length)``."""
    valid = _span_mask(start, length, x.shape[2], x)
    return x.masked_fill(~valid[:, None, :, None], 0.0)


class CachedRelPositionAttention(MultiHeadAttention):
    """NeMo's ``RelPositionMultiHeadAttention`` with ``cache_last_channel``: the keys and
    values are the cached layer inputs followed by the chunk's (attribute names match its
    state dict)."""

    def __init__(self, n_heads: int, d_model: int, *, bias: bool = True) -> None:
        super().__init__(n_heads, d_model, bias=bias)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(n_heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(n_heads, self.d_k))

    def forward(
        self, x: Tensor, cache: Tensor, pos_emb: Tensor, masked: Tensor, valid: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``x [B, T, D]``, ``cache [B, C, D]``, ``pos_emb [1, 2(C+T)-1, D]``, ``masked
        [B, T, C+T]`` (true: not visible), ``valid [B]`` real frames of ``x`` -> ``(out
        [B, T, D], next cache [B, C, D])``."""
        b, t, _ = x.shape
        keys = torch.cat([cache, x], dim=1)
        next_cache = _last_frames(keys, cache.shape[1] + valid, cache.shape[1], 1)
        q = self.linear_q(x).view(b, t, self.h, self.d_k)
        k = self.heads(self.linear_k(keys))
        v = self.heads(self.linear_v(keys))
        p = self.linear_pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        matrix_ac = torch.matmul(q_u, k.transpose(-2, -1))
        matrix_bd = rel_shift(torch.matmul(q_v, p.transpose(-2, -1)))[:, :, :, : keys.shape[1]]
        scores = (matrix_ac + matrix_bd) / math.sqrt(self.d_k)
        hidden = masked.unsqueeze(1)
        attn = torch.softmax(scores.masked_fill(hidden, MASK_VALUE), dim=-1)
        attn = attn.masked_fill(hidden, 0.0)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, self.h * self.d_k)
        return self.linear_out(out), next_cache


class CausalConvolutionModule(nn.Module):
    """Pointwise conv -> GLU -> causal depthwise conv (cached left context) -> LayerNorm ->
    SiLU -> pointwise conv (NeMo's ``ConformerConvolution`` with ``conv_context_size:
    causal`` and ``conv_norm_type: layer_norm``)."""

    def __init__(self, d_model: int, kernel_size: int, *, bias: bool = True) -> None:
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(d_model, 2 * d_model, kernel_size=1, bias=bias)
        self.depthwise_conv = nn.Conv1d(
            d_model, d_model, kernel_size=kernel_size, groups=d_model, bias=bias
        )
        self.batch_norm = nn.LayerNorm(d_model)
        self.activation = nn.SiLU()
        self.pointwise_conv2 = nn.Conv1d(d_model, d_model, kernel_size=1, bias=bias)

    def forward(
        self, x: Tensor, valid: Tensor, count: Tensor, cache: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``x [B, T, D]``, ``valid [B, T]`` (``count`` ``[B]`` real frames),
        ``cache [B, D, K-1]`` -> ``(y [B, T, D], next cache)``."""
        x = nn.functional.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        x = x.masked_fill(~valid.unsqueeze(1), 0.0)
        x = torch.cat([cache, x], dim=2)
        next_cache = _last_frames(x, cache.shape[2] + count, cache.shape[2], 2)
        x = self.depthwise_conv(x)
        x = self.batch_norm(x.transpose(1, 2)).transpose(1, 2)
        x = self.pointwise_conv2(self.activation(x))
        return x.transpose(1, 2), next_cache


class StreamingConformerLayer(nn.Module):
    """FF/2 -> cached self-attention -> cached convolution -> FF/2 -> LayerNorm."""

    def __init__(self, d_model: int, d_ff: int, n_heads: int, kernel_size: int, *, bias: bool):
        super().__init__()
        self.fc_factor = 0.5
        self.norm_feed_forward1 = nn.LayerNorm(d_model)
        self.feed_forward1 = FeedForward(d_model, d_ff, bias=bias)
        self.norm_self_att = nn.LayerNorm(d_model)
        self.self_attn = CachedRelPositionAttention(n_heads, d_model, bias=bias)
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = CausalConvolutionModule(d_model, kernel_size, bias=bias)
        self.norm_feed_forward2 = nn.LayerNorm(d_model)
        self.feed_forward2 = FeedForward(d_model, d_ff, bias=bias)
        self.norm_out = nn.LayerNorm(d_model)

    def forward(
        self,
        x: Tensor,
        pos_emb: Tensor,
        masked: Tensor,
        valid: Tensor,
        count: Tensor,
        cache_channel: Tensor,
        cache_time: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        residual = x + self.fc_factor * self.feed_forward1(self.norm_feed_forward1(x))
        att, cache_channel = self.self_attn(
            self.norm_self_att(residual), cache_channel, pos_emb, masked, count
        )
        residual = residual + att
        conv, cache_time = self.conv(self.norm_conv(residual), valid, count, cache_time)
        residual = residual + conv
        residual = residual + self.fc_factor * self.feed_forward2(self.norm_feed_forward2(residual))
        return self.norm_out(residual), cache_channel, cache_time


class StreamingFastConformer(nn.Module):
    """The cache-aware FastConformer encoder (see the module's docstring).

    ``forward(features [B, F, W], start [B], length [B], cache_channel, cache_time,
    cache_len [B]) -> (encoded [B, D, T], encoded_len [B], cache_channel', cache_time',
    cache_len')``: ``drop`` encoder frames after the subsampling are dropped (the ones the 9
    frames of mel history produce), the rest go through the layers with the caches.
    ``prompt`` (``[B, P]`` one-hot), where the model has a prompt kernel, is appended to
    every output frame and mixed in by it.
    """

    def __init__(
        self,
        pre_encode: CausalStridingSubsampling,
        layers: list[StreamingConformerLayer],
        *,
        d_model: int,
        left_context: int,
        lookahead: int,
        cache_frames: int,
        xscaling: bool,
        drop: int,
        max_frames: int,
        prompt_kernel: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.pre_encode = pre_encode
        self.layers = nn.ModuleList(layers)
        self.d_model = d_model
        self.chunk = lookahead + 1
        self.left_chunks = left_context // self.chunk
        self.cache_frames = cache_frames
        self.xscale = math.sqrt(d_model) if xscaling else None
        self.drop = drop
        self.prompt_kernel = prompt_kernel
        table = relative_positions_table(d_model, cache_frames + max_frames)
        self.register_buffer("pe", table.unsqueeze(0), persistent=False)
        self.max_frames = max_frames

    pe: Tensor

    def forward(
        self,
        features: Tensor,
        start: Tensor,
        length: Tensor,
        cache_channel: Tensor,
        cache_time: Tensor,
        cache_len: Tensor,
        prompt: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        x, start, length = self.pre_encode(features, start, length)
        if self.drop:
            x = x[:, self.drop :]
            start = torch.clamp(start - self.drop, min=0)
            length = torch.clamp(length - self.drop, min=0)
        b, t, _ = x.shape
        if self.xscale is not None:
            x = x * self.xscale
        c = self.cache_frames
        total = c + t
        table = self.pe
        if total > table.shape[1] // 2 + 1:  # a longer utterance than the table was made for
            table = relative_positions_table(self.d_model, total).unsqueeze(0).to(x)
        center = table.shape[1] // 2
        pos_emb = table[:, center - total + 1 : center + total]
        valid = _span_mask(start, length, t, x)
        cache_valid = _span_mask(c - cache_len.to(torch.int32), torch.full_like(cache_len, c), c, x)
        key_valid = torch.cat([cache_valid, valid], dim=1)  # [B, C+T]
        chunk = torch.div(torch.arange(total, device=x.device), self.chunk, rounding_mode="floor")
        diff = chunk[c:].unsqueeze(1) - chunk.unsqueeze(0)  # [T, C+T]
        visible = (diff >= 0) & (diff <= self.left_chunks)
        masked = ~(visible.unsqueeze(0) & valid.unsqueeze(2) & key_valid.unsqueeze(1))
        channels, times = [], []
        count = length - start  # real frames (they start at 0 once the drop is done)
        for i, layer in enumerate(self.layers):
            x, ch, tm = layer(x, pos_emb, masked, valid, count, cache_channel[i], cache_time[i])
            channels.append(ch)
            times.append(tm)
        if self.prompt_kernel is not None:
            assert prompt is not None, "this encoder takes a prompt"
            x = self.prompt_kernel(torch.cat([x, prompt.unsqueeze(1).expand(b, t, -1)], dim=-1))
        encoded_len = count
        next_len = torch.clamp(cache_len.to(torch.int32) + encoded_len, max=c)
        return (
            x.transpose(1, 2),
            encoded_len,
            torch.stack(channels),
            torch.stack(times),
            next_len,
        )
