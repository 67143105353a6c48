"""The decode-loop benchmark: figures measured side by side in one run (not timed tests)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechport.progress import Progress
from speechport.runtime.base import Component, dynamic_inputs


@dataclass
class _Timer:
    calls: int = 0
    seconds: float = 0.0


class _Timed:
    """A component wrapper that counts calls and the time spent in them."""

    def __init__(self, component: Component, timer: _Timer) -> None:
        self.spec = component.spec
        self.dynamic_inputs = dynamic_inputs(component)
        self._component = component
        self._timer = timer

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        start = time.perf_counter()
        out = self._component(*inputs)
        self._timer.seconds += time.perf_counter() - start
        self._timer.calls += 1
        return out


def synthetic_speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Speech-like test audio without a model or a file: voiced bursts (a harmonic series
    with a wandering pitch) of 0.3-2 s separated by 0.1-0.6 s pauses with faint noise."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sample_rate), dtype=np.float32)
    position = 0
    while position < out.size:
        position += int(rng.uniform(0.1, 0.6) * sample_rate)
        length = int(rng.uniform(0.3, 2.0) * sample_rate)
        end = min(position + length, out.size)
        n = end - position
        if n <= 0:
            break
        t = np.arange(n) / sample_rate
        pitch = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
        envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5
        out[position:end] = (0.2 * voiced * envelope).astype(np.float32)
        position = end
    out += (rng.standard_normal(out.size) * 1e-3).astype(np.float32)
    return out


def bench_decode_loop(
    variant: str = "v3_e2e_rnnt",
    *,
    seconds: float = 60.0,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Full-size GigaAM v3 with random weights, exported to ONNX, transcribing ``seconds`` of
    synthetic speech: decode-loop steps per second and the share of wall time outside the
    encoder (front end, decoder and joint steps, host loop)."""
    from speechport.bench.random_models import random_gigaam
    from speechport.families.gigaam.bundle import plan_bundle
    from speechport.pipelines.transcriber import Transcriber
    from speechport.runtime import load_bundle

    progress = progress or Progress(4)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(work_dir) if work_dir else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        bundle = root / f"bench-{variant}"
        if not (bundle / "speechport.json").is_file():
            progress.start(f"build full-size {variant} (random weights) and export to ONNX")
            loaded = random_gigaam(variant)
            if loaded.config.vocabulary is None:
                tokenizer = _bench_tokenizer(root, loaded.config.num_classes - 1)
                loaded = dataclasses.replace(loaded, tokenizer_path=tokenizer)
            from speechport.export.bundle import write_bundle

            write_bundle(
                plan_bundle(loaded, window_seconds=30.0),
                loaded,
                bundle,
                formats=["onnx"],
                overwrite=True,
            )
        else:
            progress.start(f"reuse {bundle}")
        progress.start("load with onnxruntime")
        loaded_bundle = load_bundle(bundle, "onnx")
        timers = {c.spec.kind: _Timer() for c in loaded_bundle.components.values()}
        loaded_bundle.components = {
            role: _Timed(c, timers[c.spec.kind]) for role, c in loaded_bundle.components.items()
        }
        transcriber = Transcriber(loaded_bundle)
        audio = synthetic_speech(seconds)
        progress.start(f"warm-up (one {min(seconds, 5.0):g} s window)")
        transcriber.transcribe(audio[: int(5.0 * transcriber.sample_rate)])
        for timer in timers.values():
            timer.calls, timer.seconds = 0, 0.0
        progress.start(f"transcribe {seconds:g} s")
        start = time.perf_counter()
        transcript = transcriber.transcribe(audio)
        wall = time.perf_counter() - start
        progress.finish()
    enc = timers["encoder"]
    steps = timers["joint"].calls if "joint" in timers else 0
    loop_seconds = sum(t.seconds for kind, t in timers.items() if kind != "encoder")
    return {
        "variant": variant,
        "engine": loaded_bundle.engine,
        "audio_seconds": seconds,
        "windows": len(transcript.segments),
        "wall_seconds": round(wall, 3),
        "rtfx": round(seconds / wall, 2),
        "encoder_seconds": round(enc.seconds, 3),
        "encoder_seconds_per_window": round(enc.seconds / max(enc.calls, 1), 3),
        "share_outside_encoder": round(1.0 - enc.seconds / wall, 4),
        "decode_steps": steps,
        "decoder_calls": timers["decoder_step"].calls if "decoder_step" in timers else 0,
        "emitted_tokens": len(transcript.token_ids),
        "decode_steps_per_second": round(steps / max(wall - enc.seconds, 1e-9), 1),
        "component_seconds_in_loop": round(loop_seconds, 3),
        "us_per_step_in_components": round(1e6 * loop_seconds / max(steps, 1), 1),
    }


def _bench_tokenizer(root: Path, pieces: int) -> Path:
    """A SentencePiece model with ``pieces`` pieces, trained on generated text (the bench
    needs a tokenizer of the real size, not a real tokenizer)."""
    import sentencepiece as spm

    path = root / "bench_tokenizer"
    rng = np.random.default_rng(0)
    letters = [chr(c) for c in range(ord("а"), ord("я") + 1)]
    sentences = [
        " ".join("".join(rng.choice(letters, size=int(rng.integers(2, 9)))) for _ in range(12))
        for _ in range(4000)
    ]
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(sentences),
        model_prefix=str(path),
        vocab_size=pieces,
        model_type="unigram",
        byte_fallback=True,
        minloglevel=2,
        hard_vocab_limit=True,
    )
    return path.with_suffix(".model")
