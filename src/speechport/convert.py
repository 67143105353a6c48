"""``convert``: checkpoint -> family -> components -> bundle, with progress."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from speechport.errors import SpeechportError
from speechport.export.bundle import parse_formats, write_bundle
from speechport.families import get_family
from speechport.manifest import Manifest
from speechport.progress import Progress

MAX_WINDOW_SECONDS = 3600.0


def convert(
    family_name: str,
    checkpoint: Path | None,
    out: Path,
    *,
    tokenizer: Path | None = None,
    formats: str | Sequence[str] = ("coreml", "onnx"),
    precision: str = "fp16",
    window_seconds: float | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> Manifest:
    """Convert ``checkpoint`` of ``family_name`` into a bundle at ``out`` (``checkpoint``
    None: the family's default source, where it has one)."""
    family = get_family(family_name)
    chosen = parse_formats(formats)
    if window_seconds is not None and not 0 < window_seconds <= MAX_WINDOW_SECONDS:
        raise SpeechportError(
            f"--window must be a number of seconds in (0, {MAX_WINDOW_SECONDS:g}], "
            f"got {window_seconds}"
        )
    progress = Progress(0, quiet=quiet)
    progress.start(f"load {checkpoint or 'the installed package weights'}")
    loaded = family.load(None if checkpoint is None else Path(checkpoint), tokenizer=tokenizer)
    for note in loaded.notes:
        progress.note(note)
    plan = family.plan(loaded, window_seconds=window_seconds)
    progress.total = 2 + sum(len(set(c.formats) & set(chosen)) for c in plan.components)
    manifest = write_bundle(
        plan,
        loaded,
        Path(out),
        formats=chosen,
        precision=precision,
        overwrite=overwrite,
        progress=progress,
    )
    progress.finish(f"bundle {out}")
    return manifest
