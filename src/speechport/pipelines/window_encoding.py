"""How a long file's windows reach the encoder: one after another, the next one ahead on a
background thread while the decode loop runs, or several in one batch.

Every schedule gives each window the same encoder inputs (features padded as
``Transcriber.encoder_inputs`` pads them) and decodes the windows in order, each from a
fresh state; only when the encoder runs changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from speechport.runtime.base import dynamic_axes

if TYPE_CHECKING:
    from speechport.pipelines.transcriber import Transcriber
    from speechport.pipelines.windowing import Window

Read = Callable[["Window"], np.ndarray]
Encoded = tuple[tuple[np.ndarray, ...] | None, int]  # encoder outputs (None: no frame), samples
Schedule = Callable[["Transcriber", Sequence["Window"], Read], Iterator[Encoded]]


def _encode_one(transcriber: Transcriber, samples: np.ndarray) -> Encoded:
    inputs = transcriber.encoder_inputs(samples)
    if inputs is None:
        return None, samples.size
    return transcriber.encoder(*inputs), samples.size


def in_turn(transcriber: Transcriber, windows: Sequence[Window], read: Read) -> Iterator[Encoded]:
    """Each window read, encoded and decoded before the next is read."""
    for window in windows:
        yield _encode_one(transcriber, read(window))


def ahead(transcriber: Transcriber, windows: Sequence[Window], read: Read) -> Iterator[Encoded]:
    """The next window read and encoded on a background thread while this one is decoded
    (ONNX Runtime releases the interpreter while it runs)."""
    with ThreadPoolExecutor(1, thread_name_prefix="speechport-encoder") as pool:
        pending: Future[Encoded] | None = None
        for window in windows:
            following = pool.submit(_encode_one, transcriber, read(window))
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()


def batched(size: int) -> Schedule:
    """Windows encoded ``size`` at a time in one call, their features padded to the
    longest (each with its own length), where the encoder takes a batch axis; one at a
    time otherwise."""

    def schedule(
        transcriber: Transcriber, windows: Sequence[Window], read: Read
    ) -> Iterator[Encoded]:
        if 0 not in dynamic_axes(transcriber.encoder) or not transcriber.any_length:
            yield from in_turn(transcriber, windows, read)
            return
        for first in range(0, len(windows), size):
            samples = [read(w) for w in windows[first : first + size]]
            inputs = [transcriber.encoder_inputs(s) for s in samples]
            present = [i for i, x in enumerate(inputs) if x is not None]
            outputs: dict[int, tuple[np.ndarray, ...]] = {}
            if present:
                frames = max(inputs[i][0].shape[-1] for i in present)  # type: ignore[index]
                features = np.zeros(
                    (len(present), *inputs[present[0]][0].shape[1:-1], frames),  # type: ignore[index]
                    dtype=np.float32,
                )
                for row, i in enumerate(present):
                    x = inputs[i][0]  # type: ignore[index]
                    features[row, ..., : x.shape[-1]] = x[0]
                lengths = np.concatenate([inputs[i][1] for i in present])  # type: ignore[index]
                encoded = transcriber.encoder(features, lengths)
                for row, i in enumerate(present):
                    outputs[i] = tuple(y[row : row + 1] for y in encoded)
            for i, s in enumerate(samples):
                yield outputs.get(i), s.size

    return schedule


SCHEDULES: dict[str, Schedule] = {
    "plain": in_turn,
    "ahead": ahead,
    "batch2": batched(2),
    "batch4": batched(4),
}
