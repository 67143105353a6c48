"""Convert the full-size Parakeet-TDT-0.6B-v3 architecture (random weights) to Core ML and
ONNX, timing every component and recording the process's peak memory.

A benchmark, not a test: it needs several GB of memory and minutes of CPU. The weights are
random and the tokenizer a placeholder (the sizes are the real ones), so the bundle it
writes measures conversion only; it is not meant to transcribe.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from speechport.progress import Progress


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def model_file_sizes(bundle: Path) -> dict[str, str]:
    """The bundle's model files (packages, ONNX files and their external data) with their
    sizes, by name."""
    from speechport.fsutil import human_size, path_size

    return {
        p.name: human_size(path_size(p))
        for p in sorted(bundle.iterdir())
        if p.suffix in (".onnx", ".mlpackage", ".data")
    }


def bench_convert_parakeet(
    *,
    formats: tuple[str, ...] = ("coreml", "onnx"),
    precision: str = "fp16",
    window_seconds: float = 15.0,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Build Parakeet-TDT-0.6B-v3 with random weights and export each component; return
    seconds and peak memory per step, file sizes and parameter counts."""
    import torch

    from speechport.export.coreml import export_coreml
    from speechport.export.onnx import export_onnx
    from speechport.families.base import LoadedCheckpoint
    from speechport.families.parakeet import ParakeetCheckpoint, ParakeetConfig, build_model
    from speechport.families.parakeet.bundle import plan_bundle
    from speechport.families.parakeet.config import full_size_config
    from speechport.fsutil import human_size, path_size

    progress = progress or Progress(0)
    steps: list[dict[str, Any]] = []
    start_all = time.perf_counter()
    progress.start("build Parakeet-TDT-0.6B-v3 (random weights)")
    start = time.perf_counter()
    config = ParakeetConfig.from_nemo(full_size_config("tdt"))
    torch.manual_seed(0)
    model, _ = build_model(config, None)
    tokens = [f"<t{i}>" for i in range(config.vocab_size)]
    loaded = LoadedCheckpoint(
        "parakeet",
        config.variant,
        model,
        ParakeetCheckpoint(config, tokens, b""),
        Path("random-weights"),
        None,
        "-",
    )
    plan = plan_bundle(loaded, window_seconds=window_seconds)
    steps.append(
        {
            "step": "build + plan",
            "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(peak_rss_mb()),
        }
    )
    with tempfile.TemporaryDirectory(prefix="bench-parakeet-") as scratch:
        root = Path(work_dir) if work_dir else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        for comp in plan.components:
            for fmt in formats:
                if fmt not in comp.formats:
                    continue
                comp_precision = (comp.coreml_precision or precision) if fmt == "coreml" else "fp32"
                progress.start(f"{comp.name} -> {fmt} ({comp_precision})")
                start = time.perf_counter()
                if fmt == "coreml":
                    target = root / f"{comp.name}.mlpackage"
                    export_coreml(comp, target, precision=comp_precision)
                else:
                    target = root / comp.onnx.file_name
                    export_onnx(comp, target)
                size = path_size(target)
                data = target.with_name(target.name + ".data")
                if data.exists():
                    size += path_size(data)
                steps.append(
                    {
                        "step": f"{comp.name} -> {fmt} ({comp_precision})",
                        "seconds": round(time.perf_counter() - start, 1),
                        "peak_rss_mb": round(peak_rss_mb()),
                        "size": human_size(size),
                    }
                )
        progress.finish()
    params = sum(p.numel() for p in model.parameters())
    encoder_params = sum(p.numel() for p in model.encoder.parameters())
    return {
        "model": "Parakeet-TDT-0.6B-v3 architecture, random weights",
        "parameters": params,
        "encoder_parameters": encoder_params,
        "window": f"{window_seconds:g} s = {plan.window.samples if plan.window else 0} samples",
        "encoder_frames": plan.window.encoder_frames if plan.window else 0,
        "total_seconds": round(time.perf_counter() - start_all, 1),
        "peak_rss_mb": round(peak_rss_mb()),
        "steps": steps,
    }
