"""Make the tiny Kokoro fixtures under tests/data/tts/ with the upstream ``kokoro`` package.

Run with a side environment holding PyPI ``kokoro`` 0.9.4 and torch (CPU), never with
speechport's own environment:

    /work/side-kokoro/bin/python scripts/make_kokoro_fixtures.py tests/data/tts

It builds a tiny Kokoro from upstream's own classes (random weights, seeded), saves it in the
``kokoro-v1_0.pth`` layout (a dict of per-module state dicts) with its ``config.json`` and two
voice packs ``[510, 1, 256]``, then runs upstream ``KModel.forward_with_tokens`` on fixed
phoneme strings with every random draw injected (SineGen's ``randn_like`` noise and its
initial harmonic phase ``torch.rand``), drawn by numpy exactly as speechport's host draws them:

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((1, 600 * frames, 9), dtype=np.float32)
    phase = rng.random((1, 9), dtype=np.float32)   # upstream zeroes column 0 itself

Upstream hard-codes the decoder's widths (1024, 512, 64 and a 512-channel text input); the
fixture subclasses its ``Decoder`` so they follow the extra config key
``speechport_decoder_widths`` (which upstream ``KModel`` ignores).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kokoro
import numpy as np
import torch
from kokoro import istftnet
from kokoro.istftnet import AdainResBlk1d, Generator
from kokoro.model import KModel
from torch import nn
from torch.nn.utils import weight_norm

SEED = 20261201
SAMPLES_PER_FRAME = 600
HARMONICS = 9

# Kokoro-82M's phoneme vocabulary (config.json "vocab"), 114 symbols.
VOCAB = {
    ";": 1, ":": 2, ",": 3, ".": 4, "!": 5, "?": 6, "—": 9, "…": 10, '"': 11, "(": 12,
    ")": 13, "“": 14, "”": 15, " ": 16, "\u0303": 17, "ʣ": 18, "ʥ": 19, "ʦ": 20, "ʨ": 21,
    "ᵝ": 22, "\uab67": 23, "A": 24, "I": 25, "O": 31, "Q": 33, "S": 35, "T": 36, "W": 39,
    "Y": 41, "ᵊ": 42, "a": 43, "b": 44, "c": 45, "d": 46, "e": 47, "f": 48, "h": 50, "i": 51,
    "j": 52, "k": 53, "l": 54, "m": 55, "n": 56, "o": 57, "p": 58, "q": 59, "r": 60, "s": 61,
    "t": 62, "u": 63, "v": 64, "w": 65, "x": 66, "y": 67, "z": 68, "ɑ": 69, "ɐ": 70, "ɒ": 71,
    "æ": 72, "β": 75, "ɔ": 76, "ɕ": 77, "ç": 78, "ɖ": 80, "ð": 81, "ʤ": 82, "ə": 83, "ɚ": 85,
    "ɛ": 86, "ɜ": 87, "ɟ": 90, "ɡ": 92, "ɥ": 99, "ɨ": 101, "ɪ": 102, "ʝ": 103, "ɯ": 110,
    "ɰ": 111, "ŋ": 112, "ɳ": 113, "ɲ": 114, "ɴ": 115, "ø": 116, "ɸ": 118, "θ": 119, "œ": 120,
    "ɹ": 123, "ɾ": 125, "ɻ": 126, "ʁ": 128, "ɽ": 129, "ʂ": 130, "ʃ": 131, "ʈ": 132, "ʧ": 133,
    "ʊ": 135, "ʋ": 136, "ʌ": 138, "ɣ": 139, "ɤ": 140, "χ": 142, "ʎ": 143, "ʒ": 147, "ʔ": 148,
    "ˈ": 156, "ˌ": 157, "ː": 158, "ʰ": 162, "ʲ": 164, "↓": 169, "→": 171, "↗": 172, "↘": 173,
    "ᵻ": 177,
}  # fmt: skip

DECODER_WIDTHS = {"encode_dim": 24, "decode_dim": 16, "asr_res_dim": 8}

CONFIG: dict[str, Any] = {
    "istftnet": {
        "upsample_kernel_sizes": [20, 12],
        "upsample_rates": [10, 6],
        "gen_istft_hop_size": 5,
        "gen_istft_n_fft": 20,
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
        "resblock_kernel_sizes": [3, 7],
        "upsample_initial_channel": 16,
    },
    "dim_in": 64,
    "dropout": 0.2,
    "hidden_dim": 24,
    "max_conv_dim": 512,
    "max_dur": 50,
    "multispeaker": True,
    "n_layer": 2,
    "n_mels": 80,
    "n_token": 178,
    "style_dim": 128,
    "text_encoder_kernel_size": 5,
    "plbert": {
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 512,
        "num_hidden_layers": 2,
        "embedding_size": 16,
        "dropout": 0.1,
    },
    "speechport_decoder_widths": DECODER_WIDTHS,
    "vocab": VOCAB,
}

# (name, voice, speed, phonemes). "long" needs the 600-frame bucket (> 200 frames).
SENTENCES = [
    ("short", "af_tiny", 1.0, "hˈɛloʊ!"),
    ("fox", "af_tiny", 1.0, "ðə kwˈɪk bɹˈaʊn fˈɑks."),
    ("fast", "bm_tiny", 1.25, "ˈaɪ θˈɪŋk, ðɛɹfˌɔɹ ˈaɪ ˈæm?"),
    (
        "long",
        "af_tiny",
        1.0,
        "ðɪs lˈɔŋɡɚ sˈɛntəns fˈɪlz mˈɔɹ ðɐn fˈaɪv sˈɛkəndz; ɪt nˈidz ðə lˈɔŋ bˈʌkɪt.",
    ),
]


class WidthDecoder(istftnet.Decoder):
    """Upstream's ``Decoder`` with the widths it hard-codes (1024, 512, 64; text features
    512) taken from arguments; the forward pass is upstream's own."""

    def __init__(
        self,
        dim_in: int,
        style_dim: int,
        *,
        encode_dim: int,
        decode_dim: int,
        asr_res_dim: int,
        **istft: Any,
    ) -> None:
        nn.Module.__init__(self)
        self.encode = AdainResBlk1d(dim_in + 2, encode_dim, style_dim)
        self.decode = nn.ModuleList()
        for _ in range(3):
            self.decode.append(AdainResBlk1d(encode_dim + 2 + asr_res_dim, encode_dim, style_dim))
        self.decode.append(
            AdainResBlk1d(encode_dim + 2 + asr_res_dim, decode_dim, style_dim, upsample=True)
        )
        self.F0_conv = weight_norm(nn.Conv1d(1, 1, kernel_size=3, stride=2, groups=1, padding=1))
        self.N_conv = weight_norm(nn.Conv1d(1, 1, kernel_size=3, stride=2, groups=1, padding=1))
        self.asr_res = nn.Sequential(weight_norm(nn.Conv1d(dim_in, asr_res_dim, kernel_size=1)))
        self.generator = Generator(
            style_dim,
            istft["resblock_kernel_sizes"],
            istft["upsample_rates"],
            istft["upsample_initial_channel"],
            istft["resblock_dilation_sizes"],
            istft["upsample_kernel_sizes"],
            istft["gen_istft_n_fft"],
            istft["gen_istft_hop_size"],
        )


class TinyKModel(KModel):
    """``KModel`` whose decoder is built with the fixture's widths."""

    def __init__(self, config: dict[str, Any], model: str) -> None:
        original = istftnet.Decoder
        widths = config["speechport_decoder_widths"]

        def build(*, dim_in: int, style_dim: int, dim_out: int, **istft: Any) -> WidthDecoder:
            istft.pop("disable_complex", None)
            return WidthDecoder(dim_in, style_dim, **widths, **istft)

        import kokoro.model as model_module

        model_module.Decoder = build  # type: ignore[assignment]
        try:
            super().__init__(repo_id="hexgrad/Kokoro-82M", config=config, model=model)
        finally:
            model_module.Decoder = original


def randomize(model: nn.Module, generator: torch.Generator) -> None:
    """Every parameter redrawn from a seeded generator (upstream's init is not seeded); then
    the duration projection biased so that a phoneme lasts 2-8 frames."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("weight_g"):
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
            elif "norm" in name.rsplit(".", 2)[-2].lower() or name.endswith(("gamma", "beta")):
                base = 1.0 if name.endswith(("weight", "gamma")) else 0.0
                param.copy_(base + 0.1 * torch.randn(param.shape, generator=generator))
            elif "alpha" in name:
                param.copy_(1.0 + 0.2 * torch.rand(param.shape, generator=generator))
            else:
                fan_in = param.shape[1] * math.prod(param.shape[2:]) if param.dim() > 1 else 16
                param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))


def voice_the_source(model: KModel) -> None:
    """Random weights give F0 near 0 Hz (all unvoiced: SineGen's harmonics never sound) and a
    log-magnitude spectrum in the tens (audio in the millions). Scale the F0 projection to a
    pitch of about 150 +- 60 Hz, and the generator's last conv to magnitudes near exp(-1)."""
    with torch.no_grad():
        f0_proj = model.predictor.F0_proj
        f0_proj.weight.mul_(60.0 / max(float(f0_proj.weight.norm()), 1e-6))
        f0_proj.bias.fill_(150.0)
        post = model.decoder.generator.conv_post
        post.weight_g.fill_(0.05)
        bins = model.decoder.generator.post_n_fft // 2 + 1
        post.bias[:bins].fill_(-1.0)


def calibrate_durations(model: KModel, packs: dict[str, torch.Tensor]) -> None:
    """Bias the duration projection so that a phoneme lasts 2-8 frames, as real speech does
    (random weights give every phoneme the same length). Of its 50 sigmoid units, one is
    always on (bias +8), eight follow the text (weights scaled to a logit spread of 4 within
    each fixture sentence, biases centring them) and the rest are off (bias -12)."""
    with torch.no_grad():
        states = []
        for _, voice, _, phonemes in SENTENCES:
            ids = torch.tensor([[0, *(VOCAB[p] for p in phonemes), 0]])
            ref_s = packs[voice][len(phonemes) - 1]
            n = ids.shape[1]
            mask = torch.zeros((1, n), dtype=torch.bool)
            bert = model.bert(ids, attention_mask=(~mask).int())
            d_en = model.bert_encoder(bert).transpose(1, 2)
            d = model.predictor.text_encoder(d_en, ref_s[:, 128:], torch.tensor([n]), mask)
            states.append(model.predictor.lstm(d)[0][0])
        x = torch.cat(states)
        within = torch.cat([state - state.mean(0) for state in states])
        proj = model.predictor.duration_proj.linear_layer
        proj.weight[:1].zero_()
        proj.bias[:1].fill_(8.0)
        live = proj.weight[1:9]
        live.mul_((4.0 / (within @ live.T).std(0))[:, None])
        proj.bias[1:9].copy_(-(x.mean(0) @ live.T))
        proj.weight[9:].zero_()
        proj.bias[9:].fill_(-12.0)


@contextmanager
def injected_randomness(noise: torch.Tensor, phase: torch.Tensor) -> Iterator[None]:
    """Upstream's two random draws answered with the given tensors: SineGen's harmonic noise
    (``randn_like`` of a ``[1, T, 9]`` tensor) and its initial phase (``rand(1, 9)``). The
    noise-branch ``randn_like`` of ``[1, T, 1]`` (unused by the generator) gets zeros."""
    randn_like, rand = torch.randn_like, torch.rand

    def fake_randn_like(t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if t.shape[-1] == HARMONICS:
            assert t.shape == noise.shape, (t.shape, noise.shape)
            return noise.clone()
        return torch.zeros_like(t)

    def fake_rand(*size: Any, **kwargs: Any) -> torch.Tensor:
        assert tuple(size) == (1, HARMONICS), size
        return phase.clone()

    torch.randn_like, torch.rand = fake_randn_like, fake_rand  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.randn_like, torch.rand = randn_like, rand  # type: ignore[assignment]


def run_sentence(model: KModel, ids: list[int], ref_s: torch.Tensor, speed: float, seed: int):
    """Upstream's forward, with its intermediates captured by forward hooks, and its
    randomness drawn the host's way."""
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            captured[name] = output if isinstance(output, torch.Tensor) else output[0]

        return hook

    hooks = [
        model.predictor.text_encoder.register_forward_hook(keep("d")),
        model.text_encoder.register_forward_hook(keep("t_en")),
        model.predictor.duration_proj.register_forward_hook(keep("duration_logits")),
    ]
    f0n: dict[str, torch.Tensor] = {}
    original = model.predictor.F0Ntrain

    def f0ntrain(x: torch.Tensor, s: torch.Tensor):
        f0, n = original(x, s)
        f0n["f0"], f0n["n"] = f0, n
        return f0, n

    model.predictor.F0Ntrain = f0ntrain  # type: ignore[method-assign]
    input_ids = torch.tensor([[0, *ids, 0]], dtype=torch.long)
    # A first pass of the duration path alone finds the frame count, which sizes the noise.
    rng = np.random.default_rng(seed)
    frames = _frames(model, input_ids, ref_s, speed)
    noise = rng.standard_normal((1, SAMPLES_PER_FRAME * frames, HARMONICS), dtype=np.float32)
    phase = rng.random((1, HARMONICS), dtype=np.float32)
    with injected_randomness(torch.from_numpy(noise), torch.from_numpy(phase)):
        audio, pred_dur = model.forward_with_tokens(input_ids, ref_s, speed)
    for hook in hooks:
        hook.remove()
    model.predictor.F0Ntrain = original  # type: ignore[method-assign]
    raw = torch.sigmoid(captured["duration_logits"]).sum(-1) / speed
    return {
        "input_ids": input_ids.numpy().astype(np.int32),
        "style": ref_s.numpy().astype(np.float32),
        "speed": np.float32(speed),
        "seed": np.int64(seed),
        "durations_raw": raw.numpy().astype(np.float32),
        "durations": pred_dur.numpy().astype(np.int32).reshape(1, -1),
        "d": captured["d"].numpy().astype(np.float32),
        "t_en": captured["t_en"].numpy().astype(np.float32),
        "f0": f0n["f0"].numpy().astype(np.float32),
        "energy": f0n["n"].numpy().astype(np.float32),
        "phase": phase,
        "audio": audio.numpy().astype(np.float32).reshape(1, -1),
    }


def _frames(model: KModel, input_ids: torch.Tensor, ref_s: torch.Tensor, speed: float) -> int:
    """The frame count upstream will produce (its duration path, run alone)."""
    with torch.no_grad():
        n = input_ids.shape[1]
        mask = torch.zeros((1, n), dtype=torch.bool)
        bert = model.bert(input_ids, attention_mask=(~mask).int())
        d_en = model.bert_encoder(bert).transpose(-1, -2)
        lengths = torch.tensor([n])
        d = model.predictor.text_encoder(d_en, ref_s[:, 128:], lengths, mask)
        x, _ = model.predictor.lstm(d)
        dur = torch.sigmoid(model.predictor.duration_proj(x)).sum(-1) / speed
        return int(torch.round(dur).clamp(min=1).long().sum())


def _voice_packs() -> dict[str, torch.Tensor]:
    """Two voice packs [510, 1, 256]: a random style per voice drifting slowly with the
    phoneme count, as upstream's packs do."""
    packs = {}
    for i, voice in enumerate(("af_tiny", "bm_tiny")):
        g = torch.Generator().manual_seed(SEED + 1 + i)
        base = 0.3 * torch.randn((1, 1, 256), generator=g)
        drift = 0.005 * torch.randn((510, 1, 256), generator=g).cumsum(0)
        packs[voice] = (base + drift).float().contiguous()
    return packs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    out: Path = args.out
    (out / "voices").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    empty = out / "_empty.pth"
    torch.save({}, empty)
    model = TinyKModel(CONFIG, str(empty)).eval()
    empty.unlink()
    randomize(model, generator)
    voice_the_source(model)
    packs = _voice_packs()
    calibrate_durations(model, packs)
    state = {
        name: getattr(model, name).state_dict()
        for name in ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
    }
    torch.save(state, out / "kokoro-tiny.pth")
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2, ensure_ascii=False) + "\n")
    for voice, pack in packs.items():
        torch.save(pack, out / "voices" / f"{voice}.pt")
    # Reload through upstream's own loader: the saved layout is what KModel reads.
    model = TinyKModel(CONFIG, str(out / "kokoro-tiny.pth")).eval()
    params = sum(p.numel() for p in model.parameters())
    summary = []
    for k, (name, voice, speed, phonemes) in enumerate(SENTENCES):
        ids = [VOCAB[p] for p in phonemes]
        row = min(max(len(phonemes) - 1, 0), 509)
        ref_s = packs[voice][row]
        result = run_sentence(model, ids, ref_s, speed, SEED + 100 + k)
        result.update(phonemes=np.array(phonemes), voice=np.array(voice), style_row=np.int64(row))
        np.savez_compressed(out / f"{name}.npz", **result)
        dur = result["durations"][0]
        summary.append(
            f"{name}: {len(phonemes)} phonemes, {int(dur.sum())} frames, "
            f"durations {int(dur[1:-1].min())}-{int(dur[1:-1].max())}, "
            f"audio {result['audio'].shape[1]} samples"
        )
    print(f"kokoro {kokoro.__version__}, torch {torch.__version__}, numpy {np.__version__}")
    print(f"parameters: {params}")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
