"""Long audio, contiguous windows cut at pauses: does encoding windows in batches, or
encoding the next window on a background thread while the decode loop runs, speed it up?

    nice -n 10 python scripts/bench_long_audio.py BUNDLE --seconds 60 600 --runs 3

Times ``Transcriber.transcribe`` on synthetic speech (``bench.decode_loop.synthetic_speech``)
with each window schedule, in turns (median of ``--runs``), after a warm-up, and checks that
the tokens equal the plain schedule's. Prints one JSON line per (seconds, schedule).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import speechport
from speechport.bench.decode_loop import synthetic_speech


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--seconds", type=float, nargs="+", default=[60.0, 600.0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--schedules", nargs="+", default=["plain", "ahead", "batch2", "batch4"])
    args = parser.parse_args()
    model = speechport.load(args.bundle, threads=args.threads)
    model.transcribe(synthetic_speech(5.0))  # warm-up
    for seconds in args.seconds:
        audio = synthetic_speech(seconds)
        walls: dict[str, list[float]] = {s: [] for s in args.schedules}
        tokens: dict[str, list[int]] = {}
        for _ in range(args.runs):
            for schedule in args.schedules:
                model.window_schedule = schedule
                start = time.perf_counter()
                transcript = model.transcribe(audio)
                walls[schedule].append(time.perf_counter() - start)
                tokens[schedule] = transcript.token_ids
        windows = len(model.plan(audio))
        for schedule in args.schedules:
            wall = statistics.median(walls[schedule])
            print(
                json.dumps(
                    {
                        "bundle": args.bundle.name,
                        "seconds": seconds,
                        "windows": windows,
                        "schedule": schedule,
                        "wall_median": round(wall, 3),
                        "walls": [round(w, 3) for w in walls[schedule]],
                        "rtfx": round(seconds / wall, 1),
                        "tokens": len(tokens[schedule]),
                        "tokens_equal_plain": tokens[schedule] == tokens[args.schedules[0]],
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
