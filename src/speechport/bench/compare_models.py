"""``bench compare`` without a bundle: random-weight models of the real sizes built on the
fly (``speechport.bench.random_models``), each with the emission settings asked for, timed
against onnx-asr and sherpa-onnx on synthetic speech of a few lengths (or the user's files).

Bundles are ONNX only (what the peers run). With a ``work_dir`` they are kept there and
reused by a later run with the same model, size and emission.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from speechport.bench.compare import PEER_PIECE_SECONDS, compare_samples, split_text
from speechport.bench.decode_loop import synthetic_speech
from speechport.bench.random_models import (
    CALIBRATION_SECONDS,
    EMISSIONS,
    RANDOM_MODELS,
    set_emission,
)
from speechport.progress import Progress

DEFAULT_SECONDS = (4.0, 60.0, 600.0)


def bench_compare_models(
    models: Sequence[str] = tuple(RANDOM_MODELS),
    emissions: Sequence[str] = EMISSIONS,
    *,
    seconds: Sequence[float] = DEFAULT_SECONDS,
    audio: list[Path] | None = None,
    size: str = "full",
    threads: int | None = None,
    runs: int = 3,
    peer_piece_seconds: float = PEER_PIECE_SECONDS,
    work_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One row per model, emission and clip (synthetic speech of each of ``seconds``, or each
    file of ``audio``): `compare_samples` on a bundle built for it."""
    progress = progress or Progress(0)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="speechport-compare-models-") as scratch:
        root = Path(work_dir) if work_dir else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        for name in models:
            for emission in emissions:
                bundle = build_bundle(name, emission, root, size=size, progress=progress)
                for label, clip in _clips(bundle, seconds, audio):
                    progress.start(f"{name} {emission}: {label}")
                    result = compare_samples(
                        bundle,
                        [label],
                        [clip],
                        threads=threads,
                        runs=runs,
                        peer_piece_seconds=peer_piece_seconds,
                    )
                    rows.append(
                        {**result, "random_model": name, "emission": emission, "audio": label}
                    )
        progress.finish()
    return {"size": size, "threads": rows[0]["threads"] if rows else threads, "rows": rows}


def build_bundle(
    name: str, emission: str, root: Path, *, size: str = "full", progress: Progress | None = None
) -> Path:
    """The ONNX bundle of random model ``name`` at ``size`` with ``emission`` under ``root``
    (reused when it is there)."""
    from speechport.export.bundle import write_bundle

    bundle = root / f"{name}-{size}-{emission}"
    if (bundle / "speechport.json").is_file():
        return bundle
    if progress is not None:
        progress.start(f"build {name} ({size}, {emission} emission) and export to ONNX")
    model = RANDOM_MODELS[name]
    loaded = model.build(root, size, 0)
    plan = model.plan(loaded)
    calibration = synthetic_speech(CALIBRATION_SECONDS, plan.sample_rate, seed=1)
    shift, rate = set_emission(model, loaded, plan, emission, calibration)
    if progress is not None:
        progress.start(
            f"blank's bias +{shift:.3g}: {rate:.1f} tokens/s on {CALIBRATION_SECONDS:g} s of "
            "synthetic speech in torch"
        )
    write_bundle(plan, loaded, bundle, formats=["onnx"], overwrite=True)
    return bundle


def _clips(
    bundle: Path, seconds: Sequence[float], audio: list[Path] | None
) -> list[tuple[str, np.ndarray]]:
    """(label, samples at the bundle's rate) of each clip to time."""
    from speechport.audio import collect_audio, load_audio
    from speechport.manifest import read_manifest

    rate = read_manifest(bundle).sample_rate
    if audio:
        return [(str(f), load_audio(f, sample_rate=rate).samples) for f in collect_audio(audio)]
    return [(f"{s:g} s synthetic", synthetic_speech(s, rate)) for s in seconds]


def table(result: dict[str, Any]) -> list[str]:
    """One line per row: RTFx of each engine, speechport's speed against each peer (> 1:
    faster), the transcripts' agreement, speechport's split and emission rate."""
    lines = [
        f"random-weight models ({result['size']} size), {result['threads']} threads",
        f"{'model':<13} {'emission':<10} {'audio':<16} {'RTFx sp / onnx-asr / sherpa':>28}  "
        f"{'sp speed vs':>18}  agree  tok/s  split; load",
    ]
    for row in result["rows"]:
        engines = {e["engine"]: e for e in row["engines"]}
        rtfx = " / ".join(_fmt(engines[n].get("rtfx")) for n in engines)
        speed, agree = [], []
        for n in ("onnx-asr", "sherpa-onnx"):
            ratio = engines[n].get("speechport_time_ratio")
            speed.append("-" if not ratio else f"{1 / ratio:.2f}x")
            agree.append(engines[n].get("transcripts_agree", "-"))
        load = row["load_average"]
        lines.append(
            f"{row['random_model']:<13} {row['emission']:<10} {row['audio']:<16} {rtfx:>28}  "
            f"{' / '.join(speed):>18}  {' '.join(agree):<5}  {row['tokens_per_second']:>5}  "
            f"{split_text(row['speechport_split'])}; {load[0]}-{load[1]}"
        )
        for n, e in engines.items():
            if "skipped" in e:
                lines.append(f"    {n}: {e['skipped']}")
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
