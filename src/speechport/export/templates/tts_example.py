#!/usr/bin/env python3
"""Speak with this text-to-speech bundle (Kokoro), without speechport.

Needs numpy and onnxruntime (``--backend onnx``) or coremltools on macOS (``--backend
coreml``); text needs espeak-ng installed (or pass Kokoro phonemes with ``--phonemes``).
Buckets, voices and the phoneme vocabulary come from ``speechport.json``.

    python example_infer.py "Hello there." --out speech.wav [--voice NAME] [--speed 1.0]
    python example_infer.py "həlˈO ðˈɛɹ." --phonemes --out speech.wav

One sentence per model call; ``speechport speak`` also splits long sentences and fades
chunk edges.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_BACKEND = "onnx"
HERE = Path(__file__).resolve().parent
NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "int64": np.int64}
# espeak-ng IPA -> Kokoro phonemes (American English), as upstream's espeak path maps it
E2M = [("ʔˌn̩", "ʔn"), ("ʔn̩", "ʔn"), ("a^ɪ", "I"), ("a^ʊ", "W"), ("d^ʒ", "ʤ"), ("e^ɪ", "A"),
       ("t^ʃ", "ʧ"), ("ɔ^ɪ", "Y"), ("ə^l", "ᵊl"), ("ʲo", "jo"), ("ʲə", "jə"), ("ʲ", ""),
       ("e", "A"), ("ɚ", "əɹ"), ("r", "ɹ"), ("x", "k"), ("ç", "k"), ("ɐ", "ə"), ("ɬ", "l"),
       ("\u0303", "")]  # fmt: skip
US = [("o^ʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""), ("o", "ɔ"),
      ("ɾ", "T"), ("ʔ", "t"), ("^", "")]  # fmt: skip


def phonemize(text: str) -> str:
    """Kokoro phonemes of ``text``: espeak-ng per phrase, punctuation kept."""
    out = []
    for phrase, mark in re.findall(r"([^.,;:!?—…]+)([.,;:!?—…]*)", text):
        if not phrase.strip():
            out.append(mark)
            continue
        try:
            ipa = subprocess.run(
                ["espeak-ng", "-q", "--ipa", "--tie=^", "-v", "en-us", "--stdin"],
                input=phrase, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
        except FileNotFoundError:
            sys.exit("espeak-ng is not installed (apt-get install espeak-ng), or pass --phonemes")
        ps = " ".join(ipa.split())
        for old, new in E2M:
            ps = ps.replace(old, new)
        ps = re.sub(r"(\S)\u0329", "ᵊ\\1", ps).replace("\u0329", "")
        for old, new in US:
            ps = ps.replace(old, new)
        out.append(ps + mark + " ")
    return " ".join("".join(out).split())


class Stage:
    """A component called with named canonical inputs; returns named canonical outputs."""

    def __init__(self, spec: dict[str, Any], backend: str) -> None:
        if backend not in spec["files"]:
            sys.exit(
                f"no {backend} files in this bundle; try --backend {next(iter(spec['files']))}"
            )
        self.spec, self.file, self.backend = spec, spec["files"][backend], backend
        path = str(HERE / self.file["path"])
        if backend == "onnx":
            import onnxruntime as ort

            self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        else:
            import coremltools as ct

            self.model = ct.models.MLModel(path, compute_units=ct.ComputeUnit.CPU_ONLY)

    def __call__(self, **named: np.ndarray) -> dict[str, np.ndarray]:
        feeds: dict[str, Any] = {}
        for canonical, declared in zip(self.spec["inputs"], self.file["inputs"], strict=True):
            value = np.asarray(named[canonical["name"]], NP_DTYPES[declared["dtype"]])
            feeds[declared["name"]] = value.reshape(declared["shape"])
        for constant in self.file.get("constants", []):
            feeds[constant["name"]] = np.array(constant["value"], NP_DTYPES[constant["dtype"]])
        names = [t["name"] for t in self.file["outputs"]]
        if self.backend == "onnx":
            values = self.session.run(names, feeds)
        else:
            result = self.model.predict(feeds)
            values = [result[n] for n in names]
        canonical_names = [t["name"] for t in self.spec["outputs"]]
        return {n: np.asarray(v, np.float32) for n, v in zip(canonical_names, values, strict=True)}


def speak_chunk(ps: str, tts: dict[str, Any], stages: dict[str, dict[int, Stage]],
                pack: np.ndarray, speed: float, seed: int) -> np.ndarray:  # fmt: skip
    ids = [tts["vocab"][c] for c in ps if c in tts["vocab"]]
    style = pack[min(max(len(ids) - 1, 0), pack.shape[0] - 1)][None]  # upstream's row
    n = min(b for b in stages["text"] if b >= len(ids) + 2)
    input_ids = np.zeros((1, n), np.int32)
    input_ids[0, 1 : len(ids) + 1] = ids
    out = stages["text"][n](
        input_ids=input_ids, input_length=np.array([len(ids) + 2], np.int32), style=style,
        speed=np.array([speed], np.float32),
    )  # fmt: skip
    frames = np.maximum(np.round(out["durations"][0, : len(ids) + 2]), 1).astype(np.int64)
    total = int(frames.sum())
    fb = min((b for b in stages["acoustic"] if b >= total), default=None)
    if fb is None:
        sys.exit(f"{total} frames exceed the largest bucket: use `speechport speak`")
    token = np.repeat(np.arange(frames.size), frames)
    prosody = np.zeros((1, out["prosody"].shape[2], fb), np.float32)
    prosody[0, :, :total] = out["prosody"][0, token].T
    text = np.zeros((1, out["text_features"].shape[1], fb), np.float32)
    text[0, :, :total] = out["text_features"][0][:, token]
    rng, spf, h = np.random.default_rng(seed), tts["samples_per_frame"], tts["harmonics"]
    random: dict[str, np.ndarray] = {}
    for name in tts["noise_inputs"]:
        if name == "noise":
            random[name] = np.zeros((1, spf * fb, h), np.float32)
            random[name][:, : spf * total] = rng.standard_normal((1, spf * total, h), np.float32)
        else:  # "phase": the harmonics' initial phase
            random[name] = rng.random((1, h), np.float32)
            random[name][:, 0] = 0
    audio = stages["acoustic"][fb](
        prosody_aligned=prosody, text_aligned=text, frames=np.array([total], np.int32),
        style=style, **random,
    )["audio"]  # fmt: skip
    return audio.reshape(-1)[: spf * total]


def main() -> None:
    parser = argparse.ArgumentParser(description="Speak with this bundle.")
    parser.add_argument("text")
    parser.add_argument("--out", required=True)
    parser.add_argument("--voice")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phonemes", action="store_true")
    parser.add_argument("--backend", choices=["onnx", "coreml"], default=DEFAULT_BACKEND)
    args = parser.parse_args()
    manifest = json.loads((HERE / "speechport.json").read_text("utf-8"))
    tts = manifest["tts"]
    voice = args.voice or tts["default_voice"]
    if voice not in tts["voices"]:
        sys.exit(f"unknown voice {voice!r}; this bundle has {', '.join(tts['voices'])}")
    pack = np.load(HERE / tts["voices"][voice]).astype(np.float32)
    pack = pack.reshape(pack.shape[0], -1)
    stages: dict[str, dict[int, Stage]] = {"text": {}, "acoustic": {}}
    for spec in manifest["components"].values():
        if spec["kind"] == "tts_text":
            stages["text"][spec["inputs"][0]["shape"][1]] = Stage(spec, args.backend)
        elif spec["kind"] == "tts_acoustic":
            stages["acoustic"][spec["inputs"][0]["shape"][2]] = Stage(spec, args.backend)
    ps = args.text if args.phonemes else phonemize(args.text)
    sentences = [s for s in re.split(r"(?<=[.!?…])\s+", ps) if s.strip()]
    pause = np.zeros(int(0.2 * tts["sample_rate"]), np.float32)
    parts = []
    for i, sentence in enumerate(sentences):
        seed = args.seed if i == 0 else [args.seed, i]
        parts += [speak_chunk(sentence, tts, stages, pack, args.speed, seed), pause]  # type: ignore[arg-type]
    audio = np.concatenate(parts[:-1]) if parts else np.zeros(0, np.float32)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(args.out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(tts["sample_rate"])
        wav.writeframes(pcm.tobytes())
    print(f"{args.out}: {audio.size / tts['sample_rate']:.2f} s, voice {voice}")


if __name__ == "__main__":
    main()
