"""ONNX Runtime session options on a bundle's encoder: load time, the encoder's time on one
full window of synthetic speech (median of ``--runs`` after a warm-up) and the process's
peak memory, for each graph optimisation level and with the memory arena on and off.

    nice -n 10 python -m scripts.bench_ort_options BUNDLE --runs 3

Each setting runs in a fresh process (peak memory is per process). Prints one JSON line per
setting.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import time
from pathlib import Path
from typing import Any

SETTINGS = (
    ("all", True),
    ("extended", True),
    ("basic", True),
    ("disable", True),
    ("all", False),
)


def measure(bundle: Path, graph: str, arena: bool, runs: int) -> dict[str, Any]:
    import speechport
    from speechport.bench.decode_loop import synthetic_speech

    start = time.perf_counter()
    model = speechport.load(bundle, graph_optimization=graph, memory_arena=arena)
    loaded = time.perf_counter() - start
    encoder = model.bundle.of_kind("encoder")
    inputs = model.encoder_inputs(synthetic_speech(model.window_samples / model.sample_rate))
    encoder(*inputs)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        encoder(*inputs)
        times.append(time.perf_counter() - start)
    return {
        "bundle": bundle.name,
        "graph_optimization": graph,
        "memory_arena": arena,
        "load_seconds": round(loaded, 2),
        "encoder_window_seconds": round(statistics.median(times), 3),
        "encoder_runs": [round(t, 3) for t in times],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    for graph, arena in SETTINGS:
        with context.Pool(1) as pool:
            row = pool.apply(measure, (args.bundle, graph, arena, args.runs))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
