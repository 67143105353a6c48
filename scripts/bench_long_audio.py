"""Long audio, contiguous windows cut at pauses: would encoding windows in batches, or
encoding the next window on a background thread while the decode loop runs, speed it up?

    nice -n 10 python -m scripts.bench_long_audio BUNDLE --seconds 60 600 --runs 3 \
        [--blank-bias 0.75]

BUNDLE: e.g. the tiny fixture converted to ONNX, or full-size GigaAM v3 RNN-T with random
weights (``speechport bench decode-loop --work-dir DIR`` keeps it in DIR/bench-v3_e2e_rnnt).

Each schedule runs the transcriber's own steps (``plan``, ``encoder_inputs``, the encoder,
``decode_encoded``) on synthetic speech (``bench.decode_loop.synthetic_speech``):

- ``plain``: window after window, as ``Transcriber.transcribe`` does;
- ``ahead``: window k+1's features and encoder run on a background thread while window k
  is decoded (ONNX Runtime releases the interpreter while it runs);
- ``batchN``: N windows encoded in one call, features zero-padded to the longest, each
  with its own length (ONNX encoders have a dynamic batch axis).

The schedules are timed in turns, after a warm-up (median of ``--runs``); the tokens are
checked against ``transcribe``'s. ``plain_encoder_share`` is the encoder's share of the
plain schedule's wall time (the most that overlapping could hide is the rest, or the
encoder, whichever is smaller). Prints one JSON line per (seconds, schedule). The result on
a shared 2-core machine (README, "Long audio"): no schedule measurably faster, so the
transcriber keeps ``plain``.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import speechport
from speechport.bench.decode_loop import synthetic_speech

Encoded = tuple[np.ndarray, ...] | None
Schedule = Callable[[Any, list[np.ndarray]], Iterator[Encoded]]


def encoder(model: Any) -> Any:
    return model.bundle.of_kind("encoder")


def plain(
    model: Any, pieces: list[np.ndarray], timer: list[float] | None = None
) -> Iterator[Encoded]:
    for samples in pieces:
        inputs = model.encoder_inputs(samples)
        start = time.perf_counter()
        out = None if inputs is None else encoder(model)(*inputs)
        if timer is not None:
            timer.append(time.perf_counter() - start)
        yield out


def ahead(model: Any, pieces: list[np.ndarray]) -> Iterator[Encoded]:
    def encode(samples: np.ndarray) -> Encoded:
        inputs = model.encoder_inputs(samples)
        return None if inputs is None else encoder(model)(*inputs)

    with ThreadPoolExecutor(1) as pool:
        pending: Future[Encoded] | None = None
        for samples in pieces:
            following = pool.submit(encode, samples)
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()


def batched(size: int) -> Schedule:
    def schedule(model: Any, pieces: list[np.ndarray]) -> Iterator[Encoded]:
        for first in range(0, len(pieces), size):
            inputs = [model.encoder_inputs(s) for s in pieces[first : first + size]]
            present = [x for x in inputs if x is not None]
            rows: list[Encoded] = []
            if present:
                frames = max(x[0].shape[-1] for x in present)
                features = np.zeros((len(present), *present[0][0].shape[1:-1], frames), np.float32)
                for row, x in enumerate(present):
                    features[row, ..., : x[0].shape[-1]] = x[0][0]
                lengths = np.concatenate([x[1] for x in present])
                encoded = encoder(model)(features, lengths)
                rows = [tuple(y[r : r + 1] for y in encoded) for r in range(len(present))]
            it = iter(rows)
            for x in inputs:
                yield None if x is None else next(it)

    return schedule


SCHEDULES: dict[str, Schedule] = {
    "plain": plain,
    "ahead": ahead,
    "batch2": batched(2),
    "batch4": batched(4),
}


def transcribe(model: Any, audio: np.ndarray, schedule: Schedule) -> list[int]:
    pieces = [audio[w.start : w.end] for w in model.plan(audio)]
    tokens: list[int] = []
    for outputs in schedule(model, pieces):
        if outputs is not None:
            tokens += model.decode_encoded(outputs)[0].token_ids
    return tokens


def with_blank_bias(bundle: Path, bias: float, out: Path) -> Path:
    """A copy of ``bundle`` at ``out`` (its files linked) whose joint adds ``bias`` to the
    blank logit: random weights emit a token at nearly every step of every frame (up to
    ``max_symbols_per_frame``); +0.75 on full-size GigaAM v3 RNN-T gives about 3 tokens per
    second of synthetic speech, a real model's rate."""
    import onnx
    from onnx import numpy_helper

    from speechport.manifest import read_manifest

    manifest = read_manifest(bundle)
    joint = bundle / manifest.component("joint").files["onnx"].path
    blank = manifest.decoding.blank_id
    out.mkdir(parents=True, exist_ok=True)
    for item in bundle.iterdir():
        if item != joint and not (out / item.name).exists():
            (out / item.name).symlink_to(item.resolve())
    model = onnx.load(str(joint))
    last = next(i for i in reversed(model.graph.initializer) if i.name.endswith("bias"))
    values = numpy_helper.to_array(last).copy()
    values[blank] += bias
    last.CopyFrom(numpy_helper.from_array(values, last.name))
    onnx.save(model, str(out / joint.name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--seconds", type=float, nargs="+", default=[60.0, 600.0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES))
    parser.add_argument("--blank-bias", type=float, help="see with_blank_bias (RNN-T only)")
    args = parser.parse_args()
    if args.blank_bias is not None:
        out = Path(tempfile.mkdtemp()) / f"{args.bundle.name}-blank{args.blank_bias:g}"
        args.bundle = with_blank_bias(args.bundle, args.blank_bias, out)
    model = speechport.load(args.bundle, threads=args.threads)
    model.transcribe(synthetic_speech(5.0))  # warm-up
    for seconds in args.seconds:
        audio = synthetic_speech(seconds)
        expected = model.transcribe(audio).token_ids
        walls: dict[str, list[float]] = {s: [] for s in args.schedules}
        tokens: dict[str, list[int]] = {}
        shares: list[float] = []
        for _ in range(args.runs):
            for name in args.schedules:
                timer: list[float] = []
                schedule = SCHEDULES[name]
                if name == "plain":
                    schedule = functools.partial(plain, timer=timer)
                start = time.perf_counter()
                tokens[name] = transcribe(model, audio, schedule)
                walls[name].append(time.perf_counter() - start)
                if name == "plain":
                    shares.append(sum(timer) / walls[name][-1])
        windows = len(model.plan(audio))
        for name in args.schedules:
            wall = statistics.median(walls[name])
            row = {
                "bundle": args.bundle.name,
                "seconds": seconds,
                "windows": windows,
                "schedule": name,
                "wall_median": round(wall, 3),
                "walls": [round(w, 3) for w in walls[name]],
                "rtfx": round(seconds / wall, 1),
                "tokens": len(tokens[name]),
                "tokens_equal_transcribe": tokens[name] == expected,
                "plain_encoder_share": round(statistics.median(shares), 3) if shares else None,
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
