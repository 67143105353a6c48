"""The full-size cache-aware streaming architectures (random weights): conversion time, peak
memory, package sizes, and the encoder's latency per chunk under ONNX Runtime and under
speechport's Core ML program interpreter, with the real-time factor that follows.

A benchmark, not a test: it needs GB of memory and minutes of CPU. The weights are random
and the tokenizer a placeholder (the sizes are the real ones), so the bundle measures
conversion and speed, not text.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from speechport.bench.convert_parakeet import model_file_sizes, peak_rss_mb
from speechport.progress import Progress

# Sizes of the released models (NVIDIA's model cards): Nemotron 3.5 ASR streaming 0.6B
# (FastConformer, 24 layers of 1024, left context 56, lookaheads 0/1/3/6/13, 128 language
# prompts) and Parakeet realtime EOU 120M (17 layers of 512, [70, 1], <EOU>/<EOB>).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "nemotron-0.6b": {
        "d_model": 1024,
        "n_layers": 24,
        "n_heads": 8,
        "att_context_sizes": ((56, 3), (56, 0), (56, 1), (56, 6), (56, 13)),
        "vocab_size": 1024,
        "num_prompts": 128,
    },
    "eou-120m": {
        "d_model": 512,
        "n_layers": 17,
        "n_heads": 8,
        "att_context_sizes": ((70, 1),),
        "vocab_size": 1026,
        "num_prompts": 0,
    },
}


def bench_streaming(
    architecture: str = "eou-120m",
    *,
    formats: tuple[str, ...] = ("onnx", "coreml"),
    chunks: int = 20,
    interpreter_chunks: int = 3,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Build ``architecture`` with random weights, write its bundle (default lookahead) and
    time the encoder chunk by chunk; returns the figures."""
    import torch

    from speechport.export.bundle import write_bundle
    from speechport.families.base import LoadedCheckpoint
    from speechport.families.nemo_streaming.bundle import StreamingCheckpoint, plan_bundle
    from speechport.families.nemo_streaming.config import StreamingConfig
    from speechport.families.nemo_streaming.model import StreamingTransducer
    from speechport.features.spec import nemo_spec
    from speechport.runtime import load_bundle

    arch = ARCHITECTURES[architecture]
    progress = progress or Progress(0)
    out: dict[str, Any] = {"architecture": architecture}
    progress.start(f"build {architecture} (random weights)")
    config = StreamingConfig(
        model_class="EncDecRNNTBPEModelWithPrompt" if arch["num_prompts"] else "EncDecRNNTBPEModel",
        frontend=nemo_spec(128, n_fft=512, win_length=400, hop_length=160, normalize=None),
        feat_in=128,
        d_model=arch["d_model"],
        n_layers=arch["n_layers"],
        n_heads=arch["n_heads"],
        ff_expansion_factor=4,
        subsampling_factor=8,
        subsampling_conv_channels=256,
        conv_kernel_size=9,
        xscaling=True,
        use_bias=True,
        att_context_sizes=arch["att_context_sizes"],
        vocab_size=arch["vocab_size"],
        pred_hidden=640,
        pred_rnn_layers=1,
        joint_hidden=640,
        num_prompts=arch["num_prompts"],
        prompt_dictionary={"en-US": 0, "auto": 101} if arch["num_prompts"] else {},
    )
    torch.manual_seed(0)
    model = StreamingTransducer(config).eval()
    out["parameters"] = sum(p.numel() for p in model.parameters())
    tokens = [f"<t{i}>" for i in range(config.vocab_size)]
    loaded = LoadedCheckpoint(
        "nemo-streaming",
        config.variant,
        model,
        StreamingCheckpoint(config, tokens, b""),
        Path("random-weights"),
        None,
        "-",
    )
    lookahead = config.lookaheads[0]
    plan = plan_bundle(loaded, lookaheads=(lookahead,))
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as scratch:
        root = Path(work_dir) if work_dir else Path(scratch)
        bundle = root / architecture
        start = time.perf_counter()
        write_bundle(plan, loaded, bundle, formats=formats, precision="fp16", overwrite=True,
                     progress=progress)  # fmt: skip
        out["convert_seconds"] = round(time.perf_counter() - start, 1)
        out["peak_rss_mb"] = round(peak_rss_mb())
        out["files"] = model_file_sizes(bundle)
        chunk = plan.streaming.chunkings[0] if plan.streaming else None
        assert chunk is not None
        chunk_seconds = chunk.step_frames * 0.01
        out["lookahead"] = lookahead
        out["chunk_ms"] = round(1000 * chunk_seconds)
        for fmt, runs in (("onnx", chunks), ("coreml", interpreter_chunks)):
            if fmt not in formats:
                continue
            progress.start(f"encoder chunks under {fmt}")
            loaded_bundle = load_bundle(bundle, fmt)
            encoder = loaded_bundle.component(chunk.encoder)
            times = _chunk_times(encoder, runs)
            median = statistics.median(times)
            out[f"{fmt}_engine"] = loaded_bundle.engine
            out[f"{fmt}_first_chunk_ms"] = round(1000 * times[0], 1)
            out[f"{fmt}_chunk_median_ms"] = round(1000 * median, 1)
            out[f"{fmt}_chunk_p90_ms"] = round(1000 * float(np.percentile(times, 90)), 1)
            out[f"{fmt}_rtfx"] = round(chunk_seconds / median, 2)
    progress.finish()
    return out


def _chunk_times(encoder: Any, runs: int) -> list[float]:
    """Seconds per call over ``runs`` steady chunks, the caches threaded through."""
    spec = encoder.spec
    state_out = [[t.name for t in spec.outputs].index(p.output) for p in spec.state]
    values = {t.name: np.zeros(t.shape, dtype=np.dtype(t.dtype)) for t in spec.inputs}
    values["length"] = np.array([spec.inputs[0].shape[-1]], dtype=np.int32)
    if "prompt" in values:
        values["prompt"][0, 0] = 1.0
    rng = np.random.default_rng(0)
    times = []
    for _ in range(max(runs, 1)):
        values["mel"] = rng.standard_normal(spec.inputs[0].shape).astype(np.float32)
        start = time.perf_counter()
        outputs = encoder(*(values[t.name] for t in spec.inputs))
        times.append(time.perf_counter() - start)
        for pair, i in zip(spec.state, state_out, strict=True):
            values[pair.input] = outputs[i]
    return times
