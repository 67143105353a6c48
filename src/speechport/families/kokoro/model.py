"""Kokoro (StyleTTS2 + iSTFTNet) as speechport modules, in two fixed-shape stages.

Text stage (tokens → durations and features):
  ids → PL-BERT (ALBERT) → ``bert_encoder`` → predictor text encoder (LSTMs, AdaLayerNorm,
  style ``s = voice[:, 128:]``) = prosody ``d`` → predictor LSTM → duration projection →
  ``sigmoid().sum() / speed``; text encoder (embedding, convs, LSTM) = text features.
Acoustic stage (frame-aligned features → audio):
  prosody aligned → shared LSTM → F0 and energy blocks; decoder (AdaIN blocks, style
  ``voice[:, :128]``) → iSTFTNet generator with a harmonic source (SineGen, noise given as
  an input) → inverse STFT (conv-transpose overlap-add) → 24 kHz audio.

Every module takes the true length; padding to a bucket changes nothing over the valid part
(see `layers`). Names of parameters follow upstream's, so its state dicts load as they are
(after folding weight norm and splitting bidirectional LSTMs, see `checkpoint`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speechport.families.kokoro.config import HARMONICS, SAMPLE_RATE, KokoroConfig
from speechport.families.kokoro.layers import (
    AdainResBlk1d,
    AdaINResBlock1,
    MaskedBiLSTM,
    upsample_nearest,
    valid_mask,
)

# SineGen's constants (upstream's SourceModuleHnNSF for Kokoro).
SINE_AMP = 0.1
NOISE_STD = 0.003
VOICED_THRESHOLD = 10.0
# Additive attention mask: exp() of it is exactly 0 in float32, and it stays finite in
# float16.
_MASKED_SCORE = -1e4


def _gelu_new(x: Tensor) -> Tensor:
    """ALBERT's ``gelu_new`` (the tanh approximation), written as transformers does."""
    return (
        0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    )


class AlbertEmbeddings(nn.Module):
    def __init__(self, n_token: int, size: int, max_positions: int, eps: float) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(n_token, size)
        self.position_embeddings = nn.Embedding(max_positions, size)
        self.token_type_embeddings = nn.Embedding(2, size)
        self.LayerNorm = nn.LayerNorm(size, eps=eps)

    def forward(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.token_type_embeddings.weight[0]
        out: Tensor = self.LayerNorm(x + self.position_embeddings(positions))
        return out


class AlbertAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: Tensor, key_bias: Tensor) -> Tensor:
        b, t, c = x.shape
        d = c // self.heads

        def split(y: Tensor) -> Tensor:
            return y.reshape(b, t, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(2, 3)) * (d**-0.5) + key_bias
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        context = context.transpose(1, 2).reshape(b, t, c)
        out: Tensor = self.LayerNorm(x + self.dense(context))
        return out


class AlbertLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.attention = AlbertAttention(hidden, heads, eps)
        self.ffn = nn.Linear(hidden, intermediate)
        self.ffn_output = nn.Linear(intermediate, hidden)
        self.full_layer_layer_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: Tensor, key_bias: Tensor) -> Tensor:
        attended = self.attention(x, key_bias)
        hidden = self.ffn_output(_gelu_new(self.ffn(attended)))
        out: Tensor = self.full_layer_layer_norm(hidden + attended)
        return out


class _AlbertGroup(nn.Module):
    def __init__(self, layer: AlbertLayer) -> None:
        super().__init__()
        self.albert_layers = nn.ModuleList([layer])


class AlbertEncoder(nn.Module):
    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        p = config.plbert
        self.layers = p.num_hidden_layers
        self.embedding_hidden_mapping_in = nn.Linear(p.embedding_size, p.hidden_size)
        layer = AlbertLayer(
            p.hidden_size, p.num_attention_heads, p.intermediate_size, p.layer_norm_eps
        )
        self.albert_layer_groups = nn.ModuleList([_AlbertGroup(layer)])

    def forward(self, x: Tensor, key_bias: Tensor) -> Tensor:
        x = self.embedding_hidden_mapping_in(x)
        group = self.albert_layer_groups[0]
        assert isinstance(group, _AlbertGroup)
        layer = group.albert_layers[0]
        for _ in range(self.layers):
            x = layer(x, key_bias)
        return x


class Albert(nn.Module):
    """PL-BERT: ALBERT with one shared layer; keys past the valid length are masked."""

    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        p = config.plbert
        self.embeddings = AlbertEmbeddings(
            config.n_token, p.embedding_size, p.max_position_embeddings, p.layer_norm_eps
        )
        self.encoder = AlbertEncoder(config)
        # Upstream's checkpoint holds ALBERT's pooler; Kokoro never uses it.
        self.pooler = nn.Linear(p.hidden_size, p.hidden_size)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``mask`` ``[1, 1, T]``: 1 over the valid tokens."""
        key_bias = ((1.0 - mask) * _MASKED_SCORE).unsqueeze(1)  # [1, 1, 1, T]
        out: Tensor = self.encoder(self.embeddings(ids), key_bias)
        return out


class ChannelLayerNorm(nn.Module):
    """Layer norm over channels of ``[B, C, T]`` (upstream's ``LayerNorm`` with gamma/beta)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.transpose(1, 2), (x.shape[1],), self.gamma, self.beta, self.eps)
        return y.transpose(1, 2)


class TextEncoder(nn.Module):
    """Embedding, convolutions with layer norm, a bidirectional LSTM: ``[1, C, T]``."""

    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        channels, kernel = config.hidden_dim, config.text_encoder_kernel_size
        self.embedding = nn.Embedding(config.n_token, channels)
        self.cnn = nn.ModuleList(
            nn.ModuleList(
                [
                    nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2),
                    ChannelLayerNorm(channels),
                ]
            )
            for _ in range(config.n_layer)
        )
        self.lstm = MaskedBiLSTM(channels, channels // 2)

    def forward(self, ids: Tensor, length: Tensor, mask: Tensor) -> Tensor:
        x = self.embedding(ids).transpose(1, 2) * mask
        for block in self.cnn:
            assert isinstance(block, nn.ModuleList)
            conv, norm = block[0], block[1]
            x = F.leaky_relu(norm(conv(x)), 0.2) * mask
        out: Tensor = self.lstm(x.transpose(1, 2), length)
        return out.transpose(1, 2)


class AdaLayerNorm(nn.Module):
    """Layer norm over channels of ``[B, T, C]``, scaled and shifted by the style."""

    def __init__(self, style_dim: int, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.fc = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        gamma, beta = self.fc(s).unsqueeze(1).chunk(2, dim=-1)
        out: Tensor = (1 + gamma) * F.layer_norm(x, (self.channels,), eps=self.eps) + beta
        return out


class DurationEncoder(nn.Module):
    """The predictor's text encoder: (LSTM, AdaLayerNorm) x n_layer, the style concatenated
    to every step; output ``[1, T, hidden + style]`` (the prosody features)."""

    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        d, sty = config.hidden_dim, config.style_dim
        layers: list[nn.Module] = []
        for _ in range(config.n_layer):
            layers.append(MaskedBiLSTM(d + sty, d // 2))
            layers.append(AdaLayerNorm(sty, d))
        self.lstms = nn.ModuleList(layers)

    def forward(self, x: Tensor, s: Tensor, length: Tensor, mask: Tensor) -> Tensor:
        """``x`` ``[1, T, hidden]``, ``mask`` ``[1, T, 1]``."""
        style = s.unsqueeze(1).expand(-1, x.shape[1], -1)
        x = torch.cat([x, style], dim=-1) * mask
        for block in self.lstms:
            if isinstance(block, MaskedBiLSTM):
                x = block(x, length)
            else:
                x = torch.cat([block(x, s), style], dim=-1) * mask
        return x


class ProsodyPredictor(nn.Module):
    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        d, sty = config.hidden_dim, config.style_dim
        self.text_encoder = DurationEncoder(config)
        self.lstm = MaskedBiLSTM(d + sty, d // 2)
        self.duration_proj = nn.ModuleDict({"linear_layer": nn.Linear(d, config.max_dur)})
        self.shared = MaskedBiLSTM(d + sty, d // 2)
        self.F0 = nn.ModuleList(
            [
                AdainResBlk1d(d, d, sty),
                AdainResBlk1d(d, d // 2, sty, upsample=True),
                AdainResBlk1d(d // 2, d // 2, sty),
            ]
        )
        self.N = nn.ModuleList(
            [
                AdainResBlk1d(d, d, sty),
                AdainResBlk1d(d, d // 2, sty, upsample=True),
                AdainResBlk1d(d // 2, d // 2, sty),
            ]
        )
        self.F0_proj = nn.Conv1d(d // 2, 1, 1)
        self.N_proj = nn.Conv1d(d // 2, 1, 1)

    def durations(self, d: Tensor, length: Tensor, speed: Tensor) -> Tensor:
        x = self.lstm(d, length)
        logits = self.duration_proj["linear_layer"](x)
        durations: Tensor = torch.sigmoid(logits).sum(dim=-1) / speed.reshape(-1, 1)
        return durations

    def f0_energy(self, en: Tensor, s: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        """``en`` ``[1, C, F]`` (prosody aligned to frames) → F0 and energy ``[1, 2F]``."""
        size = en.shape[-1]
        mask = valid_mask(frames, size, en)
        mask2 = valid_mask(frames * 2, 2 * size, en)
        x = self.shared(en.transpose(1, 2), frames).transpose(1, 2)
        outputs = []
        for blocks, proj in ((self.F0, self.F0_proj), (self.N, self.N_proj)):
            h, m = x, mask
            for block in blocks:
                out_mask = mask2 if block.upsample else m
                h = block(h, s, m, out_mask)
                m = out_mask
            outputs.append((proj(h) * mask2).squeeze(1))
        return outputs[0], outputs[1]


class Decoder(nn.Module):
    """Text features, F0 and energy (frame-aligned) → the generator's audio."""

    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        sty, enc, asr = config.style_dim, config.decoder_encode_dim, config.decoder_asr_res_dim
        self.encode = AdainResBlk1d(config.hidden_dim + 2, enc, sty)
        self.decode = nn.ModuleList(
            [AdainResBlk1d(enc + 2 + asr, enc, sty) for _ in range(3)]
            + [AdainResBlk1d(enc + 2 + asr, config.decoder_out_dim, sty, upsample=True)]
        )
        self.F0_conv = nn.Conv1d(1, 1, kernel_size=3, stride=2, padding=1)
        self.N_conv = nn.Conv1d(1, 1, kernel_size=3, stride=2, padding=1)
        self.asr_res = nn.Sequential(nn.Conv1d(config.hidden_dim, asr, kernel_size=1))
        self.generator = Generator(config)

    def forward(
        self, asr: Tensor, f0: Tensor, energy: Tensor, s: Tensor, frames: Tensor, noise: Tensor
    ) -> Tensor:
        size = asr.shape[-1]
        mask = valid_mask(frames, size, asr)
        mask2 = valid_mask(frames * 2, 2 * size, asr)
        f0_down = self.F0_conv((f0 * mask2.squeeze(1)).unsqueeze(1)) * mask
        n_down = self.N_conv((energy * mask2.squeeze(1)).unsqueeze(1)) * mask
        x = self.encode(torch.cat([asr, f0_down, n_down], dim=1), s, mask, mask)
        asr_res = self.asr_res(asr)
        m, residual = mask, True
        for block in self.decode:
            if residual:
                x = torch.cat([x, asr_res, f0_down, n_down], dim=1)
            out_mask = mask2 if block.upsample else m
            x = block(x, s, m, out_mask)
            m = out_mask
            residual = residual and not block.upsample
        audio: Tensor = self.generator(x * m, s, f0, frames * 2, noise)
        return audio


class SineSource(nn.Module):
    """SineGen + its linear merge (upstream's ``m_source``): the harmonic excitation
    ``[1, samples]`` from F0 at the F0 rate, with the Gaussian noise given as an input.

    Upstream upsamples F0 to audio rate, turns it into phase increments, downsamples those
    linearly by ``scale`` (which reads the F0-rate values themselves), takes their running
    sum, multiplies it by ``scale`` and upsamples it linearly. Mathematically this is
    ``2 pi (scale * c[i0] + lambda * scale * rad[i0 + 1])`` at each sample, ``c`` the running
    sum of the per-step increments ``rad``. Upstream evaluates that in float32 at full size,
    where phases reach 1e5 rad and one rounding step of F0 moves the sine by ~1e-2; here the
    same sum is kept in cycles modulo 1 (``frac(sum(frac(scale * rad)))``), so the phase is
    accurate to ~1e-4 rad whatever the length, and a bucket's padding cannot change it."""

    harmonics: Tensor
    lam: Tensor

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.l_linear = nn.Linear(HARMONICS, 1)
        self.register_buffer(
            "harmonics", torch.arange(1, HARMONICS + 1, dtype=torch.float32), persistent=False
        )
        # Linear-interpolation weights of upstream's upsampling (half-pixel centres): the
        # first half of each block sits between the previous step and this one, the second
        # half between this one and the next.
        offsets = (np.arange(scale) + 0.5) / scale
        lam = np.where(np.arange(scale) < scale // 2, offsets + 0.5, offsets - 0.5)
        self.register_buffer(
            "lam",
            torch.from_numpy(lam.astype(np.float32)).reshape(1, 1, scale, 1),
            persistent=False,
        )
        self.half_block = scale // 2

    def phase_cycles(self, f0: Tensor, steps: Tensor) -> Tensor:
        """The sine phase of every harmonic at every sample, in cycles in [0, 1):
        ``[1, S * scale, 9]``."""
        size = f0.shape[-1]
        step_mask = valid_mask(steps, size, f0).transpose(1, 2)  # [1, S, 1]
        # Upstream's (x % 1), written as x - floor(x) (what torch computes for it; Core ML's
        # mod keeps the sign of x, and unvoiced F0 can be negative).
        cycles_per_sample = f0.unsqueeze(-1) * self.harmonics / SAMPLE_RATE
        rad = (cycles_per_sample - torch.floor(cycles_per_sample)) * step_mask
        advance = rad * self.scale  # cycles per step
        wrapped = torch.cumsum(advance - torch.floor(advance), dim=1)
        wrapped = wrapped - torch.floor(wrapped)
        zero = torch.zeros_like(advance[:, :1])
        # First half of block i: from step i-1 towards i (block 0 clamps to step 0).
        base_lo = torch.cat([wrapped[:, :1], wrapped[:, :-1]], dim=1)
        inc_lo = torch.cat([zero, advance[:, 1:]], dim=1)
        # Second half: from step i towards i+1 (nothing past the last valid step).
        base_hi = wrapped
        inc_hi = torch.cat([advance[:, 1:], zero], dim=1)
        lam_lo, lam_hi = self.lam[:, :, : self.half_block], self.lam[:, :, self.half_block :]
        lo = base_lo.unsqueeze(2) + lam_lo * inc_lo.unsqueeze(2)
        hi = base_hi.unsqueeze(2) + lam_hi * inc_hi.unsqueeze(2)
        cycles = torch.cat([lo, hi], dim=2).reshape(1, size * self.scale, HARMONICS)
        return cycles - torch.floor(cycles)

    def phase_radians(self, f0: Tensor, steps: Tensor) -> Tensor:
        return self.phase_cycles(f0, steps) * (2 * math.pi)

    def forward(self, f0: Tensor, steps: Tensor, noise: Tensor) -> Tensor:
        """``f0`` ``[1, S]`` (S F0 steps, ``steps`` valid), ``noise`` ``[1, S * scale, 9]``."""
        phase = self.phase_radians(f0, steps)
        voiced = (f0 > VOICED_THRESHOLD).to(f0.dtype)
        voiced = upsample_nearest(voiced.unsqueeze(1), self.scale).transpose(1, 2)
        amplitude = voiced * NOISE_STD + (1 - voiced) * SINE_AMP / 3
        sines = torch.sin(phase) * SINE_AMP * voiced + amplitude * noise
        return torch.tanh(self.l_linear(sines)).squeeze(-1)


def _hann(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic


class Stft(nn.Module):
    """``torch.stft`` (centred, reflect-padded at both true ends, periodic Hann) as strided
    convolutions: magnitude and phase ``[1, n_fft/2 + 1, frames]`` each.

    The first frame is centred on the reflection point, so its spectrum is exactly real;
    upstream's FFT leaves a rounding residue of either sign in its imaginary part, which
    makes the phase of its negative bins +pi or -pi by chance. Here that imaginary part is
    exactly +0 and such a phase is +pi on every backend (as upstream's CustomSTFT does); the
    audio then differs from upstream's only near the start when upstream drew -pi."""

    basis: Tensor

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        angle = 2 * np.pi * np.outer(np.arange(bins), np.arange(n_fft)) / n_fft
        window = _hann(n_fft)
        real = np.cos(angle) * window
        imag = -np.sin(angle) * window
        imag[0] = 0.0  # the DC and Nyquist rows are exactly real
        if n_fft % 2 == 0:
            imag[-1] = 0.0
        basis = np.concatenate([real, imag])[:, None, :].astype(np.float32)
        self.register_buffer("basis", torch.from_numpy(basis), persistent=False)

    def forward(self, x: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[1, N]`` with ``length`` valid samples (at least ``n_fft/2 + 1``)."""
        pad = self.n_fft // 2
        size = x.shape[-1]
        positions = torch.arange(size + pad, device=x.device)
        true_end = length.reshape(()).to(positions.dtype)
        # Reflect about the last valid sample: x[2L - 2 - p] for p >= L.
        tail = torch.where(positions < true_end, positions, 2 * true_end - 2 - positions)
        tail = torch.where(tail < 0, torch.zeros_like(tail), tail)  # (Core ML: no int clip)
        right = torch.index_select(x, 1, tail)
        left = torch.flip(x[:, 1 : pad + 1], dims=[1])
        padded = torch.cat([left, right], dim=1).unsqueeze(1)
        spec = F.conv1d(padded, self.basis, stride=self.hop)
        bins = self.n_fft // 2 + 1
        real, imag = spec[:, :bins], spec[:, bins:]
        first = (torch.arange(real.shape[-1], device=x.device) == 0).reshape(1, 1, -1)
        imag = torch.where(first, torch.zeros_like(imag), imag)
        magnitude = torch.sqrt(real * real + imag * imag)
        on_cut = (imag == 0) & (real < 0)
        phase = torch.where(on_cut, torch.full_like(real, math.pi), torch.atan2(imag, real))
        return magnitude, phase


class Istft(nn.Module):
    """``torch.istft`` (centred, periodic Hann) as a transposed convolution: each frame's
    inverse real DFT times the window, overlap-added, divided by the overlap-added squared
    window of the valid frames only, the centring trimmed."""

    basis: Tensor
    window_square: Tensor

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        window = _hann(n_fft)
        angle = 2 * np.pi * np.outer(np.arange(bins), np.arange(n_fft)) / n_fft
        weight = np.full((bins, 1), 2.0)
        weight[0] = 1.0
        if n_fft % 2 == 0:
            weight[-1] = 1.0
        real = weight * np.cos(angle) / n_fft * window
        imag = -weight * np.sin(angle) / n_fft * window
        imag[0] = 0.0
        if n_fft % 2 == 0:
            imag[-1] = 0.0
        basis = np.concatenate([real, imag])[:, None, :].astype(np.float32)
        self.register_buffer("basis", torch.from_numpy(basis), persistent=False)
        square = (window**2).astype(np.float32)[None, None, :]
        self.register_buffer("window_square", torch.from_numpy(square), persistent=False)

    def forward(self, magnitude: Tensor, phase: Tensor, frames: Tensor) -> Tensor:
        """``[1, bins, T]`` each, ``frames`` valid → ``[1, hop * (T - 1)]`` samples."""
        size = magnitude.shape[-1]
        mask = valid_mask(frames, size, magnitude)
        spectrum = torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1)
        audio = F.conv_transpose1d(spectrum * mask, self.basis, stride=self.hop)
        envelope = F.conv_transpose1d(mask, self.window_square, stride=self.hop)
        pad = self.n_fft // 2
        audio, envelope = audio[..., pad:-pad], envelope[..., pad:-pad]
        out_mask = (envelope > 1e-11).to(audio.dtype)
        return (audio / (envelope + (1 - out_mask)) * out_mask).squeeze(1)


class Generator(nn.Module):
    """iSTFTNet: upsampling transposed convs with AdaIN residual blocks, the harmonic source
    added at each scale, a final conv to log-magnitude and phase, an inverse STFT."""

    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        c = config.istftnet
        sty = config.style_dim
        self.n_fft, self.hop = c.gen_istft_n_fft, c.gen_istft_hop_size
        self.rates = c.upsample_rates
        self.num_kernels = len(c.resblock_kernel_sizes)
        scale = math.prod(c.upsample_rates) * self.hop
        self.m_source = SineSource(scale)
        self.scale = scale
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        self.noise_convs = nn.ModuleList()
        self.noise_res = nn.ModuleList()
        ch = c.upsample_initial_channel
        for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True)):
            ch_in, ch = (
                c.upsample_initial_channel // 2**i,
                c.upsample_initial_channel // 2 ** (i + 1),
            )
            self.ups.append(nn.ConvTranspose1d(ch_in, ch, k, u, padding=(k - u) // 2))
            for kernel, dilations in zip(
                c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True
            ):
                self.resblocks.append(AdaINResBlock1(ch, kernel, dilations, sty))
            if i + 1 < len(c.upsample_rates):
                stride = math.prod(c.upsample_rates[i + 1 :])
                self.noise_convs.append(
                    nn.Conv1d(
                        self.n_fft + 2,
                        ch,
                        kernel_size=2 * stride,
                        stride=stride,
                        padding=(stride + 1) // 2,
                    )
                )
                self.noise_res.append(AdaINResBlock1(ch, 7, (1, 3, 5), sty))
            else:
                self.noise_convs.append(nn.Conv1d(self.n_fft + 2, ch, kernel_size=1))
                self.noise_res.append(AdaINResBlock1(ch, 11, (1, 3, 5), sty))
        self.conv_post = nn.Conv1d(ch, self.n_fft + 2, 7, 1, padding=3)
        self.stft = Stft(self.n_fft, self.hop)
        self.istft = Istft(self.n_fft, self.hop)

    def forward(self, x: Tensor, s: Tensor, f0: Tensor, steps: Tensor, noise: Tensor) -> Tensor:
        """``x`` ``[1, C, S]`` at the F0 rate (``steps`` valid), ``f0`` ``[1, S]``."""
        samples = steps * self.scale
        source = self.m_source(f0, steps, noise)
        stft_frames = samples // self.hop + 1
        magnitude, phase = self.stft(source, samples)
        frame_mask = valid_mask(stft_frames, magnitude.shape[-1], magnitude)
        har = torch.cat([magnitude, phase], dim=1) * frame_mask
        length, size = steps, x.shape[-1]
        mask = valid_mask(length, size, x)
        for i, rate in enumerate(self.rates):
            x = F.leaky_relu(x, 0.1) * mask
            x_source = self.noise_convs[i](har)
            length, size = length * rate, size * rate
            last = i == len(self.rates) - 1
            if last:
                length, size = length + 1, size + 1
            mask = valid_mask(length, size, x)
            x_source = self.noise_res[i](x_source * mask, s, mask)
            x = self.ups[i](x)
            if last:
                x = torch.cat([x[:, :, 1:2], x], dim=-1)  # upstream's ReflectionPad1d((1, 0))
            x = x + x_source
            xs = self.resblocks[i * self.num_kernels](x, s, mask)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x, s, mask)
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x, 0.01) * mask)
        bins = self.n_fft // 2 + 1
        spec = torch.exp(x[:, :bins])
        phase = torch.sin(x[:, bins:])
        audio: Tensor = self.istft(spec, phase, length)
        return audio


class KokoroModel(nn.Module):
    """The whole model, upstream's module names at the top level."""

    def __init__(self, config: KokoroConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = Albert(config)
        self.bert_encoder = nn.Linear(config.plbert.hidden_size, config.hidden_dim)
        self.predictor = ProsodyPredictor(config)
        self.text_encoder = TextEncoder(config)
        self.decoder = Decoder(config)

    def text(
        self, input_ids: Tensor, input_length: Tensor, style: Tensor, speed: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Durations ``[1, N]`` (not rounded; 0 past the valid tokens), prosody ``[1, N, Cp]``
        and text features ``[1, Ct, N]``."""
        size = input_ids.shape[1]
        mask = valid_mask(input_length, size, style)  # [1, 1, N]
        ids = input_ids.long()
        s = style[:, self.config.style_dim :]
        bert = self.bert(ids, mask)
        d_en = self.bert_encoder(bert)
        step_mask = mask.transpose(1, 2)
        d = self.predictor.text_encoder(d_en, s, input_length, step_mask)
        durations = self.predictor.durations(d, input_length, speed) * mask.squeeze(1)
        t_en = self.text_encoder(ids, input_length, mask)
        return durations, d, t_en

    def acoustic(
        self,
        prosody_aligned: Tensor,
        text_aligned: Tensor,
        frames: Tensor,
        style: Tensor,
        noise: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Audio ``[1, 600 * Fb]`` (0 past ``600 * frames``), F0 and energy ``[1, 2 * Fb]``."""
        s_pred = style[:, self.config.style_dim :]
        s_dec = style[:, : self.config.style_dim]
        f0, energy = self.predictor.f0_energy(prosody_aligned, s_pred, frames)
        audio = self.decoder(text_aligned, f0, energy, s_dec, frames, noise)
        size = audio.shape[-1]
        audio = audio * valid_mask(frames * self.config.samples_per_frame, size, audio).squeeze(1)
        return audio, f0, energy


__all__ = ["Istft", "KokoroModel", "SineSource", "Stft"]
