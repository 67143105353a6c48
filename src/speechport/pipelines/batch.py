"""Many files at once: N jobs, each with its own loaded model, results in input order, and
the throughput of the whole run.

A job opens the model from a `LoadRecipe` (``speechport.load``'s arguments) with its share
of the cores: ``jobs x threads <= cores`` unless the threads are given. The jobs are
threads of this process: ONNX Runtime releases the interpreter while it runs, and the
encoder is nearly all of the time (97 % for full-size GigaAM v3 RNN-T at a real token
rate), so the Python decode loops rarely wait for each other. Measured against forked
worker processes (``scripts/bench_batch.py``, 2 jobs, median of 3, two sessions on a shared
2-core machine): tiny fixture, 8 files of 60 s: threads 1.58 / 1.53 s, processes 2.19 /
1.78 s; full-size random-weight GigaAM v3 RNN-T, 4 files of 30 s: threads 10.6 / 21.0 s,
processes 15.3 / 25.9 s. (One job: 1.45 / 1.25 s and 12.5 / 19.3 s: on a machine whose
cores other work keeps busy, more jobs need not pay.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechport.environment import usable_cores
from speechport.errors import SpeechportError
from speechport.runtime import SIZED_THREAD_POOLS

if TYPE_CHECKING:
    from speechport.pipelines.transcriber import Transcript


Loader = Callable[..., Any]


@dataclass(frozen=True)
class LoadRecipe:
    """How a model is opened: ``load(bundle, backend, checkpoint=..., **engine,
    **options)``, where ``load`` is ``speechport.load`` (a module-level function: it pickles
    by name). ``engine`` holds the ONNX Runtime settings (``threads``, ``steps``,
    ``graph_optimization``, ``memory_arena``; unset ones left out), ``options`` the task's
    (``overlap``, ``window_seconds``, ``vad`` as a bundle path)."""

    load: Loader
    bundle: Path
    backend: str = "onnx"
    checkpoint: Path | None = None
    engine: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def threads(self) -> int | None:
        """The threads asked for (None: the backend's default)."""
        threads: int | None = self.engine.get("threads")
        return threads

    def open(self, threads: int | None = None) -> Any:
        """The model, on ``threads`` (default: the recipe's own)."""
        engine = dict(self.engine)
        if threads is not None:
            engine["threads"] = threads
        return self.load(
            self.bundle, self.backend, checkpoint=self.checkpoint, **engine, **self.options
        )


@dataclass(frozen=True)
class Throughput:
    """What a run of many files did: files, audio seconds, wall seconds (loading the
    workers included) and the real-time factor (audio seconds per wall second)."""

    files: int
    audio_seconds: float
    wall_seconds: float
    jobs: int
    threads: int | None  # per job (None: the backend's default)

    @property
    def rtfx(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        """``3 files, 95.2 s of audio, RTFx 41.3 (2 jobs x 1 thread)``: the wall time is
        left to the caller's progress line."""
        threads = "" if self.threads is None else f" x {self.threads} thread"
        threads += "s" if self.threads not in (None, 1) else ""
        job = "job" if self.jobs == 1 else "jobs"
        return (
            f"{self.files} file{'s' if self.files != 1 else ''}, {self.audio_seconds:.1f} s of "
            f"audio, RTFx {self.rtfx:.1f} ({self.jobs} {job}{threads})"
        )


@dataclass
class BatchResult:
    """The transcripts in input order and the run's `Throughput`."""

    transcripts: list[Transcript]
    throughput: Throughput


Done = Callable[[int, "Transcript"], None]


class ManyFiles:
    """``transcribe_many`` for a model that transcribes one file with ``transcribe(path)``
    and was opened from ``recipe`` (``speechport.load`` sets it; None: a model holding
    objects a job cannot open a copy of, which runs one job)."""

    recipe: LoadRecipe | None = None

    def transcribe_many(
        self, audio: Sequence[str | Path], *, jobs: int = 1, on_done: Done | None = None
    ) -> BatchResult:
        """Transcribe audio files in ``jobs`` worker threads, each with its own copy of
        this model on its share of the cores; the transcripts in input order (the same as
        ``transcribe`` gives one by one) and the run's throughput. ``on_done(index,
        transcript)`` is called as each file finishes.

        >>> result = speechport.load("bundles/parakeet").transcribe_many(files, jobs=2)
        >>> [t.text for t in result.transcripts], result.throughput.rtfx
        """
        if self.recipe is None:
            if jobs > 1:
                raise SpeechportError(
                    "this model was not opened by speechport.load with a VAD given as "
                    "a bundle path, so each job cannot open a copy of its own",
                    hint="open it with speechport.load(bundle, vad=VAD_BUNDLE_PATH), or use jobs=1",
                )
            return transcribe_many(None, audio, model=self, on_done=on_done)
        return transcribe_many(self.recipe, audio, jobs=jobs, model=self, on_done=on_done)


def threads_per_job(jobs: int, threads: int | None = None) -> int:
    """Each job's threads: ``threads`` when given, else the usable cores shared out (one at
    least), so that the jobs together do not ask for more cores than there are."""
    if jobs < 1:
        raise SpeechportError(f"jobs must be at least 1, not {jobs}")
    return threads if threads is not None else max(1, usable_cores() // jobs)


def transcribe_many(
    recipe: LoadRecipe | None,
    audio: Sequence[str | Path],
    *,
    jobs: int = 1,
    model: Any = None,
    on_done: Done | None = None,
    on_ready: Callable[[int, Transcript], None] | None = None,
) -> BatchResult:
    """Transcribe ``audio`` (files) with the model ``recipe`` opens, in ``jobs`` worker
    threads, each with its own copy (1: on this thread, with ``model`` if given; one of the
    two is needed, and the recipe for more than one job). ``on_done(index, transcript)``
    is called as each file finishes (in any order: for progress), ``on_ready`` in input
    order as soon as every earlier file is done (to print as results come)."""
    started = time.perf_counter()
    jobs = max(1, min(jobs, len(audio))) if audio else 1
    if recipe is None and (model is None or jobs > 1):
        raise SpeechportError("worker jobs need the recipe that opens the model")
    asked = None if recipe is None else recipe.threads
    sized = recipe is not None and recipe.backend in SIZED_THREAD_POOLS
    threads = threads_per_job(jobs, asked) if jobs > 1 and sized else asked
    transcripts: list[Transcript] = []
    for index, transcript in _in_order(_transcribe(recipe, audio, jobs, threads, model), on_done):
        transcripts.append(transcript)
        if on_ready is not None:
            on_ready(index, transcript)
    wall = time.perf_counter() - started
    seconds = sum(t.duration for t in transcripts)
    return BatchResult(transcripts, Throughput(len(audio), seconds, wall, jobs, threads))


def _transcribe(
    recipe: LoadRecipe | None,
    audio: Sequence[str | Path],
    jobs: int,
    threads: int | None,
    model: Any,
) -> Iterator[tuple[int, Transcript]]:
    """(index, transcript) for every file, in the order they finish."""
    if jobs == 1 or recipe is None:
        if model is None:
            assert recipe is not None
            model = recipe.open(threads)
        for index, path in enumerate(audio):
            yield index, model.transcribe(path)
        return
    own = threading.local()

    def work(path: str | Path) -> Transcript:
        """One file on a worker thread, with the thread's own model (opened at its first)."""
        if getattr(own, "model", None) is None:
            own.model = recipe.open(threads)
        transcript: Transcript = own.model.transcribe(path)
        return transcript

    with ThreadPoolExecutor(jobs, thread_name_prefix="speechport-job") as pool:
        futures = [pool.submit(work, path) for path in audio]
        index_of = {id(f): i for i, f in enumerate(futures)}
        try:
            for future in as_completed(futures):
                yield index_of[id(future)], future.result()
        except BaseException:  # an error or Ctrl-C: no new file starts
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _in_order(
    finished: Iterator[tuple[int, Transcript]], on_done: Done | None
) -> Iterator[tuple[int, Transcript]]:
    """The transcripts in input order, each as soon as every earlier one is there."""
    waiting: dict[int, Transcript] = {}
    following = 0
    for index, transcript in finished:
        if on_done is not None:
            on_done(index, transcript)
        waiting[index] = transcript
        while following in waiting:
            yield following, waiting.pop(following)
            following += 1
