"""Latency per component: the first call, then the median and 90th percentile of warm calls.

Components are timed on the inputs they really received during a run (recorded by
``Recorder``), so the figures describe real shapes and real values.
"""

from __future__ import annotations

import time

import numpy as np

from speechport.manifest import ComponentSpec
from speechport.parity.report import Latency
from speechport.runtime.base import (
    Component,
    LoadedBundle,
    dynamic_inputs,
    input_buckets,
    joint_projections,
)


class Recorder:
    """A component that remembers its first inputs and how long its first call took."""

    def __init__(self, inner: Component) -> None:
        self.inner = inner
        self.spec: ComponentSpec = inner.spec
        self.dynamic_inputs = dynamic_inputs(inner)
        self.input_buckets = input_buckets(inner)
        self.projections = joint_projections(inner)  # the decoding loop runs what users run
        self.first_inputs: tuple[np.ndarray, ...] | None = None
        self.first_ms: float | None = None
        self.calls = 0
        self.seconds = 0.0
        self.warm_ms: list[float] = []  # every call after the first

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        start = time.perf_counter()
        outputs = self.inner(*inputs)
        elapsed = time.perf_counter() - start
        if self.first_inputs is None:
            self.first_inputs = tuple(np.array(x, copy=True) for x in inputs)
            self.first_ms = 1000 * elapsed
        else:
            self.warm_ms.append(1000 * elapsed)
        self.calls += 1
        self.seconds += elapsed
        return outputs


def record(bundle: LoadedBundle) -> dict[str, Recorder]:
    """Wrap every component of ``bundle`` in a ``Recorder`` (in place); returns them by role."""
    recorders = {role: Recorder(c) for role, c in bundle.components.items()}
    bundle.components.update(recorders)
    return recorders


def measure(
    recorder: Recorder, *, runs: int = 20, warmup: int = 3, from_run: bool = False
) -> Latency | None:
    """Time ``runs`` warm calls on the recorded inputs; None if the component was never
    called. ``from_run``: the warm calls the run itself made count (on the inputs it really
    fed), topped up with calls on the first inputs when there are fewer than ``runs``; the
    run's first call was the warm-up."""
    if recorder.first_inputs is None or recorder.first_ms is None:
        return None
    inputs = recorder.first_inputs
    samples = list(recorder.warm_ms) if from_run else []
    if len(samples) < max(runs, 1):
        for _ in range(0 if from_run else warmup):
            recorder.inner(*inputs)
        for _ in range(max(runs, 1) - len(samples)):
            start = time.perf_counter()
            recorder.inner(*inputs)
            samples.append(1000 * (time.perf_counter() - start))
    return Latency(
        first_ms=recorder.first_ms,
        median_ms=float(np.median(samples)),
        p90_ms=float(np.percentile(samples, 90)),
        runs=len(samples),
    )
