#!/usr/bin/env python3
"""Find speech in a WAV file with this voice-activity bundle, without speechport.

Needs numpy and one engine: onnxruntime (``--backend onnx``) or coremltools on macOS
(``--backend coreml``). The chunk, context and state layout come from ``speechport.json``.

    python example_infer.py audio.wav [--backend coreml|onnx] [--threshold 0.5]

The WAV must be 16-bit PCM at the bundle's sample rate (mono, or stereo that is averaged).
Segments follow Silero's get_speech_timestamps rules (without a maximum segment length).
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


class Component:
    """The ``vad`` component, called with (window, state); returns (probability, state)."""

    def __init__(self, spec: dict[str, Any], backend: str) -> None:
        self.spec = spec
        if backend not in spec["files"]:
            sys.exit(
                f"this bundle has no {backend} files; try --backend {next(iter(spec['files']))}"
            )
        self.file = spec["files"][backend]
        self.backend = backend
        if backend == "onnx":
            import onnxruntime as ort

            self.session = ort.InferenceSession(
                str(HERE / self.file["path"]), providers=["CPUExecutionProvider"]
            )
        else:
            import coremltools as ct

            self.model = ct.models.MLModel(
                str(HERE / self.file["path"]), compute_units=ct.ComputeUnit.CPU_AND_NE
            )

    def __call__(self, window: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        ins = self.file["inputs"]
        feeds: dict[str, Any] = {
            ins[0]["name"]: window.reshape(ins[0]["shape"]).astype(np.float32),
            ins[1]["name"]: state.astype(np.float32),
        }
        for constant in self.file.get("constants", []):
            feeds[constant["name"]] = np.array(constant["value"], NP_DTYPES[constant["dtype"]])
        outs = [t["name"] for t in self.file["outputs"]]
        if self.backend == "onnx":
            prob, new_state = self.session.run(outs, feeds)
        else:
            result = self.model.predict(feeds)
            prob, new_state = result[outs[0]], result[outs[1]]
        return float(np.asarray(prob).reshape(-1)[0]), np.asarray(new_state, dtype=np.float32)


def probabilities(vad: Component, samples: np.ndarray, chunk: int, context: int) -> list[float]:
    state = np.zeros(vad.spec["inputs"][1]["shape"], dtype=np.float32)
    padded = np.concatenate(
        [np.zeros(context, np.float32), samples, np.zeros(-samples.size % chunk, np.float32)]
    )
    probs = []
    for start in range(0, padded.size - context, chunk):
        prob, state = vad(padded[start : start + context + chunk], state)
        probs.append(prob)
    return probs


def segments(
    probs: list[float],
    n: int,
    chunk: int,
    sr: int,
    threshold: float,
    min_speech_ms: float,
    min_silence_ms: float,
    pad_ms: float,
) -> list[list[int]]:
    exit_threshold = max(threshold - 0.15, 0.01)
    min_speech, min_silence = sr * min_speech_ms / 1000, sr * min_silence_ms / 1000
    pad = sr * pad_ms / 1000
    found: list[list[int]] = []
    start, temp_end = None, 0
    for i, p in enumerate(probs):
        sample = i * chunk
        if p >= threshold and temp_end:
            temp_end = 0
        if p >= threshold and start is None:
            start = sample
            continue
        if p < exit_threshold and start is not None:
            temp_end = temp_end or sample
            if sample - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                found.append([start, temp_end])
            start, temp_end = None, 0
    if start is not None and n - start > min_speech:
        found.append([start, n])
    for i, seg in enumerate(found):  # padding, shared between close neighbours
        if i == 0:
            seg[0] = int(max(0, seg[0] - pad))
        if i + 1 < len(found):
            gap = found[i + 1][0] - seg[1]
            share = gap // 2 if gap < 2 * pad else pad
            seg[1] = int(min(n, seg[1] + share))
            found[i + 1][0] = int(max(0, found[i + 1][0] - share))
        else:
            seg[1] = int(min(n, seg[1] + pad))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description="Find speech in a WAV file with this bundle.")
    parser.add_argument("audio")
    parser.add_argument("--backend", choices=["onnx", "coreml"], default=DEFAULT_BACKEND)
    parser.add_argument("--threshold", type=float)
    args = parser.parse_args()
    manifest = json.loads((HERE / "speechport.json").read_text("utf-8"))
    vad_spec, sr = manifest["vad"], manifest["sample_rate"]
    defaults = vad_spec["defaults"]
    vad = Component(manifest["components"]["vad"], args.backend)
    samples = read_wav(args.audio, sr)
    chunk, context = vad_spec["chunk_samples"], vad_spec["context_samples"]
    probs = probabilities(vad, samples, chunk, context)
    threshold = args.threshold if args.threshold is not None else defaults["threshold"]
    for start, end in segments(
        probs,
        samples.size,
        chunk,
        sr,
        threshold,
        defaults["min_speech_ms"],
        defaults["min_silence_ms"],
        defaults["speech_pad_ms"],
    ):
        print(f"{start / sr:8.3f} {end / sr:8.3f}")


if __name__ == "__main__":
    main()
