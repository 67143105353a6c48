"""Many files at once: worker threads (``transcribe_many``) against forked worker processes,
each job with its own loaded model on its share of the cores, against one job.

    nice -n 10 python -m scripts.bench_batch BUNDLE --files 8 --seconds 60 --jobs 2 --runs 3 \
        [--blank-bias 0.75]

BUNDLE and ``--blank-bias`` as in ``scripts/bench_long_audio.py``.

Writes ``--files`` synthetic-speech files of ``--seconds`` each, then times, in turns, each
way end to end (loading the models included; median of ``--runs``), and checks that every
way gives the transcripts of one job. Prints one JSON line per way.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import soundfile as sf
from scripts.bench_long_audio import with_blank_bias

import speechport
from speechport.bench.decode_loop import synthetic_speech
from speechport.pipelines.batch import LoadRecipe, threads_per_job, transcribe_many

_MODEL: Any = None


def _open_worker(recipe: LoadRecipe, threads: int) -> None:
    global _MODEL
    _MODEL = recipe.open(threads)


def _worker_transcribe(path: Path) -> Any:
    return _MODEL.transcribe(path)


def in_processes(recipe: LoadRecipe, files: list[Path], jobs: int) -> list[Any]:
    """``transcribe_many`` with forked worker processes in place of threads."""
    context = multiprocessing.get_context("fork")
    threads = threads_per_job(jobs, recipe.threads)
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_open_worker, initargs=(recipe, threads)
    ) as pool:
        return list(pool.map(_worker_transcribe, files))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--blank-bias", type=float, help="see bench_long_audio.with_blank_bias")
    args = parser.parse_args()
    if args.blank_bias is not None:
        out = Path(tempfile.mkdtemp()) / f"{args.bundle.name}-blank{args.blank_bias:g}"
        args.bundle = with_blank_bias(args.bundle, args.blank_bias, out)
    recipe = LoadRecipe(speechport.load, args.bundle)
    with tempfile.TemporaryDirectory() as scratch:
        files = []
        for k in range(args.files):
            path = Path(scratch) / f"speech{k}.wav"
            sf.write(path, synthetic_speech(args.seconds, seed=k), 16000)
            files.append(path)
        ways = {
            "1 job": lambda: transcribe_many(recipe, files, jobs=1).transcripts,
            f"{args.jobs} processes": lambda: in_processes(recipe, files, args.jobs),
            f"{args.jobs} threads": lambda: (
                transcribe_many(recipe, files, jobs=args.jobs).transcripts
            ),
        }
        walls: dict[str, list[float]] = {name: [] for name in ways}
        texts: dict[str, list[list[int]]] = {}
        for _ in range(args.runs):
            for name, way in ways.items():
                start = time.perf_counter()
                transcripts = way()
                walls[name].append(time.perf_counter() - start)
                texts[name] = [t.token_ids for t in transcripts]
    audio = args.files * args.seconds
    for name in ways:
        wall = statistics.median(walls[name])
        row = {
            "bundle": args.bundle.name,
            "way": name,
            "files": args.files,
            "audio_seconds": audio,
            "wall_median": round(wall, 3),
            "walls": [round(w, 3) for w in walls[name]],
            "rtfx": round(audio / wall, 1),
            "tokens_equal_one_job": texts[name] == texts["1 job"],
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
