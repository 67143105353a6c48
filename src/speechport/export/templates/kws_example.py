#!/usr/bin/env python3
"""Run this keyword-spotting bundle's streaming transducer on a WAV file, without speechport.

Needs numpy and one engine: onnxruntime (``--backend onnx``) or coremltools on macOS
(``--backend coreml``). It computes the Kaldi fbank the manifest describes, runs the
streaming encoder chunk by chunk carrying every cache (the manifest's state pairs), and
prints the tokens a greedy search hears, with their times. Keyword search (boosted,
thresholded, open vocabulary) is ``speechport spot BUNDLE AUDIO --keywords ...``.

    python example_infer.py audio.wav [--backend coreml|onnx]

The WAV must be 16-bit PCM at the bundle's sample rate (mono, or stereo that is averaged).
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_BACKEND = "onnx"
HERE = Path(__file__).resolve().parent
NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "int64": np.int64}


def read_wav(path: str, sample_rate: int) -> np.ndarray:
    with wave.open(path, "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getframerate() != sample_rate:
            sys.exit(f"{path}: need 16-bit PCM at {sample_rate} Hz (convert with ffmpeg)")
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        channels = wav.getnchannels()
    samples: np.ndarray = data.reshape(-1, channels).astype(np.float32).mean(axis=1) / 32768.0
    return samples.astype(np.float32)


def fbank(samples: np.ndarray, fe: dict[str, Any]) -> np.ndarray:
    """Kaldi fbank of a whole signal, snip_edges false (frames mirrored at both ends)."""
    rate = fe["sample_rate"]
    length = int(rate * 0.001 * fe["frame_length_ms"])
    shift = int(rate * 0.001 * fe["frame_shift_ms"])
    padded = 1 << (length - 1).bit_length()
    n = len(samples)
    frames = (n + shift // 2) // shift
    idx = np.arange(frames)[:, None] * shift + shift // 2 - length // 2 + np.arange(length)
    while (idx < 0).any() or (idx >= n).any():
        idx = np.where(idx < 0, -idx - 1, np.where(idx >= n, 2 * n - 1 - idx, idx))
    w = samples[idx].astype(np.float64)
    w -= w.mean(axis=1, keepdims=True)
    w[:, 1:] -= fe["preemphasis"] * w[:, :-1].copy()
    w[:, 0] -= fe["preemphasis"] * w[:, 0]
    i = np.arange(length)
    w *= (0.5 - 0.5 * np.cos(2 * np.pi * i / (length - 1))) ** 0.85  # povey
    power = np.abs(np.fft.rfft(w, n=padded, axis=1)[:, : padded // 2]) ** 2

    def mel(f: Any) -> Any:
        return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)

    high = fe["high_freq"] if fe["high_freq"] > 0 else rate / 2 + fe["high_freq"]
    lo, hi = mel(fe["low_freq"]), mel(high)
    delta = (hi - lo) / (fe["num_bins"] + 1)
    m = mel(np.arange(padded // 2) * rate / padded)
    banks = np.zeros((fe["num_bins"], padded // 2))
    for b in range(fe["num_bins"]):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        up, down = (m - left) / (center - left), (right - m) / (right - center)
        banks[b] = np.where((m > left) & (m < right), np.where(m <= center, up, down), 0.0)
    logged: np.ndarray = np.log(np.maximum(power @ banks.T, np.finfo(np.float32).eps))
    return logged.astype(np.float32)


class Component:
    def __init__(self, spec: dict[str, Any], backend: str) -> None:
        if backend not in spec["files"]:
            sys.exit(
                f"this bundle has no {backend} files; try --backend {next(iter(spec['files']))}"
            )
        self.file = spec["files"][backend]
        self.canonical = spec["inputs"]
        self.backend = backend
        if backend == "onnx":
            import onnxruntime as ort

            self.session = ort.InferenceSession(
                str(HERE / self.file["path"]), providers=["CPUExecutionProvider"]
            )
        else:
            import coremltools as ct

            self.model = ct.models.MLModel(str(HERE / self.file["path"]))

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        feeds = {
            t["name"]: np.asarray(x, dtype=NP_DTYPES[t["dtype"]]).reshape(t["shape"])
            for t, x in zip(self.file["inputs"], inputs, strict=False)
        }
        names = [t["name"] for t in self.file["outputs"]]
        if self.backend == "onnx":
            return list(self.session.run(names, feeds))
        out = self.model.predict(feeds)
        return [np.asarray(out[n]) for n in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=("coreml", "onnx"))
    args = parser.parse_args()
    manifest = json.loads((HERE / "speechport.json").read_text(encoding="utf-8"))
    kws = manifest["extras"]["kws"]
    pieces = json.loads((HERE / manifest["tokenizer"]["tokens_file"]).read_text(encoding="utf-8"))
    comps = manifest["components"]
    encoder = Component(comps["encoder"], args.backend)
    decoder = Component(comps["decoder"], args.backend)
    joiner = Component(comps["joiner"], args.backend)
    spec = comps["encoder"]
    inputs = {t["name"]: t for t in spec["inputs"]}
    outputs = [t["name"] for t in spec["outputs"]]
    states = [
        np.zeros(inputs[p["input"]]["shape"], NP_DTYPES[inputs[p["input"]]["dtype"]])
        for p in spec["state"]
    ]
    index = [outputs.index(p["output"]) for p in spec["state"]]
    samples = read_wav(args.audio, manifest["sample_rate"])
    tail = np.zeros(int(kws["tail_padding_seconds"] * manifest["sample_rate"]), np.float32)
    feats = fbank(np.concatenate([samples, tail]), manifest["frontend"])
    context = [-1] * (kws["context_size"] - 1) + [kws["blank_id"]]
    dec = decoder(np.array([context[-kws["context_size"] :]]))[0]
    frame, start = 0, 0
    while start + kws["chunk_frames"] < len(feats):
        out = encoder(feats[None, start : start + kws["chunk_frames"]], *states)
        states = [out[i] for i in index]
        for enc in out[0].reshape(-1, out[0].shape[-1]):
            token = int(joiner(enc[None], dec)[0].argmax())
            if token not in (kws["blank_id"], kws["unk_id"]):
                print(f"{frame * kws['frame_duration']:7.2f}s  {pieces[token]}")
                context.append(token)
                dec = decoder(np.array([context[-kws["context_size"] :]]))[0]
            frame += 1
        start += kws["chunk_shift"]


if __name__ == "__main__":
    main()
