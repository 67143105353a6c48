"""The full-size keyword spotter (icefall's gigaspeech KWS Zipformer2 transducer, the
3,487,033-parameter model published as an 8-bit Core ML port, with seeded random weights):
conversion time and peak memory, package sizes, and the encoder's latency per 320 ms chunk
under ONNX Runtime and under speechport's Core ML program interpreter, with the real-time
factor that follows.

A benchmark, not a test. The weights are random and the tokenizer a placeholder with the
real size (500 pieces, icefall's special symbols), so the bundle measures conversion and
speed, not keywords. The Core ML files are what ``convert`` writes (fp16, plain weights);
the encoder is also palettized to 8 bits as that port ships it (``pal8-kmeans``), for its
size and the time that takes.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from speechport.bench.convert_parakeet import model_file_sizes, peak_rss_mb
from speechport.manifest import NP_DTYPES
from speechport.progress import Progress

VOCAB_SIZE = 500


def placeholder_tokenizer(path: Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """A SentencePiece BPE model of ``vocab_size`` pieces with icefall's symbols (``<blk>``
    0, ``<sos/eos>`` 1, ``<unk>`` 2), trained on seeded random letter strings."""
    import io

    import sentencepiece as spm

    rng = np.random.default_rng(0)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ'"))
    lines = [
        " ".join("".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(12))
        for _ in range(3000)
    ]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        user_defined_symbols=["<blk>", "<sos/eos>"],
        unk_id=2,
        bos_id=-1,
        eos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())
    return path


def bench_kws(
    *,
    formats: tuple[str, ...] = ("onnx", "coreml"),
    chunks: int = 20,
    interpreter_chunks: int = 3,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the full-size model with random weights, write its bundle and time the encoder
    chunk by chunk (caches threaded through); returns the figures."""
    import torch

    from speechport.export.bundle import write_bundle
    from speechport.families.base import LoadedCheckpoint
    from speechport.families.zipformer_kws.bundle import plan_bundle
    from speechport.families.zipformer_kws.model import (
        ZipformerConfig,
        ZipformerTransducer,
        count_parameters,
    )
    from speechport.fsutil import human_size, path_size
    from speechport.runtime import load_bundle

    progress = progress or Progress(0)
    config = ZipformerConfig()
    out: dict[str, Any] = {"architecture": "zipformer2-kws (icefall gigaspeech KWS, full size)"}
    with tempfile.TemporaryDirectory(prefix="bench-kws-") as scratch:
        root = Path(work_dir) if work_dir else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        progress.start("build the full-size model (random weights) and a placeholder tokenizer")
        torch.manual_seed(0)
        model = ZipformerTransducer(config).eval()
        out["parameters"] = count_parameters(model)
        # icefall counts its training-only pruned RNN-T projections too (3,487,033)
        vocab = config.vocab_size
        heads = (config.output_dim + 1) * vocab + (config.decoder_dim + 1) * vocab
        out["parameters_with_training_heads"] = out["parameters"] + heads
        bpe = placeholder_tokenizer(root / "bpe.model")
        loaded = LoadedCheckpoint(
            "zipformer-kws",
            f"zipformer2-kws-chunk{config.chunk_size}-left{config.left_context_frames}",
            model,
            config,
            Path("random-weights"),
            bpe,
            "-",
        )
        plan = plan_bundle(loaded)
        bundle = root / "kws-full-size"
        start = time.perf_counter()
        write_bundle(plan, loaded, bundle, formats=formats, precision="fp16", overwrite=True,
                     progress=progress)  # fmt: skip
        out["convert_seconds"] = round(time.perf_counter() - start, 1)
        out["convert_peak_rss_mb"] = round(peak_rss_mb())
        out["files"] = model_file_sizes(bundle)
        if "coreml" in formats:
            from speechport.compression.apply import compress_package
            from speechport.compression.strategies import DEFAULT_WEIGHT_THRESHOLD, strategy

            progress.start("Encoder -> 8-bit palettized (pal8-kmeans)")
            palettized = root / "Encoder-pal8.mlpackage"
            done = compress_package(
                bundle / "Encoder.mlpackage",
                palettized,
                strategy("pal8-kmeans"),
                weight_threshold=DEFAULT_WEIGHT_THRESHOLD,
            )
            out["encoder_pal8_seconds"] = round(done.seconds, 1)
            out["encoder_pal8_size"] = human_size(path_size(palettized))
        chunk_seconds = config.chunk_shift * 0.01
        out["chunk_ms"] = round(1000 * chunk_seconds)
        for fmt, runs in (("onnx", chunks), ("coreml", interpreter_chunks)):
            if fmt not in formats:
                continue
            progress.start(f"encoder chunks under {fmt}")
            loaded_bundle = load_bundle(bundle, fmt)
            encoder = loaded_bundle.of_kind("streaming_encoder")
            times = chunk_times(encoder, runs)
            median = statistics.median(times)
            out[f"{fmt}_engine"] = loaded_bundle.engine
            out[f"{fmt}_first_chunk_ms"] = round(1000 * times[0], 2)
            out[f"{fmt}_chunk_median_ms"] = round(1000 * median, 2)
            out[f"{fmt}_chunk_p90_ms"] = round(1000 * float(np.percentile(times, 90)), 2)
            out[f"{fmt}_rtfx"] = round(chunk_seconds / median, 1)
        out["peak_rss_mb"] = round(peak_rss_mb())
    progress.finish()
    return out


def chunk_times(encoder: Any, runs: int) -> list[float]:
    """Seconds per call over ``runs`` chunks of random features, the caches threaded
    through (zeros at the start, as the manifest declares)."""
    spec = encoder.spec
    state_out = [[t.name for t in spec.outputs].index(p.output) for p in spec.state]
    values = {t.name: np.zeros(t.shape, dtype=NP_DTYPES[t.dtype]) for t in spec.inputs}
    first = spec.inputs[0]
    rng = np.random.default_rng(0)
    times = []
    for _ in range(max(runs, 1)):
        values[first.name] = rng.standard_normal(first.shape).astype(np.float32)
        start = time.perf_counter()
        outputs = encoder(*(values[t.name] for t in spec.inputs))
        times.append(time.perf_counter() - start)
        for pair, i in zip(spec.state, state_out, strict=True):
            values[pair.input] = outputs[i]
    return times
