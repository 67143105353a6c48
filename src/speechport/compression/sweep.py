"""``speechport quantize``: compress a bundle's Core ML components with many strategies and
score every variant on what users hear.

Each variant is a complete bundle (``OUT/variants/NAME``: the compressed packages, every
other file hard-linked from the source bundle, a manifest that records the compression)
and is scored with ``verify`` against the fp32 torch reference on the audio set:

- per component, on the reference's own inputs: quality ``1 - ‖Δ‖/‖ref‖`` and cosine of
  its main output (the worst file counts), warm latency;
- end to end: files token-exact, token agreement (``1 - token edits / reference tokens``,
  token-weighted over the files) and CER against the reference transcripts (VAD: the
  largest probability difference and whether the speech segments are equal);
- size on disk per component and in total, ratio against the source bundle's packages,
  conversion time.

The baseline (the source bundle's packages as they are) is scored the same way. Without
audio, every variant is still built, sized and run once on silence (it must run).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from speechport.compression.apply import compress_package
from speechport.compression.layout import NOT_COPIED, VARIANTS_DIR, link_tree, write_manifest
from speechport.compression.results import (
    CompressedComponent,
    QuantizeSummary,
    VariantResult,
    pareto_front,
    rank,
    write_summary,
)
from speechport.compression.strategies import (
    DEFAULT_WEIGHT_THRESHOLD,
    FRONT_END_KINDS,
    IOS18,
    Recipe,
    parse_recipes,
)
from speechport.environment import host_info, package_versions
from speechport.errors import GateError, SpeechportError
from speechport.fsutil import atomic_directory, path_size
from speechport.manifest import Manifest, is_length, read_manifest
from speechport.progress import Progress
from speechport.tasks import GateLimits, Task, get_task, task_for

ENGINE_BACKEND = "coreml"


def coreml_roles(manifest: Manifest, bundle: Path) -> dict[str, str]:
    """Role -> component name of every component with a Core ML file."""
    roles = {r: c.name for r, c in manifest.components.items() if "coreml" in c.files}
    if not roles:
        raise SpeechportError(
            "the bundle has no Core ML components to compress",
            path=bundle,
            hint="convert it with --format coreml (or coreml,onnx)",
        )
    return roles


def quantize_sweep(
    bundle: Path,
    out: Path,
    *,
    strategies: str | None = None,
    components: list[str] | None = None,
    audio: list[Path] | None = None,
    reference: Path | None = None,
    weight_threshold: int = DEFAULT_WEIGHT_THRESHOLD,
    max_cer: float = 0.0,
    max_prob_diff: float = 1e-3,
    max_spectral_convergence: float = 0.05,
    max_f0_diff: float = 1e-3,
    texts: list[str] | None = None,
    latency_runs: int = 5,
    emit: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> QuantizeSummary:
    """Build and score every recipe of ``strategies`` (see ``strategies.py``); write
    ``OUT/quantization_summary.json`` and its plots; with ``emit``, copy that variant to
    ``OUT/EMIT`` as a bundle of its own if it passes the gate (``GateError`` if not, after
    the summary is written). Returns the summary."""
    bundle, out = Path(bundle), Path(out)
    manifest = read_manifest(bundle)
    task = task_for(manifest, bundle)
    roles = coreml_roles(manifest, bundle)
    names = {name: role for role, name in roles.items()}
    front_ends = [r for r in roles if manifest.components[r].kind in FRONT_END_KINDS]
    recipes = parse_recipes(
        strategies, roles=list(roles), names=names, only=components, front_ends=front_ends
    )
    if emit is not None and emit not in {r.name for r in recipes}:
        raise SpeechportError(
            f"--emit {emit!r} is not one of the variants this sweep builds",
            hint=f"variants: {', '.join(r.name for r in recipes)}",
        )
    audio = list(audio or [])
    checkpoint = _checkpoint(manifest, bundle, reference)
    progress = progress or Progress(2 * len(recipes) + 1 + (emit is not None))
    summary = QuantizeSummary(
        bundle=str(bundle),
        task=manifest.task,
        reference=str(checkpoint) if checkpoint else None,
        audio=[str(a) for a in audio],
        texts=list(texts or []),
        engine="",
        weight_threshold=weight_threshold,
        gate=task.gates(GateLimits(max_cer, max_prob_diff, max_spectral_convergence, max_f0_diff)),
        variants=[],
        host=host_info(),
        versions=package_versions(("coremltools", "numpy", "torch", "onnxruntime")),
    )
    out.mkdir(parents=True, exist_ok=True)
    for recipe in recipes:
        target = out / VARIANTS_DIR / recipe.name
        progress.start(f"{recipe.name}: compress {_recipe_text(recipe)}")
        results = build_variant(
            bundle,
            manifest,
            recipe,
            target,
            checkpoint=checkpoint,
            weight_threshold=weight_threshold,
        )
        variant = VariantResult(recipe.name, recipe.to_dict(), str(target), results)
        if audio or texts or task.verifies_by_default:
            what = f"{len(audio)} file(s)" if audio else f"{len(texts or []) or 'built-in'} text(s)"
            progress.start(f"{recipe.name}: verify on {what} with the Core ML engine")
            limits = GateLimits(max_cer, max_prob_diff, max_spectral_convergence, max_f0_diff)
            _score(variant, target, audio, texts or [], checkpoint, limits, latency_runs)
        else:
            progress.start(f"{recipe.name}: run every component once on silence")
            _smoke(variant, target)
        summary.engine = summary.engine or variant.engine
        summary.variants.append(variant)
        progress.note(_progress_line(variant, task))
        for c in variant.components:
            if c.note:
                progress.note(f"{c.name}: {c.note}")
    summary.ranking = rank(summary.variants)
    summary.pareto = pareto_front(summary.variants)
    progress.start("summary and plots")
    from speechport.compression.plots import draw_sweep_plots

    summary.plots = [p.relative_to(out).as_posix() for p in draw_sweep_plots(summary, out)]
    write_summary(summary, out)
    if emit is not None:
        chosen = summary.variant(emit)
        if chosen.passed is False:
            raise GateError(
                f"variant {emit} failed the gate, so it was not emitted: "
                + " | ".join(chosen.failures),
                path=out / emit,
                hint="choose a variant that passes (see the ranking), or loosen the gate "
                "(--max-cer) if that loss is acceptable",
            )
        from speechport.compression.emit import emit_variant

        progress.start(f"emit {emit} as a bundle")
        summary.emitted = str(emit_variant(out, emit, overwrite=overwrite))
        write_summary(summary, out)
    progress.finish()
    return summary


def build_variant(
    bundle: Path,
    manifest: Manifest,
    recipe: Recipe,
    target: Path,
    *,
    checkpoint: Path | None,
    weight_threshold: int,
) -> list[CompressedComponent]:
    """Write ``recipe`` applied to ``bundle`` as a complete bundle at ``target``."""
    results: list[CompressedComponent] = []
    with atomic_directory(target, overwrite=True) as tmp:
        replaced = {manifest.components[role].files["coreml"].path for role in recipe.per_component}
        for item in bundle.iterdir():
            if item.name not in NOT_COPIED and item.name not in replaced:
                link_tree(item, tmp / item.name)
        files = {}
        for role, comp in manifest.components.items():
            file = comp.files.get("coreml")
            if file is None:
                continue
            source = bundle / file.path
            chosen = recipe.per_component.get(role)
            size = path_size(source)
            result = CompressedComponent(role, comp.kind, comp.name, file.path, None, size, size)
            if chosen is not None:
                done = compress_package(
                    source, tmp / file.path, chosen, weight_threshold=weight_threshold
                )
                result.strategy = chosen.name
                result.convert_seconds = done.seconds
                if done.compressed_tensors:
                    result.compressed_tensors = done.compressed_tensors
                    result.retargeted = done.retargeted
                    files[role] = dataclasses.replace(file, compression=chosen.name)
                else:  # nothing fitted (e.g. no dimension divisible by the block size)
                    shutil.rmtree(tmp / file.path)
                    link_tree(source, tmp / file.path)
                    result.note = f"no tensor fits {chosen.name}; left as it was"
                result.bytes = path_size(tmp / file.path)
            results.append(result)
        components = {
            role: dataclasses.replace(c, files={**c.files, "coreml": files[role]})
            if role in files
            else c
            for role, c in manifest.components.items()
        }
        provenance = dict(manifest.provenance)
        provenance["compression"] = (
            None
            if recipe.is_baseline
            else {
                "recipe": recipe.to_dict(),
                "weight_threshold": weight_threshold,
                "tool": f"coremltools {package_versions(('coremltools',)).get('coremltools')}",
                "source_precision": manifest.provenance.get("precision", {}).get("coreml"),
                "components": {r.role: r.to_dict() for r in results if r.compressed_tensors},
                "needs": IOS18 if any(r.retargeted for r in results) else None,
            }
        )
        variant = dataclasses.replace(manifest, components=components, provenance=provenance)
        write_manifest(variant, tmp, final=target, checkpoint=checkpoint)
    return results


def _checkpoint(manifest: Manifest, bundle: Path, reference: Path | None) -> Path | None:
    if reference is not None:
        if not Path(reference).is_file():
            raise SpeechportError(
                "reference checkpoint not found", path=reference, hint="pass --reference PATH"
            )
        return Path(reference).resolve()
    relative: str | None = manifest.provenance.get("checkpoint_path")
    if relative and (bundle / relative).is_file():
        return (bundle / relative).resolve()
    return None


def _score(
    variant: VariantResult,
    bundle: Path,
    audio: list[Path],
    texts: list[str],
    checkpoint: Path | None,
    limits: GateLimits,
    latency_runs: int,
) -> None:
    from speechport.parity.run import verify_bundle, write_report

    report = verify_bundle(
        bundle,
        audio,
        backends=[ENGINE_BACKEND],
        checkpoint=checkpoint,
        max_cer=limits.max_cer,
        max_prob_diff=limits.max_prob_diff,
        max_spectral_convergence=limits.max_spectral_convergence,
        max_f0_diff=limits.max_f0_diff,
        texts=texts,
        latency_runs=latency_runs,
        label=variant.name,
        time_reference=False,
    )
    write_report(report, bundle)
    variant.engine = report.engines.get(ENGINE_BACKEND, "")
    variant.passed = report.passed
    variant.failures = report.failures()
    variant.files = len(report.files)
    variant.rtfx = report.rtfx.get(ENGINE_BACKEND)
    get_task(report.task).score_variant(variant, report)
    by_role = {c.role: c for c in variant.components}
    for entry in report.components:
        for c in entry.components:
            result = by_role.get(c.role)
            stats = c.main_output
            if result is None or stats is None:
                continue
            quality = 1.0 - float(stats.rel_l2)
            result.quality = quality if result.quality is None else min(result.quality, quality)
            cosine = float(stats.cosine)
            result.cosine = cosine if result.cosine is None else min(result.cosine, cosine)
    latency = report.latency.get(ENGINE_BACKEND, {})
    for result in variant.components:
        if result.name in latency:
            result.latency_ms = latency[result.name].median_ms


def _smoke(variant: VariantResult, bundle: Path) -> None:
    """Run every Core ML component once on zeros (full-length inputs) and time it."""
    import time

    from speechport.runtime import load_bundle

    loaded = load_bundle(bundle, ENGINE_BACKEND)
    variant.engine = loaded.engine
    for result in variant.components:
        component = loaded.component(result.role)
        inputs = component.spec.inputs
        frames = inputs[0].shape[-1] if inputs and inputs[0].shape else 1
        feeds = [
            np.full(t.shape, frames, dtype=np.dtype(t.dtype))
            if is_length(t.name)
            else np.zeros(t.shape, dtype=np.dtype(t.dtype))
            for t in inputs
        ]
        start = time.perf_counter()
        component(*feeds)
        result.latency_ms = (time.perf_counter() - start) * 1e3


def _recipe_text(recipe: Recipe) -> str:
    if recipe.is_baseline:
        return "nothing (the bundle as it is)"
    return ", ".join(f"{role} {s.name}" for role, s in recipe.per_component.items())


def _progress_line(v: VariantResult, task: Task) -> str:
    return f"{v.bytes / 1e6:.2f} MB ({v.ratio:.2f}x)" + task.variant_text(v)
