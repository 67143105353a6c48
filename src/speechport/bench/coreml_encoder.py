"""Benchmark of the MIL interpreter on the full-size GigaAM v3 encoder (random weights).

Converts the encoder (30 s window, with its default shape buckets) to a Core ML package and
runs it with speechport's interpreter in a fresh process, so that the peak resident memory
reported is the interpreter's own (program, weights, activations), not the converter's.
Each shorter bucket is timed too: what a clip that fits it costs instead of the window.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from speechport.progress import Progress


def bench_coreml_encoder(
    variant: str = "v3_rnnt",
    *,
    precisions: tuple[str, ...] = ("fp16", "fp32"),
    window_seconds: float = 30.0,
    runs: int = 2,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """For each precision: conversion time, package size, interpreter load time, time per
    window (best of ``runs``), real-time factor, peak RSS of the interpreter process, and the
    time per shorter shape bucket (seconds of audio -> best of ``runs``)."""

    from speechport.bench.random_models import random_gigaam
    from speechport.export.coreml import export_coreml
    from speechport.families.encoder_buckets import bucket_seconds
    from speechport.families.gigaam.bundle import plan_bundle
    from speechport.fsutil import path_size

    progress = progress or Progress(1 + 2 * len(precisions))
    results: dict[str, Any] = {"variant": variant, "window_seconds": window_seconds}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(work_dir) if work_dir else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        progress.start(f"build full-size {variant} (random weights)")
        loaded = random_gigaam(variant)
        encoder = plan_bundle(loaded, window_seconds=window_seconds).component("encoder")
        params = sum(p.numel() for p in encoder.module.parameters())
        results["encoder_parameters"] = int(params)
        sizes = encoder.coreml_buckets.sizes if encoder.coreml_buckets else ()
        # the shorter buckets: (seconds, feature frames); the last is the window's
        seconds = bucket_seconds(None, window_seconds) if sizes else ()
        buckets = list(zip(seconds, sizes, strict=True))[:-1]
        for precision in precisions:
            package = root / f"Encoder-{precision}.mlpackage"
            progress.start(f"convert the encoder to Core ML ({precision})")
            start = time.perf_counter()
            export_coreml(encoder, package, precision=precision)
            convert_s = time.perf_counter() - start
            progress.start(f"run it with the MIL interpreter ({precision}, {runs} windows)")
            inputs = [(t.name, list(t.shape), t.dtype) for t in encoder.spec.inputs]
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                run = pool.submit(_interpret, str(package), inputs, runs, buckets).result()
            results[precision] = {
                "convert_seconds": round(convert_s, 2),
                "package_mb": round(path_size(package) / 1e6, 1),
                **run,
                "rtfx": round(window_seconds / run["seconds_per_window"], 2),
            }
        progress.finish()
    return results


def _interpret(
    package: str,
    inputs: list[tuple[str, list[int], str]],
    runs: int,
    buckets: Sequence[tuple[float, int]] = (),
) -> dict[str, Any]:
    """In a fresh process: load the package, run ``runs`` windows of random features, then
    ``runs`` of each shorter bucket ``(seconds, frames)`` (every frame valid)."""
    from speechport.coreml import Interpreter, load_program

    start = time.perf_counter()
    interpreter = Interpreter(load_program(package))
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    for name, shape, dtype in inputs:
        if dtype == "int32":  # a full window of valid frames
            feeds[name] = np.full(shape, 0, dtype=np.int32)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    length = next(name for name, _, dtype in inputs if dtype == "int32")
    feeds[length][...] = next(shape[-1] for _, shape, dtype in inputs if dtype != "int32")
    times = []
    interpreter.check_overflow = True
    outputs: dict[str, np.ndarray] = {}
    for _ in range(runs):
        start = time.perf_counter()
        outputs = interpreter.run(feeds)
        times.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    features = next(name for name, _, dtype in inputs if dtype != "int32")
    per_bucket = {}
    for seconds, frames in buckets:
        short = {
            features: feeds[features][..., :frames],
            length: np.full_like(feeds[length], frames),
        }
        best = math.inf
        for _ in range(runs):
            start = time.perf_counter()
            interpreter.run(short)
            best = min(best, time.perf_counter() - start)
        per_bucket[f"{seconds:g}"] = round(best, 3)
    return {
        "engine_precision": interpreter.precision,
        "ops": len(interpreter.program.ops()),
        "load_seconds": round(load_s, 2),
        "seconds_per_window": round(min(times), 3),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "fp16_overflow_ops": len(interpreter.stats.overflows),
        "outputs": {k: [list(v.shape), str(v.dtype)] for k, v in outputs.items()},
        "seconds_per_bucket": per_bucket,
    }


def main() -> None:  # pragma: no cover - manual use: python -m speechport.bench.coreml_encoder
    print(json.dumps(bench_coreml_encoder(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
