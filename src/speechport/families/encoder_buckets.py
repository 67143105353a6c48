"""Shape buckets of an offline encoder's Core ML file: the few audio lengths it runs at.

Core ML files have fixed shapes, so without buckets every clip is padded to the whole
encoder window (30 s for GigaAM). With buckets the features input takes a few lengths
(enumerated shapes: one program, one set of weights) and the runtime pads a clip only to
the shortest bucket that holds it. The encoder masks every frame past its ``length`` input,
so the padding does not change the valid frames' outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from speechport.errors import SpeechportError
from speechport.families.base import ExportableComponent, ShapeBuckets

# Bucket lengths below the window when none are asked for; the window is always the last.
DEFAULT_BUCKET_SECONDS = (5.0, 10.0, 15.0)


def bucket_seconds(requested: Sequence[float] | None, window_seconds: float) -> tuple[float, ...]:
    """The bucket lengths in seconds, ascending: ``requested`` (its largest must be the
    window), or the defaults shorter than the window and the window itself."""
    if requested is None:
        return (*(s for s in DEFAULT_BUCKET_SECONDS if s < window_seconds), window_seconds)
    seconds = sorted(float(s) for s in requested)
    if not seconds or any(not math.isfinite(s) or s <= 0 for s in seconds):
        raise SpeechportError(
            f"encoder buckets must be lengths in seconds > 0, got {list(requested)}",
            hint="pass e.g. --encoder-buckets 5,10,15,30",
        )
    if not math.isclose(seconds[-1], window_seconds):
        raise SpeechportError(
            f"the largest encoder bucket must be the {window_seconds:g} s window, got "
            f"{', '.join(f'{s:g}' for s in seconds)} s",
            hint=f"end --encoder-buckets with {window_seconds:g} (or change --window)",
        )
    return tuple(dict.fromkeys(seconds))


def bucket_encoder(
    components: Sequence[ExportableComponent],
    requested: Sequence[float] | None,
    window_seconds: float,
    feature_frames: Callable[[float], int],
    *,
    output_axis: int,
) -> None:
    """Give the encoder among ``components`` (features ``[1, F, T]`` and length in,
    encodings and length out) the buckets ``bucket_seconds(requested, window_seconds)``: its
    features hold ``feature_frames(s)`` frames for ``s`` seconds, and its first output's
    ``output_axis`` follows. A single bucket (the window) leaves the fixed shape."""
    encoder = next(c for c in components if c.spec.kind == "encoder")
    seconds = bucket_seconds(requested, window_seconds)
    sizes = tuple(sorted({feature_frames(s) for s in seconds}))
    if sizes[0] < 1:
        raise SpeechportError(
            f"an encoder bucket of {min(seconds):g} s is too short for one feature frame",
            hint="pass longer --encoder-buckets",
        )
    features, encoded = encoder.spec.inputs[0], encoder.spec.outputs[0]
    encoder.coreml_buckets = (
        ShapeBuckets(features.name, len(features.shape) - 1, sizes, {encoded.name: output_axis})
        if len(sizes) > 1
        else None
    )
