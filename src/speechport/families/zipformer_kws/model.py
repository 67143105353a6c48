"""icefall's streaming Zipformer2 transducer in plain torch, inference only.

A re-implementation (not upstream's code) of the model of icefall's gigaspeech KWS recipe
(``egs/gigaspeech/KWS/zipformer``): ``Conv2dSubsampling`` with a ConvNeXt block, Zipformer2
stacks at several frame rates joined by bypasses, a stateless decoder and a joiner. Module
and parameter names follow icefall's, so its ``state_dict`` loads as it is. Only what runs
at inference exists here: no balancers, whitening, dropout or layer skipping (all identity
in evaluation), and the streaming path only, one fixed-size chunk at a time with every
cache passed in and returned, in the order of icefall's ONNX export:

    per stack i (one group per layer): cached_key, cached_nonlin_attn, cached_val1,
    cached_val2, cached_conv1, cached_conv2; then embed_states (the ConvNeXt left pad)
    and processed_lens (frames seen so far at the 50 Hz stage).

Everything is shape-static for a chunk (the relative-position shift is a constant gather,
the positional encodings a constant), so the same module traces to ONNX and Core ML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ZipformerConfig:
    """The hyper-parameters of the model (icefall's train.py names, one value per stack)."""

    feature_dim: int = 80
    num_encoder_layers: tuple[int, ...] = (1, 1, 1, 1, 1, 1)
    downsampling_factor: tuple[int, ...] = (1, 2, 4, 8, 4, 2)
    feedforward_dim: tuple[int, ...] = (192,) * 6
    num_heads: tuple[int, ...] = (4, 4, 4, 8, 4, 4)
    encoder_dim: tuple[int, ...] = (128,) * 6
    query_head_dim: tuple[int, ...] = (32,) * 6
    value_head_dim: tuple[int, ...] = (12,) * 6
    pos_head_dim: tuple[int, ...] = (4,) * 6
    pos_dim: int = 48
    cnn_module_kernel: tuple[int, ...] = (31, 31, 15, 15, 15, 31)
    decoder_dim: int = 320
    joiner_dim: int = 320
    vocab_size: int = 500
    blank_id: int = 0
    context_size: int = 2
    chunk_size: int = 16
    left_context_frames: int = 64
    output_downsampling_factor: int = 2
    layer1_channels: int = 8
    layer2_channels: int = 32
    layer3_channels: int = 128

    @property
    def num_stacks(self) -> int:
        return len(self.downsampling_factor)

    @property
    def output_dim(self) -> int:
        return max(self.encoder_dim)

    @property
    def chunk_frames(self) -> int:
        """Feature frames per chunk: 2 per 50 Hz frame, plus the subsampling's 7 and the
        ConvNeXt's 2 x 3 of right context."""
        return 2 * self.chunk_size + 7 + 2 * 3

    @property
    def chunk_shift(self) -> int:
        return 2 * self.chunk_size

    @property
    def frames_per_chunk(self) -> int:
        return self.chunk_size // self.output_downsampling_factor

    @property
    def embed_freqs(self) -> int:
        return ((self.feature_dim - 1) // 2 - 1) // 2

    def left_context(self, stack: int) -> int:
        return self.left_context_frames // self.downsampling_factor[stack]


def swoosh_l(x: Tensor) -> Tensor:
    return _log1p_exp(x - 4.0) - 0.08 * x - 0.035


def swoosh_r(x: Tensor) -> Tensor:
    return _log1p_exp(x - 1.0) - 0.08 * x - 0.313261687


def _log1p_exp(z: Tensor) -> Tensor:
    """``log(1 + exp(z))`` without overflow (icefall's ``logaddexp(0, z)``)."""
    return torch.relu(z) + torch.log(1.0 + torch.exp(-torch.abs(z)))


class BiasNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(1.0))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        scales = torch.mean((x - self.bias) ** 2, dim=-1, keepdim=True) ** -0.5
        return x * (scales * self.log_scale.exp())


class Bypass(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bypass_scale = nn.Parameter(torch.full((channels,), 0.5))

    def forward(self, src_orig: Tensor, src: Tensor) -> Tensor:
        return src_orig + (src - src_orig) * self.bypass_scale


class SwooshLinear(nn.Module):
    """icefall's ``ActivationDropoutAndLinear`` at inference: activation, then linear."""

    def __init__(self, in_dim: int, out_dim: int, activation: str):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.activation = swoosh_l if activation == "SwooshL" else swoosh_r

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.activation(x), self.weight, self.bias)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.in_proj = nn.Linear(dim, hidden)
        self.out_proj = SwooshLinear(hidden, dim, "SwooshL")

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.out_proj(self.in_proj(x))
        return out


def compact_rel_pos(pos_dim: int, left: int, seq_len: int) -> Tensor:
    """icefall's ``CompactRelPositionalEncoding`` rows for relative offsets
    ``-(left + seq_len - 1) .. seq_len - 1``, ``[1, left + 2*seq_len - 1, pos_dim]``."""
    x = torch.arange(-(left + seq_len - 1), seq_len).to(torch.float32).unsqueeze(1)
    freqs = 1 + torch.arange(pos_dim // 2)
    compression = pos_dim**0.5
    x_compressed = compression * x.sign() * ((x.abs() + compression).log() - math.log(compression))
    length_scale = pos_dim / (2.0 * math.pi)
    x_atan = (x_compressed / length_scale).atan()
    pe = torch.zeros(x.shape[0], pos_dim)
    pe[:, 0::2] = (x_atan * freqs).cos()
    pe[:, 1::2] = (x_atan * freqs).sin()
    pe[:, -1] = 1.0
    return pe.unsqueeze(0)


class AttentionWeights(nn.Module):
    """Multi-head attention weights with relative positions; their first head also feeds
    the non-linear attention, all heads both self-attention modules."""

    def __init__(self, dim: int, pos_dim: int, heads: int, query_dim: int, pos_head_dim: int):
        super().__init__()
        self.heads, self.query_dim, self.pos_head_dim = heads, query_dim, pos_head_dim
        self.in_proj = nn.Linear(dim, (2 * query_dim + pos_head_dim) * heads)
        self.linear_pos = nn.Linear(pos_dim, heads * pos_head_dim, bias=False)

    def forward(
        self, x: Tensor, pos_emb: Tensor, cached_key: Tensor, shift: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        seq_len, batch, _ = x.shape
        h, qd, pd = self.heads, self.query_dim, self.pos_head_dim
        x = self.in_proj(x)
        q, k, p = x[..., : qd * h], x[..., qd * h : 2 * qd * h], x[..., 2 * qd * h :]
        left = cached_key.shape[0]
        k = torch.cat([cached_key, k], dim=0)
        new_key = k[-left:]
        k_len = k.shape[0]
        q = q.reshape(seq_len, batch, h, qd).permute(2, 1, 0, 3)
        p = p.reshape(seq_len, batch, h, pd).permute(2, 1, 0, 3)
        k = k.reshape(k_len, batch, h, qd).permute(2, 1, 3, 0)
        scores = torch.matmul(q, k)
        pos = self.linear_pos(pos_emb)
        n = pos.shape[1]
        pos = pos.reshape(-1, n, h, pd).permute(2, 0, 3, 1)
        pos_scores = torch.matmul(p, pos)  # (h, batch, seq_len, n)
        # relative shift: row t, key j reads offset column (seq_len - 1 - t) + j
        index = shift.expand(h, batch, seq_len, k_len)
        scores = scores + torch.gather(pos_scores, 3, index)
        scores = scores.masked_fill(mask.unsqueeze(1), -1000.0)
        return scores.softmax(dim=-1), new_key


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, value_dim: int):
        super().__init__()
        self.in_proj = nn.Linear(dim, heads * value_dim)
        self.out_proj = nn.Linear(heads * value_dim, dim)

    def forward(self, x: Tensor, weights: Tensor, cached: Tensor) -> tuple[Tensor, Tensor]:
        seq_len, batch, _ = x.shape
        heads = weights.shape[0]
        left = cached.shape[0]
        v = torch.cat([cached, self.in_proj(x)], dim=0)
        new_cached = v[-left:]
        v = v.reshape(left + seq_len, batch, heads, -1).permute(2, 1, 0, 3)
        out = torch.matmul(weights, v).permute(2, 1, 0, 3).reshape(seq_len, batch, -1)
        return self.out_proj(out), new_cached


class NonlinAttention(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.in_proj = nn.Linear(dim, 3 * hidden)
        self.out_proj = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, weights: Tensor, cached: Tensor) -> tuple[Tensor, Tensor]:
        seq_len, batch, _ = x.shape
        s, v, y = self.in_proj(x).chunk(3, dim=2)
        v = v * torch.tanh(s)
        heads = weights.shape[0]
        v = v.reshape(seq_len, batch, heads, -1).permute(2, 1, 0, 3)
        left = cached.shape[2]
        v = torch.cat([cached, v], dim=2)
        new_cached = v[:, :, -left:, :]
        out = torch.matmul(weights, v).permute(2, 1, 0, 3).reshape(seq_len, batch, -1)
        return self.out_proj(out * y), new_cached


class ChunkCausalDepthwiseConv(nn.Module):
    """A causal depthwise conv of half the kernel plus a within-chunk depthwise conv scaled
    by position in the chunk (icefall's ``ChunkCausalDepthwiseConv1d``), streaming."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.causal_conv = nn.Conv1d(channels, channels, (kernel + 1) // 2, groups=channels)
        self.chunkwise_conv = nn.Conv1d(
            channels, channels, kernel, padding=kernel // 2, groups=channels
        )
        self.chunkwise_conv_scale = nn.Parameter(torch.zeros(2, channels, kernel))

    def chunk_scale(self, chunk: int) -> Tensor:
        left, right = self.chunkwise_conv_scale[0], self.chunkwise_conv_scale[1]
        if chunk < self.kernel:
            left, right = left[:, :chunk], right[:, -chunk:]
        else:
            pad = torch.zeros(left.shape[0], chunk - self.kernel)
            left, right = torch.cat((left, pad), dim=-1), torch.cat((pad, right), dim=-1)
        return 1.0 + (left + right)

    def forward(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        left_pad = self.kernel // 2
        seq_len = x.shape[2]
        x = torch.cat([cache, x], dim=2)
        new_cache = x[..., -left_pad:]
        causal = self.causal_conv(x)
        chunk = self.chunkwise_conv(x[..., left_pad:]) * self.chunk_scale(seq_len)
        return chunk + causal, new_cache


class ConvolutionModule(nn.Module):
    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.in_proj = nn.Linear(dim, 2 * dim)
        self.depthwise_conv = ChunkCausalDepthwiseConv(dim, kernel)
        self.out_proj = SwooshLinear(dim, dim, "SwooshR")

    def forward(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        x, s = self.in_proj(x).chunk(2, dim=2)
        x = (x * torch.sigmoid(s)).permute(1, 2, 0)
        # (the chunk's own frames are never padding in streaming: no mask to apply here)
        x, new_cache = self.depthwise_conv(x, cache)
        return self.out_proj(x.permute(2, 0, 1)), new_cache


class ZipformerLayer(nn.Module):
    def __init__(self, cfg: ZipformerConfig, i: int):
        super().__init__()
        dim, ff = cfg.encoder_dim[i], cfg.feedforward_dim[i]
        heads = cfg.num_heads[i]
        self.bypass = Bypass(dim)
        self.bypass_mid = Bypass(dim)
        self.bypass_scale = nn.Parameter(torch.full((dim,), 0.5))  # in icefall, unused
        self.self_attn_weights = AttentionWeights(
            dim, cfg.pos_dim, heads, cfg.query_head_dim[i], cfg.pos_head_dim[i]
        )
        self.self_attn1 = SelfAttention(dim, heads, cfg.value_head_dim[i])
        self.self_attn2 = SelfAttention(dim, heads, cfg.value_head_dim[i])
        self.feed_forward1 = FeedForward(dim, (ff * 3) // 4)
        self.feed_forward2 = FeedForward(dim, ff)
        self.feed_forward3 = FeedForward(dim, (ff * 5) // 4)
        self.nonlin_attention = NonlinAttention(dim, 3 * dim // 4)
        self.conv_module1 = ConvolutionModule(dim, cfg.cnn_module_kernel[i])
        self.conv_module2 = ConvolutionModule(dim, cfg.cnn_module_kernel[i])
        self.norm = BiasNorm(dim)

    def forward(
        self, src: Tensor, pos_emb: Tensor, states: list[Tensor], shift: Tensor, mask: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        key, nonlin, val1, val2, conv1, conv2 = states
        orig = src
        weights, key = self.self_attn_weights(src, pos_emb, key, shift, mask)
        src = src + self.feed_forward1(src)
        na, nonlin = self.nonlin_attention(src, weights[0:1], nonlin)
        src = src + na
        att, val1 = self.self_attn1(src, weights, val1)
        src = src + att
        conv, conv1 = self.conv_module1(src, conv1)
        src = src + conv
        src = src + self.feed_forward2(src)
        src = self.bypass_mid(orig, src)
        att, val2 = self.self_attn2(src, weights, val2)
        src = src + att
        conv, conv2 = self.conv_module2(src, conv2)
        src = src + conv
        src = src + self.feed_forward3(src)
        src = self.bypass(orig, self.norm(src))
        return src, [key, nonlin, val1, val2, conv1, conv2]


class ZipformerStack(nn.Module):
    """The layers of one stack at its own frame rate, with the stack's constant positional
    encodings and relative-shift index."""

    def __init__(self, cfg: ZipformerConfig, i: int):
        super().__init__()
        self.layers = nn.ModuleList(
            [ZipformerLayer(cfg, i) for _ in range(cfg.num_encoder_layers[i])]
        )
        self.num_layers = cfg.num_encoder_layers[i]
        seq_len = cfg.chunk_size // cfg.downsampling_factor[i]
        left = cfg.left_context(i)
        self.register_buffer(
            "pos_emb", compact_rel_pos(cfg.pos_dim, left, seq_len), persistent=False
        )
        rows = torch.arange(seq_len - 1, -1, -1).unsqueeze(-1)
        shift = (rows + torch.arange(left + seq_len)).reshape(1, 1, seq_len, left + seq_len)
        self.register_buffer("shift", shift, persistent=False)

    def forward(
        self, src: Tensor, states: list[Tensor], mask: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        new_states: list[Tensor] = []
        for n, layer in enumerate(self.layers):
            src, layer_states = layer(
                src, self.pos_emb, states[6 * n : 6 * n + 6], self.shift, mask
            )
            new_states += layer_states
        return src, new_states


class DownsampledStack(nn.Module):
    def __init__(self, cfg: ZipformerConfig, i: int):
        super().__init__()
        self.factor = cfg.downsampling_factor[i]
        self.downsample = SimpleDownsample(self.factor)
        self.encoder = ZipformerStack(cfg, i)
        self.num_layers = self.encoder.num_layers
        self.out_combiner = Bypass(cfg.encoder_dim[i])

    def forward(
        self, src: Tensor, states: list[Tensor], mask: Tensor
    ) -> tuple[Tensor, list[Tensor]]:
        orig = src
        x, new_states = self.encoder(self.downsample(src), states, mask)
        seq_len, batch, dim = x.shape
        x = x.unsqueeze(1).expand(seq_len, self.factor, batch, dim).reshape(-1, batch, dim)
        return self.out_combiner(orig, x[: orig.shape[0]]), new_states


class SimpleDownsample(nn.Module):
    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor
        self.bias = nn.Parameter(torch.zeros(factor))

    def forward(self, src: Tensor) -> Tensor:
        seq_len, batch, dim = src.shape
        out_len = (seq_len + self.factor - 1) // self.factor
        pad = out_len * self.factor - seq_len
        if pad:
            src = torch.cat([src, src[-1:].expand(pad, batch, dim)], dim=0)
        src = src.reshape(out_len, self.factor, batch, dim)
        weights = self.bias.softmax(dim=0).unsqueeze(-1).unsqueeze(-1)
        return (src * weights).sum(dim=1)


class Zipformer2(nn.Module):
    def __init__(self, cfg: ZipformerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoders = nn.ModuleList(
            [
                ZipformerStack(cfg, i) if ds == 1 else DownsampledStack(cfg, i)
                for i, ds in enumerate(cfg.downsampling_factor)
            ]
        )
        self.downsample_output = SimpleDownsample(cfg.output_downsampling_factor)

    def forward(self, x: Tensor, states: list[Tensor], mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        cfg = self.cfg
        outputs: list[Tensor] = []
        new_states: list[Tensor] = []
        offset = 0
        for i, module in enumerate(self.encoders):
            dim = cfg.encoder_dim[i]
            if dim <= x.shape[-1]:
                x = x[..., :dim]
            else:
                x = torch.cat([x, x.new_zeros(*x.shape[:-1], dim - x.shape[-1])], dim=-1)
            layers = cfg.num_encoder_layers[i]
            ds = cfg.downsampling_factor[i]
            x, stack_states = module(x, states[6 * offset : 6 * (offset + layers)], mask[:, ::ds])
            offset += layers
            outputs.append(x)
            new_states += stack_states
        pieces = [outputs[-1]]
        cur = cfg.encoder_dim[-1]
        for i in range(cfg.num_stacks - 2, -1, -1):
            if cfg.encoder_dim[i] > cur:
                pieces.append(outputs[i][..., cur : cfg.encoder_dim[i]])
                cur = cfg.encoder_dim[i]
        return self.downsample_output(torch.cat(pieces, dim=-1)), new_states


class ConvNeXt(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.depthwise_conv = nn.Conv2d(channels, channels, 7, padding=(3, 3), groups=channels)
        self.pointwise_conv1 = nn.Conv2d(channels, 3 * channels, 1)
        self.pointwise_conv2 = nn.Conv2d(3 * channels, channels, 1)

    def forward(self, x: Tensor, cached_left_pad: Tensor) -> tuple[Tensor, Tensor]:
        pad = cached_left_pad.shape[2]
        t = x.shape[2] - pad
        bypass = x[:, :, :t]
        x = torch.cat([cached_left_pad, x], dim=2)
        new_pad = x[:, :, t : t + pad]
        conv = self.depthwise_conv
        x = F.conv2d(x, conv.weight, conv.bias, padding=(0, 3), groups=conv.groups)
        x = self.pointwise_conv2(swoosh_l(self.pointwise_conv1(x)))
        return bypass + x, new_pad


class Conv2dSubsampling(nn.Module):
    def __init__(self, cfg: ZipformerConfig):
        super().__init__()
        c1, c2, c3 = cfg.layer1_channels, cfg.layer2_channels, cfg.layer3_channels
        # indices as in icefall's nn.Sequential (the others are gradient-only modules)
        self.conv = nn.ModuleDict(
            {
                "0": nn.Conv2d(1, c1, 3, padding=(0, 1)),
                "4": nn.Conv2d(c1, c2, 3, stride=2),
                "7": nn.Conv2d(c2, c3, 3, stride=(1, 2)),
            }
        )
        self.convnext = ConvNeXt(c3)
        self.out = nn.Linear(cfg.embed_freqs * c3, cfg.encoder_dim[0])
        self.out_norm = BiasNorm(cfg.encoder_dim[0])

    def forward(self, x: Tensor, cached_left_pad: Tensor) -> tuple[Tensor, Tensor]:
        x = x.unsqueeze(1)
        for key in ("0", "4", "7"):
            x = swoosh_r(self.conv[key](x))
        x, new_pad = self.convnext(x, cached_left_pad)
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return self.out_norm(x), new_pad


class Decoder(nn.Module):
    """Stateless decoder: embedding of the last ``context_size`` tokens (``-1``: none, a
    zero vector), a grouped conv over them, ReLU."""

    def __init__(self, cfg: ZipformerConfig):
        super().__init__()
        self.context_size = cfg.context_size
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.decoder_dim)
        self.conv = nn.Conv1d(
            cfg.decoder_dim,
            cfg.decoder_dim,
            cfg.context_size,
            groups=cfg.decoder_dim // 4,
            bias=False,
        )

    def forward(self, y: Tensor) -> Tensor:
        y = y.to(torch.int64)
        emb = self.embedding(y.clamp(min=0)) * (y >= 0).unsqueeze(-1).to(torch.float32)
        out = self.conv(emb.permute(0, 2, 1)).permute(0, 2, 1)
        return F.relu(out)


class Joiner(nn.Module):
    def __init__(self, cfg: ZipformerConfig):
        super().__init__()
        self.encoder_proj = nn.Linear(cfg.output_dim, cfg.joiner_dim)
        self.decoder_proj = nn.Linear(cfg.decoder_dim, cfg.joiner_dim)
        self.output_linear = nn.Linear(cfg.joiner_dim, cfg.vocab_size)

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        """Both inputs already projected to joiner space."""
        out: Tensor = self.output_linear(torch.tanh(encoder_out + decoder_out))
        return out


class ZipformerTransducer(nn.Module):
    """The whole model, with icefall's parameter names (``encoder_embed``, ``encoder``,
    ``decoder``, ``joiner``)."""

    def __init__(self, cfg: ZipformerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder_embed = Conv2dSubsampling(cfg)
        self.encoder = Zipformer2(cfg)
        self.decoder = Decoder(cfg)
        self.joiner = Joiner(cfg)

    # --- streaming state -------------------------------------------------------------------

    def state_names(self) -> list[str]:
        names: list[str] = []
        for i in range(self.cfg.num_stacks):
            for _ in range(self.cfg.num_encoder_layers[i]):
                base = len(names) // 6
                names += [
                    f"cached_key_{base}",
                    f"cached_nonlin_attn_{base}",
                    f"cached_val1_{base}",
                    f"cached_val2_{base}",
                    f"cached_conv1_{base}",
                    f"cached_conv2_{base}",
                ]
        return [*names, "embed_states", "processed_lens"]

    def initial_states(self, batch: int = 1, lens_dtype: torch.dtype = torch.int64) -> list[Tensor]:
        cfg = self.cfg
        states: list[Tensor] = []
        for i in range(cfg.num_stacks):
            left = cfg.left_context(i)
            dim, heads = cfg.encoder_dim[i], cfg.num_heads[i]
            for _ in range(cfg.num_encoder_layers[i]):
                states += [
                    torch.zeros(left, batch, cfg.query_head_dim[i] * heads),
                    torch.zeros(1, batch, left, 3 * dim // 4),
                    torch.zeros(left, batch, cfg.value_head_dim[i] * heads),
                    torch.zeros(left, batch, cfg.value_head_dim[i] * heads),
                    torch.zeros(batch, dim, cfg.cnn_module_kernel[i] // 2),
                    torch.zeros(batch, dim, cfg.cnn_module_kernel[i] // 2),
                ]
        states.append(torch.zeros(batch, cfg.layer3_channels, 3, cfg.embed_freqs))
        states.append(torch.zeros(batch, dtype=lens_dtype))
        return states

    def streaming_step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """One chunk: ``x`` ``[N, chunk_frames, feature_dim]`` -> encoder frames
        ``[N, frames_per_chunk, output_dim]`` (before the joiner's projection) and the new
        states, as icefall's ``streaming_forward`` with its ONNX wrapper's padding mask."""
        cfg = self.cfg
        x, embed_states = self.encoder_embed(x, states[-2])
        processed = states[-1]
        left = cfg.left_context_frames
        positions = torch.arange(left, device=x.device).unsqueeze(0)
        history_pad = (processed.unsqueeze(1) <= positions).flip(1)
        chunk_pad = torch.zeros(x.shape[0], cfg.chunk_size, dtype=torch.bool, device=x.device)
        mask = torch.cat([history_pad, chunk_pad], dim=1)
        out, new_states = self.encoder(x.permute(1, 0, 2), states[:-2], mask)
        new_processed = processed + cfg.chunk_size
        return out.permute(1, 0, 2), [*new_states, embed_states, new_processed]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
