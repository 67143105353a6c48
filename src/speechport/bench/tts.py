"""Full-size Kokoro-82M (random weights): conversion time and memory, package sizes, and
per-bucket latency and RTFx of its stages under ONNX Runtime.

A benchmark, not a test: it builds the 82 M-parameter model, exports every bucket and runs
each stage a few times with a full bucket (the worst case). Random weights make the audio
noise; the shapes and the work are the real ones.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from speechport.bench.convert_parakeet import peak_rss_mb
from speechport.families.kokoro.config import SAMPLE_RATE, VOICE_ROWS, KokoroConfig
from speechport.progress import Progress


def bench_tts(
    *,
    formats: tuple[str, ...] = ("onnx",),
    token_buckets: tuple[int, ...] = (128, 512),
    frame_buckets: tuple[int, ...] = (200, 600),
    runs: int = 3,
    threads: int | None = None,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Seconds and peak memory per step, file sizes, and the median latency of each stage
    (RTFx of the acoustic stages: seconds of audio per second of compute)."""
    from speechport.export.coreml import export_coreml
    from speechport.export.onnx import export_onnx
    from speechport.families.base import LoadedCheckpoint
    from speechport.families.kokoro import random_kokoro
    from speechport.families.kokoro.bundle import plan_bundle
    from speechport.fsutil import path_size

    progress = progress or Progress(0)
    steps: list[dict[str, Any]] = []
    progress.start("build Kokoro-82M (random weights)")
    start = time.perf_counter()
    config = KokoroConfig(vocab={chr(0x61 + i): i + 1 for i in range(26)})
    model = random_kokoro(config)
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(prefix="bench-tts-") as scratch:
        root = Path(work_dir) if work_dir else Path(scratch)
        voices = root / "voices"
        voices.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        pack = (0.3 * rng.standard_normal((VOICE_ROWS, config.voice_dim))).astype(np.float32)
        np.save(voices / "random.npy", pack)
        loaded = LoadedCheckpoint(
            "kokoro", "kokoro-82m-random", model, config, Path("random-weights"), None, "-"
        )
        plan = plan_bundle(
            loaded, voices=voices, token_buckets=token_buckets, frame_buckets=frame_buckets
        )
        steps.append(_step("build + plan", start))
        files: dict[str, Path] = {}
        for comp in plan.components:
            for fmt in formats:
                if fmt not in comp.formats:
                    continue
                progress.start(f"{comp.name} -> {fmt}")
                start = time.perf_counter()
                if fmt == "onnx":
                    path = root / comp.onnx.file_name
                    export_onnx(comp, path)
                else:
                    path = root / f"{comp.name}.mlpackage"
                    export_coreml(comp, path, precision=comp.coreml_precision or "fp16")
                files[f"{comp.spec.role}.{fmt}"] = path
                steps.append(
                    {
                        **_step(f"{comp.name} -> {fmt}", start),
                        "mb": round(path_size(path) / 2**20, 1),
                    }
                )
        latency: list[dict[str, Any]] = []
        if "onnx" in formats:
            latency = _onnx_latency(plan, files, config, pack, runs, threads, progress)
    return {
        "model": "Kokoro-82M architecture, random weights",
        "parameters": params,
        "sample_rate": SAMPLE_RATE,
        "steps": steps,
        "latency": latency,
        "peak_rss_mb": round(peak_rss_mb()),
    }


def _step(name: str, start: float) -> dict[str, Any]:
    return {
        "step": name,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def _onnx_latency(
    plan: Any,
    files: dict[str, Path],
    config: KokoroConfig,
    pack: np.ndarray,
    runs: int,
    threads: int | None,
    progress: Progress,
) -> list[dict[str, Any]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    rng = np.random.default_rng(1)
    spf = config.samples_per_frame
    out = []
    for comp in plan.components:
        path = files.get(f"{comp.spec.role}.onnx")
        if path is None:
            continue
        progress.start(f"time {comp.name} (ONNX Runtime)")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = _full_bucket_feeds(comp.spec.kind, comp.spec.inputs, config, pack, rng)
        session.run(None, feeds)  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - start)
        median = float(np.median(times))
        row: dict[str, Any] = {"stage": comp.name, "ms": round(1000 * median, 1)}
        if comp.spec.kind == "tts_acoustic":
            frames = comp.spec.inputs[0].shape[-1]
            audio_s = frames * spf / SAMPLE_RATE
            row.update(audio_s=audio_s, rtfx=round(audio_s / median, 1))
        out.append(row)
    return out


def _full_bucket_feeds(
    kind: str, inputs: Any, config: Any, pack: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Inputs that fill the whole bucket (the longest text or audio it takes)."""
    feeds: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name == "input_ids":
            ids = rng.integers(1, config.n_token, spec.shape).astype(np.int32)
            ids[0, 0] = ids[0, -1] = 0
            feeds[spec.name] = ids
        elif spec.name == "input_length":
            feeds[spec.name] = np.array([inputs[0].shape[1]], np.int32)
        elif spec.name == "frames":
            feeds[spec.name] = np.array([inputs[0].shape[-1]], np.int32)
        elif spec.name == "style":
            feeds[spec.name] = pack[100:101]
        elif spec.name == "speed":
            feeds[spec.name] = np.ones(1, np.float32)
        else:
            feeds[spec.name] = rng.standard_normal(spec.shape).astype(np.float32)
    return feeds


def table(result: dict[str, Any]) -> list[str]:
    lines = [f"{result['model']}: {result['parameters'] / 1e6:.1f} M parameters"]
    for step in result["steps"]:
        size = f", {step['mb']} MB" if "mb" in step else ""
        lines.append(f"  {step['step']}: {step['seconds']} s (peak {step['peak_rss_mb']} MB){size}")
    for row in result["latency"]:
        extra = f", {row['audio_s']:g} s of audio, RTFx {row['rtfx']}" if "rtfx" in row else ""
        lines.append(f"  {row['stage']} (ONNX Runtime, full bucket): {row['ms']} ms{extra}")
    lines.append(f"  peak memory: {result['peak_rss_mb']} MB")
    return lines


__all__ = ["bench_tts", "table"]
