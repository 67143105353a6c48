#!/usr/bin/env python3
"""Transcribe a WAV file chunk by chunk with this streaming bundle, without speechport.

Needs numpy and one engine: onnxruntime (``--backend onnx``) or coremltools on macOS
(``--backend coreml``). Everything else is read from ``speechport.json`` beside this script:
the front end, the chunk schedule, the encoder's caches (state pairs), the decoding rule, the
tokens.

    python example_infer.py audio.wav [--backend coreml|onnx] [--lookahead L]

The WAV must be 16-bit PCM at the bundle's sample rate (mono, or stereo that is averaged),
e.g. ``ffmpeg -i in.mp3 -ac 1 -ar 16000 -c:a pcm_s16le audio.wav``. The features are computed
for the whole file here for brevity; ``speechport stream`` computes them as audio arrives.
"""

from __future__ import annotations

import argparse
import json
import math
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


# ---------------------------------------------------------------- front end (log-mel)


def mel_filterbank(fe: dict[str, Any]) -> np.ndarray:
    """[n_freqs, n_mels] triangular filters (HTK or Slaney scale)."""
    sr, n_fft, n_mels = fe["sample_rate"], fe["n_fft"], fe["n_mels"]
    f_max = fe["f_max"] if fe["f_max"] is not None else sr / 2
    if fe["mel_scale"] == "htk":

        def to_mel(hz: np.ndarray) -> np.ndarray:
            return 2595.0 * np.log10(1.0 + hz / 700.0)

        def to_hz(mel: np.ndarray) -> np.ndarray:
            return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

        freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    else:
        step, start_hz, log_step = 200.0 / 3.0, 1000.0, math.log(6.4) / 27.0
        start_mel = start_hz / step

        def to_mel(hz: np.ndarray) -> np.ndarray:
            hz = np.asarray(hz, dtype=np.float64)
            safe = np.maximum(hz, start_hz)
            log_part = start_mel + np.log(safe / start_hz) / log_step
            return np.where(hz < start_hz, hz / step, log_part)

        def to_hz(mel: np.ndarray) -> np.ndarray:
            return np.where(
                mel < start_mel, mel * step, start_hz * np.exp(log_step * (mel - start_mel))
            )

        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = to_mel(np.array([fe["f_min"], f_max], dtype=np.float64))
    points = to_hz(np.linspace(edges[0], edges[1], n_mels + 2))
    slopes = points[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / np.diff(points)[:-1]
    up = slopes[:, 2:] / np.diff(points)[1:]
    bank = np.maximum(0.0, np.minimum(down, up))
    if fe["mel_norm"] == "slaney":
        bank *= 2.0 / (points[2:] - points[:-2])
    return bank


def log_mel(samples: np.ndarray, fe: dict[str, Any]) -> tuple[np.ndarray, int]:
    """Features [n_mels, frames] and the number of valid frames, as the manifest specifies."""
    x = samples.astype(np.float64)
    if fe["preemphasis"]:
        x = np.concatenate([x[:1], x[1:] - fe["preemphasis"] * x[:-1]])
    n_fft, hop, win = fe["n_fft"], fe["hop_length"], fe["win_length"]
    if fe["center"]:
        if fe["pad_mode"] == "reflect":
            x = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
        else:
            x = np.pad(x, (n_fft // 2, n_fft // 2))
    n_frames = max(0, (x.size - n_fft) // hop + 1)
    if n_frames == 0:  # shorter than one frame
        return np.zeros((fe["n_mels"], 0), dtype=np.float32), 0
    denominator = win if fe["periodic_window"] else win - 1
    phase = 2 * np.pi * np.arange(win) / denominator
    core = 0.5 - 0.5 * np.cos(phase) if fe["window"] == "hann" else 0.54 - 0.46 * np.cos(phase)
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = core
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:n_frames]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** fe["power"]
    mel = power @ mel_filterbank(fe)
    if fe["log"] == "add":
        feats = np.log(mel + fe["log_guard"])
    else:
        feats = np.log(np.clip(mel, fe["log_floor"], fe["log_ceil"] or np.inf))
    feats = feats.T
    valid = n_frames - 1 if fe["drop_last_frame"] and n_frames else n_frames
    if fe["normalize"] == "per_feature" and valid:
        mean = feats[:, :valid].mean(axis=1, keepdims=True)
        std = feats[:, :valid].std(axis=1, ddof=1 if valid > 1 else 0, keepdims=True)
        feats = (feats - mean) / (std + fe["normalize_eps"])
    if fe["pad_value"] is not None:
        feats[:, valid:] = fe["pad_value"]
    return feats.astype(np.float32), valid


# ---------------------------------------------------------------- components


class Component:
    """A component called with its canonical inputs; returns its canonical outputs."""

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
                str(HERE / self.file["path"]), compute_units=ct.ComputeUnit.CPU_AND_GPU
            )

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        feeds = {
            t["name"]: np.asarray(x, dtype=NP_DTYPES[t["dtype"]]).reshape(t["shape"])
            for t, x in zip(self.file["inputs"], inputs, strict=True)
        }
        for constant in self.file.get("constants", []):  # inputs always fed the same value
            feeds[constant["name"]] = np.array(
                constant["value"], dtype=NP_DTYPES[constant["dtype"]]
            )
        names = [t["name"] for t in self.file["outputs"]]
        if self.backend == "onnx":
            outputs = self.session.run(names, feeds)
        else:
            result = self.model.predict(feeds)
            outputs = [result[n] for n in names]
        return [
            np.asarray(y, dtype=NP_DTYPES[t["dtype"]]).reshape(t["shape"])
            for t, y in zip(self.spec["outputs"], outputs, strict=True)
        ]


# ---------------------------------------------------------------- streaming


def transcribe(manifest: dict[str, Any], backend: str, samples: np.ndarray, lookahead: Any) -> str:
    streaming, dec = manifest["streaming"], manifest["decoding"]
    chunkings = streaming["chunkings"]
    chunking = chunkings[0]
    if lookahead is not None:
        chunking = next((c for c in chunkings if c["lookahead"] == lookahead), None)
        if chunking is None:
            sys.exit(f"no lookahead {lookahead}: {[c['lookahead'] for c in chunkings]}")
    specs = manifest["components"]
    encoder = Component(specs[chunking["encoder"]], backend)
    kinds = {spec["kind"]: spec for spec in specs.values()}
    decoder = Component(kinds["decoder_step"], backend)
    joint = Component(kinds["joint"], backend)
    feats, total = log_mel(samples, manifest["frontend"])
    inputs = {t["name"]: t for t in encoder.spec["inputs"]}
    state = {
        p["input"]: np.zeros(inputs[p["input"]]["shape"], NP_DTYPES[inputs[p["input"]]["dtype"]])
        for p in encoder.spec["state"]
    }
    if "prompt" in inputs:  # a multilingual model: the default language's one-hot
        prompt = np.zeros(inputs["prompt"]["shape"], dtype=np.float32)
        prompts = streaming["prompts"]
        prompt[0, prompts.get("en-US", next(iter(prompts.values())))] = 1.0
        state["prompt"] = prompt
    dshapes = {t["name"]: t["shape"] for t in decoder.spec["inputs"]}
    dstate = [np.zeros(dshapes[p["input"]], dtype=np.float32) for p in decoder.spec["state"]]
    blank, ids = dec["blank_id"], []
    token, dec_out = blank, None
    width, pos = chunking["window_frames"], 0
    while pos < total or pos == 0:
        end = min(pos + (chunking["first_frames"] if pos == 0 else chunking["step_frames"]), total)
        if pos == 0:
            start, lead = 0, width - chunking["first_frames"]
        else:
            start = max(pos - chunking["history_frames"], 0)
            lead = chunking["history_frames"] - (pos - start)
        window = np.zeros((1, feats.shape[0], width), dtype=np.float32)
        window[0, :, lead : lead + end - start] = feats[:, start:end]
        feed = {"mel": window, "start": np.array([lead]), "length": np.array([lead + end - start])}
        feed.update(state)
        outputs = encoder(*(feed[t["name"]] for t in encoder.spec["inputs"]))
        named = {t["name"]: y for t, y in zip(encoder.spec["outputs"], outputs, strict=True)}
        for pair in encoder.spec["state"]:
            state[pair["input"]] = named[pair["output"]]
        frames = outputs[0][0].T[: int(outputs[1].reshape(-1)[0])]
        for enc_t in frames:  # greedy RNN-T, the decoder state carried across chunks
            for _ in range(dec["max_symbols_per_frame"]):
                if dec_out is None:
                    dec_out, *new_state = decoder(np.array([[token]]), *dstate)
                k = int(joint(enc_t[None], dec_out)[0][0].argmax())
                if k == blank:
                    break
                ids.append(k)
                token, dstate, dec_out = k, new_state, None
        pos = end
        if end == 0:
            break
    return detokenize(manifest, ids)


def detokenize(manifest: dict[str, Any], ids: list[int]) -> str:
    tokens = json.loads((HERE / manifest["tokenizer"]["tokens_file"]).read_text("utf-8"))
    out = bytearray()
    for piece in (tokens[i] for i in ids):
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out.append(int(piece[3:5], 16))  # SentencePiece byte fallback
        else:
            out += piece.replace(manifest["tokenizer"]["word_boundary"], " ").encode("utf-8")
    return out.decode("utf-8", errors="replace").strip()


def main() -> None:
    parser = argparse.ArgumentParser(description="Transcribe a WAV file with this bundle.")
    parser.add_argument("audio")
    parser.add_argument("--backend", choices=["onnx", "coreml"], default=DEFAULT_BACKEND)
    parser.add_argument("--lookahead", type=int)
    args = parser.parse_args()
    manifest = json.loads((HERE / "speechport.json").read_text("utf-8"))
    samples = read_wav(args.audio, manifest["sample_rate"])
    print(transcribe(manifest, args.backend, samples, args.lookahead))


if __name__ == "__main__":
    main()
