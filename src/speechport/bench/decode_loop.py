"""The decode-loop benchmark: figures measured side by side in one run (not timed tests)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechport.progress import Progress
from speechport.runtime.base import Component, dynamic_inputs, input_buckets


@dataclass
class _Timer:
    calls: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the process's CPU time (every thread) during the calls


class _Timed:
    """A component wrapper that counts calls and the time spent in them (a joint's
    projections are not forwarded: ``_run_option`` times them when an option uses them; a
    decoder's own ``predictor`` is, timed, so the loop runs what users run)."""

    def __init__(self, component: Component, timer: _Timer, *, cpu: bool = False) -> None:
        self.spec = component.spec
        self.dynamic_inputs = dynamic_inputs(component)
        self.input_buckets = input_buckets(component)
        self.projections: Any = None
        self._component = component
        self._timer = timer
        self._cpu = cpu  # also the process's CPU time (a system call: whole-window calls only)
        if callable(getattr(component, "predictor", None)):
            self.predictor = self._timed_predictor

    def _timed_predictor(self, **options: Any) -> tuple[Any, Any]:
        predict, state = self._component.predictor(**options)  # type: ignore[attr-defined]
        timer = self._timer

        def timed(token: int, state: Any) -> Any:
            start = time.perf_counter()
            out = predict(token, state)
            timer.seconds += time.perf_counter() - start
            timer.calls += 1
            return out

        return timed, state

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        start = time.perf_counter()
        cpu = time.process_time() if self._cpu else 0.0
        out = self._component(*inputs)
        self._timer.seconds += time.perf_counter() - start
        if self._cpu:
            self._timer.cpu_seconds += time.process_time() - cpu
        self._timer.calls += 1
        return out


def synthetic_speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Speech-like test audio without a model or a file: voiced bursts (a harmonic series
    with a wandering pitch) of 0.3-2 s separated by 0.1-0.6 s pauses with faint noise."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sample_rate), dtype=np.float32)
    position = 0
    while position < out.size:
        position += int(rng.uniform(0.1, 0.6) * sample_rate)
        length = int(rng.uniform(0.3, 2.0) * sample_rate)
        end = min(position + length, out.size)
        n = end - position
        if n <= 0:
            break
        t = np.arange(n) / sample_rate
        pitch = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
        envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5
        out[position:end] = (0.2 * voiced * envelope).astype(np.float32)
        position = end
    out += (rng.standard_normal(out.size) * 1e-3).astype(np.float32)
    return out


# The per-step engines measured side by side: (name, decoder step, joint, joint run in
# parts). "onnx": ONNX Runtime for both; "numpy-decoder": the LSTM step in numpy, the joint
# in ONNX Runtime; "numpy-per-step": both in numpy, the joint called whole every step;
# "numpy" (what ``steps="auto"`` gives a full-size GigaAM): both in numpy, the joint's
# encoder projection once per window, its decoder projection fused into the LSTM step.
OPTIONS = (
    ("onnx", "onnx", "onnx", False),
    ("numpy-decoder", "numpy", "onnx", False),
    ("numpy-per-step", "numpy", "numpy", False),
    ("numpy", "numpy", "numpy", True),
)


class _TimedProjections:
    """``JointProjections`` that count the steps (``scores`` calls) and time every part."""

    def __init__(self, inner: Any, steps: _Timer, loop: _Timer) -> None:
        self._inner, self._steps, self._loop = inner, steps, loop
        affine = getattr(inner, "decoder_affine", None)
        if affine is not None:  # a predictor fuses it (timed as the decoder's)
            self.decoder_affine = affine

    def _timed(self, timer: _Timer, fn: Any, *args: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out: np.ndarray = fn(*args)
        timer.seconds += time.perf_counter() - start
        timer.calls += 1
        return out

    def project_encoder(self, frames: np.ndarray) -> np.ndarray:
        return self._timed(self._loop, self._inner.project_encoder, frames)

    def project_decoder(self, dec: np.ndarray) -> np.ndarray:
        return self._timed(self._loop, self._inner.project_decoder, dec)

    def scores(self, enc: np.ndarray, dec: np.ndarray) -> np.ndarray:
        return self._timed(self._steps, self._inner.scores, enc, dec)


def bench_decode_loop(
    variant: str = "v3_e2e_rnnt",
    *,
    seconds: float = 60.0,
    repeats: int = 3,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Full-size GigaAM v3 with random weights, exported to ONNX, transcribing ``seconds`` of
    synthetic speech with each per-step engine of ``OPTIONS`` (best of ``repeats``, taken in
    turns): decode-loop steps per second, the share of wall time outside the encoder, and
    whether the tokens equal ONNX Runtime's."""
    from speechport.bench.random_models import bench_tokenizer, random_gigaam
    from speechport.families.gigaam.bundle import plan_bundle
    from speechport.pipelines.transcriber import Transcriber
    from speechport.runtime import load_bundle
    from speechport.runtime.onnx_backend import OnnxBackend

    progress = progress or Progress(3 + repeats)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(work_dir) if work_dir else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        bundle = root / f"bench-{variant}"
        if not (bundle / "speechport.json").is_file():
            progress.start(f"build full-size {variant} (random weights) and export to ONNX")
            loaded = random_gigaam(variant)
            if loaded.config.vocabulary is None:
                tokenizer = bench_tokenizer(root, loaded.config.num_classes - 1)
                loaded = dataclasses.replace(loaded, tokenizer_path=tokenizer)
            from speechport.export.bundle import write_bundle

            write_bundle(
                plan_bundle(loaded, window_seconds=30.0),
                loaded,
                bundle,
                formats=["onnx"],
                overwrite=True,
            )
        else:
            progress.start(f"reuse {bundle}")
        progress.start("load with onnxruntime (per-step engines: onnx, numpy)")
        engines = {name: load_bundle(bundle, OnnxBackend(steps=name)) for name in ("onnx", "numpy")}
        audio = synthetic_speech(seconds)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in OPTIONS}
        tokens: dict[str, list[int]] = {}
        for repeat in range(repeats):
            progress.start(f"transcribe {seconds:g} s with each engine (round {repeat + 1})")
            for name, decoder, joint, in_parts in OPTIONS:
                figures, token_ids = _run_option(
                    engines, decoder, joint, in_parts, audio, Transcriber
                )
                runs[name].append(figures)
                tokens[name] = token_ids
        progress.finish()
    rows = []
    for name, *_ in OPTIONS:
        best = max(runs[name], key=lambda r: r["decode_steps_per_second"])
        rows.append({"option": name, **best, "tokens_equal_onnx": tokens[name] == tokens["onnx"]})
    default = next(r for r in rows if r["option"] == "numpy")
    return {
        "variant": variant,
        "engine": engines["onnx"].engine,
        "audio_seconds": seconds,
        "emitted_tokens": len(tokens["onnx"]),
        **{k: v for k, v in default.items() if k != "option"},
        "options": rows,
    }


def _run_option(
    engines: dict[str, Any],
    decoder: str,
    joint: str,
    in_parts: bool,
    audio: np.ndarray,
    transcriber_class: Any,
) -> tuple[dict[str, Any], list[int]]:
    """Transcribe ``audio`` once (after a 5 s warm-up) with the decoder step of engine
    ``decoder`` and the joint of engine ``joint`` (in parts when ``in_parts``)."""
    base = engines["onnx"]
    engine_of = {"decoder_step": decoder, "joint": joint}
    timers = {c.spec.kind: _Timer() for c in base.components.values()}
    steps = _Timer()
    components: dict[str, Any] = {}
    for role, component in base.components.items():
        kind = component.spec.kind
        chosen = engines[engine_of.get(kind, "onnx")].components[role]
        timed = _Timed(chosen, timers[kind], cpu=kind not in engine_of)
        if kind == "joint" and in_parts and getattr(chosen, "projections", None) is not None:
            timed.projections = _TimedProjections(chosen.projections, steps, timers[kind])
        components[role] = timed
    bundle = dataclasses.replace(base, components=components)
    transcriber = transcriber_class(bundle)
    transcriber.transcribe(audio[: int(5.0 * transcriber.sample_rate)])
    for timer in (*timers.values(), steps):
        timer.calls, timer.seconds, timer.cpu_seconds = 0, 0.0, 0.0
    start, cpu = time.perf_counter(), time.process_time()
    transcript = transcriber.transcribe(audio)
    wall = time.perf_counter() - start
    loop_cpu = time.process_time() - cpu - timers["encoder"].cpu_seconds
    enc = timers["encoder"]
    count = steps.calls or timers["joint"].calls
    loop_seconds = steps.seconds + sum(t.seconds for k, t in timers.items() if k != "encoder")
    seconds = len(audio) / transcriber.sample_rate
    return {
        "windows": len(transcript.segments),
        "wall_seconds": round(wall, 3),
        "rtfx": round(seconds / wall, 2),
        "encoder_seconds": round(enc.seconds, 3),
        "share_outside_encoder": round(1.0 - enc.seconds / wall, 4),
        "decode_steps": count,
        "decoder_calls": timers["decoder_step"].calls,
        "decode_steps_per_second": round(count / max(wall - enc.seconds, 1e-9), 1),
        # On a shared machine wall time counts other processes' turns; CPU time does not.
        "decode_steps_per_cpu_second": round(count / max(loop_cpu, 1e-9), 1),
        "us_per_step_in_components": round(1e6 * loop_seconds / max(count, 1), 1),
    }, transcript.token_ids
