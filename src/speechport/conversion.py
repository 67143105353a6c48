"""``convert``: checkpoint -> family -> components -> bundle, with progress."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechport.errors import CheckpointError, SpeechportError
from speechport.export.bundle import parse_formats, write_bundle
from speechport.families import get_family
from speechport.manifest import Manifest
from speechport.progress import Progress

if TYPE_CHECKING:
    from speechport.parity.report import ParityReport
    from speechport.parity.run import Gate

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
    gate: Gate | None = None,
    on_report: Callable[[ParityReport], None] | None = None,
    progress: Progress | None = None,
    plan_options: Mapping[str, Any] | None = None,
) -> Manifest:
    """Convert ``checkpoint`` of ``family_name`` into a bundle at ``out`` (``checkpoint``
    None: the family's default source, where it has one). With ``gate``, the new bundle is
    verified before it is renamed into place and is not kept if it fails."""
    family = get_family(family_name)
    chosen = parse_formats(formats)
    if window_seconds is not None and not 0 < window_seconds <= MAX_WINDOW_SECONDS:
        raise SpeechportError(
            f"--window must be a number of seconds in (0, {MAX_WINDOW_SECONDS:g}], "
            f"got {window_seconds}"
        )
    from speechport.fsutil import check_writable

    check_writable(Path(out))
    progress = progress if progress is not None else Progress(0, quiet=quiet)
    progress.start(f"load {checkpoint or 'the installed package weights'}")
    loaded = family.load(None if checkpoint is None else Path(checkpoint), tokenizer=tokenizer)
    for note in loaded.notes:
        progress.note(note)
    _check_finite_weights(loaded.model, checkpoint)
    options = {k: v for k, v in dict(plan_options or {}).items() if v is not None}
    plan = family.plan(loaded, window_seconds=window_seconds, **options)
    plan.options = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
    exports = sum(len(set(c.formats) & set(chosen)) for c in plan.components)
    progress.total = 2 + exports + (gate is not None)
    check = None
    if gate is not None:
        from speechport.parity.run import gate_check

        check = gate_check(gate, Path(out), on_report=on_report, progress=progress)
    manifest = write_bundle(
        plan,
        loaded,
        Path(out),
        formats=chosen,
        precision=precision,
        overwrite=overwrite,
        progress=progress,
        check=check,
    )
    progress.finish(f"bundle {out}")
    return manifest


def _check_finite_weights(model: object, checkpoint: Path | None) -> None:
    """Refuse NaN or infinite weights, naming the first tensor that holds one: they convert
    and even pass a parity check against the same broken reference, then output garbage."""
    import torch

    assert isinstance(model, torch.nn.Module)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            nans = int(torch.isnan(tensor).sum())
            infs = int(torch.isinf(tensor).sum())
            raise CheckpointError(
                f"tensor {name!r} holds {nans} NaN and {infs} infinite values",
                path=checkpoint,
                component="state_dict",
                hint="the checkpoint is corrupt or was saved from a diverged training run",
            )
