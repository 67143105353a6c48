"""Benchmark of ``quantize`` on the full-size GigaAM v3 architecture (random weights).

Writes a Core ML fp16 bundle of the full-size model (encoder, decoder step, joint), runs the
sweep on it without audio (random weights have nothing to score: every variant is built,
sized and run once under the engine on silence) and reports per strategy: package sizes
and ratios against fp16, against the nominal ratio of its bit width, conversion time and
the time of one call of each component.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from speechport.progress import Progress

# Bits per weight against fp16's 16: the ratio a strategy's weights should approach.
NOMINAL_RATIO = {8: 2.0, 6: 16 / 6, 4: 4.0}


def bench_quantize(
    variant: str = "v3_rnnt",
    *,
    strategies: str | None = None,
    window_seconds: float = 30.0,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:

    from speechport.bench.random_models import random_gigaam
    from speechport.compression import quantize_sweep
    from speechport.compression.strategies import CATALOGUE
    from speechport.export.bundle import write_bundle
    from speechport.families.gigaam.bundle import plan_bundle
    from speechport.fsutil import path_size

    progress = progress or Progress(0)
    results: dict[str, Any] = {"variant": variant, "window_seconds": window_seconds}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(work_dir) if work_dir else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        progress.start(f"build full-size {variant} (random weights) and convert it to Core ML fp16")
        loaded = random_gigaam(variant)
        results["parameters"] = int(sum(p.numel() for p in loaded.model.parameters()))
        bundle = root / "bundle"
        start = time.perf_counter()
        write_bundle(
            plan_bundle(loaded, window_seconds=window_seconds),
            loaded,
            bundle,
            formats=["coreml"],
            precision="fp16",
            overwrite=True,
        )
        results["fp16_convert_seconds"] = round(time.perf_counter() - start, 1)
        # one process: the call times are the figures here, and workers would share cores
        summary = quantize_sweep(
            bundle, root / "sweep", strategies=strategies, jobs=1, progress=progress
        )
        rows = []
        for v in summary.variants:
            encoder = next(c for c in v.components if c.kind == "encoder")
            bits = CATALOGUE[encoder.strategy].bits if encoder.strategy in CATALOGUE else None
            rows.append(
                {
                    "variant": v.name,
                    "bytes": v.bytes,
                    "ratio": round(v.ratio, 3),
                    "encoder_bytes": encoder.bytes,
                    "encoder_ratio": round(encoder.ratio, 3),
                    "nominal_ratio": round(NOMINAL_RATIO[bits], 3) if bits else None,
                    "convert_seconds": round(v.convert_seconds, 1),
                    "needs_ios18": any(c.retargeted for c in v.components),
                    "call_ms": {c.name: round(c.latency_ms or 0.0, 1) for c in v.components},
                    "sizes_equal_files": all(
                        c.bytes == path_size(Path(v.bundle) / c.path) for c in v.components
                    ),
                }
            )
        results["engine"] = summary.engine
        results["variants"] = rows
        progress.finish()
    return results


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        f"full-size {results['variant']} ({results['parameters'] / 1e6:.1f} M parameters, "
        f"random weights), window {results['window_seconds']:g} s, engine: {results['engine']}",
        f"{'variant':<18} {'total MB':>9} {'ratio':>6} {'encoder':>8} {'nominal':>8} "
        f"{'conv s':>7} {'iOS18':>5}  one call per component (ms)",
    ]
    for r in results["variants"]:
        nominal = f"{r['nominal_ratio']:.2f}" if r["nominal_ratio"] else "-"
        calls = ", ".join(f"{k} {v:.0f}" for k, v in r["call_ms"].items())
        lines.append(
            f"{r['variant']:<18} {r['bytes'] / 1e6:>9.1f} {r['ratio']:>6.2f} "
            f"{r['encoder_ratio']:>8.2f} {nominal:>8} {r['convert_seconds']:>7.1f} "
            f"{'yes' if r['needs_ios18'] else '':>5}  {calls}"
        )
    return lines
