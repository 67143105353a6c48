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
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechport.environment import host_info, package_versions
from speechport.errors import GateError, SpeechportError
from speechport.export.card import render_card
from speechport.fsutil import atomic_directory, atomic_write_text, path_size
from speechport.manifest import MANIFEST_NAME, Manifest, is_length, read_manifest
from speechport.metrics import character_error_rate
from speechport.progress import Progress
from speechport.quantize.apply import compress_package
from speechport.quantize.strategies import (
    DEFAULT_WEIGHT_THRESHOLD,
    IOS18,
    Recipe,
    parse_recipes,
)

SUMMARY_FILE = "quantization_summary.json"
VARIANTS_DIR = "variants"
ENGINE_BACKEND = "coreml"
_NOT_COPIED = {MANIFEST_NAME, "README.md", "verify"}  # rewritten for every variant


@dataclass
class ComponentResult:
    role: str
    name: str
    path: str
    strategy: str | None
    bytes: int
    baseline_bytes: int
    convert_seconds: float = 0.0
    compressed_tensors: int = 0
    retargeted: bool = False
    quality: float | None = None  # 1 - ‖Δ‖/‖ref‖ of the main output, worst file
    cosine: float | None = None
    latency_ms: float | None = None  # warm median under the engine
    note: str | None = None

    @property
    def ratio(self) -> float:
        return self.baseline_bytes / self.bytes if self.bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class VariantResult:
    name: str
    recipe: dict[str, Any]
    bundle: str
    components: list[ComponentResult]
    engine: str = ""
    passed: bool | None = None  # the gate (None: no audio to score on)
    failures: list[str] = field(default_factory=list)
    files: int = 0
    token_exact_files: int = 0
    token_agreement: float | None = None
    cer: float | None = None
    max_prob_diff: float | None = None
    segments_equal: bool | None = None
    rtfx: float | None = None

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.components)

    @property
    def baseline_bytes(self) -> int:
        return sum(c.baseline_bytes for c in self.components)

    @property
    def ratio(self) -> float:
        return self.baseline_bytes / self.bytes if self.bytes else 0.0

    @property
    def convert_seconds(self) -> float:
        return sum(c.convert_seconds for c in self.components)

    def quality(self) -> float | None:
        """The end-to-end figure the ranking and the Pareto front use (higher is better)."""
        if self.token_agreement is not None:
            return self.token_agreement
        if self.max_prob_diff is not None:
            return 1.0 - self.max_prob_diff
        return None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["components"] = [c.to_dict() for c in self.components]
        out.update(
            bytes=self.bytes,
            baseline_bytes=self.baseline_bytes,
            ratio=self.ratio,
            convert_seconds=self.convert_seconds,
        )
        return out


@dataclass
class QuantizeSummary:
    bundle: str
    task: str
    reference: str | None
    audio: list[str]
    engine: str
    weight_threshold: int
    gate: dict[str, float]
    variants: list[VariantResult]
    ranking: list[str] = field(default_factory=list)
    pareto: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    emitted: str | None = None
    host: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise SpeechportError(
            f"no variant {name!r} in this sweep",
            hint=f"variants: {', '.join(v.name for v in self.variants)}",
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["variants"] = [v.to_dict() for v in self.variants]
        return out


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
    roles = coreml_roles(manifest, bundle)
    names = {name: role for role, name in roles.items()}
    recipes = parse_recipes(strategies, roles=list(roles), names=names, only=components)
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
        engine="",
        weight_threshold=weight_threshold,
        gate={"max_cer": max_cer} if manifest.task != "vad" else {"max_prob_diff": max_prob_diff},
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
        if audio:
            progress.start(f"{recipe.name}: verify on {len(audio)} file(s) with the Core ML engine")
            _score(variant, target, audio, checkpoint, max_cer, max_prob_diff, latency_runs)
        else:
            progress.start(f"{recipe.name}: run every component once on silence")
            _smoke(variant, target)
        summary.engine = summary.engine or variant.engine
        summary.variants.append(variant)
        progress.note(_progress_line(variant))
        for c in variant.components:
            if c.note:
                progress.note(f"{c.name}: {c.note}")
    summary.ranking = rank(summary.variants)
    summary.pareto = pareto_front(summary.variants)
    progress.start("summary and plots")
    from speechport.quantize.plots import draw_sweep_plots

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
        from speechport.quantize.emit import emit_variant

        progress.start(f"emit {emit} as a bundle")
        summary.emitted = str(emit_variant(out, emit, overwrite=overwrite))
        write_summary(summary, out)
    progress.finish()
    return summary


def write_summary(summary: QuantizeSummary, out: Path) -> Path:
    target = out / SUMMARY_FILE
    atomic_write_text(target, json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return target


def build_variant(
    bundle: Path,
    manifest: Manifest,
    recipe: Recipe,
    target: Path,
    *,
    checkpoint: Path | None,
    weight_threshold: int,
) -> list[ComponentResult]:
    """Write ``recipe`` applied to ``bundle`` as a complete bundle at ``target``."""
    results: list[ComponentResult] = []
    with atomic_directory(target, overwrite=True) as tmp:
        replaced = {manifest.components[role].files["coreml"].path for role in recipe.per_component}
        for item in bundle.iterdir():
            if item.name not in _NOT_COPIED and item.name not in replaced:
                _link_tree(item, tmp / item.name)
        files = {}
        for role, comp in manifest.components.items():
            file = comp.files.get("coreml")
            if file is None:
                continue
            source = bundle / file.path
            chosen = recipe.per_component.get(role)
            size = path_size(source)
            result = ComponentResult(role, comp.name, file.path, None, size, size)
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
                    _link_tree(source, tmp / file.path)
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


def write_manifest(
    manifest: Manifest, directory: Path, *, final: Path, checkpoint: Path | None
) -> None:
    """The manifest and model card of a bundle assembled in ``directory`` that will live at
    ``final``: the checkpoint's relative path is recomputed from there."""
    if checkpoint is not None:
        relative = os.path.relpath(checkpoint.resolve(), final.resolve())
        provenance = {**manifest.provenance, "checkpoint_path": Path(relative).as_posix()}
        manifest = dataclasses.replace(manifest, provenance=provenance)
    (directory / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    (directory / "README.md").write_text(render_card(manifest, directory), encoding="utf-8")


def _checkpoint(manifest: Manifest, bundle: Path, reference: Path | None) -> Path | None:
    if reference is not None:
        if not Path(reference).is_file():
            raise SpeechportError(
                "reference checkpoint not found", path=reference, hint="pass --reference PATH"
            )
        return Path(reference).resolve()
    relative = manifest.provenance.get("checkpoint_path")
    if relative and (bundle / relative).is_file():
        return (bundle / relative).resolve()
    return None


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link ``source`` (a file, or every file under a directory) at ``target``; copy
    where links are not possible (another filesystem)."""
    if source.is_dir():
        target.mkdir()
        for child in source.iterdir():
            _link_tree(child, target / child.name)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _score(
    variant: VariantResult,
    bundle: Path,
    audio: list[Path],
    checkpoint: Path | None,
    max_cer: float,
    max_prob_diff: float,
    latency_runs: int,
) -> None:
    from speechport.verify.parity import verify_bundle, write_report

    report = verify_bundle(
        bundle,
        audio,
        backends=[ENGINE_BACKEND],
        checkpoint=checkpoint,
        max_cer=max_cer,
        max_prob_diff=max_prob_diff,
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
    if report.task == "vad":
        variant.max_prob_diff = max(f.details["max_abs_prob_diff"] for f in report.files)
        variant.segments_equal = all(f.details["segments_equal"] for f in report.files)
    else:
        details = [f.details for f in report.files]
        variant.token_exact_files = sum(bool(d["token_exact"]) for d in details)
        tokens = sum(d["tokens"] for d in details)
        variant.token_agreement = (
            sum(d["token_agreement"] * d["tokens"] for d in details) / tokens
            if tokens
            else float(np.mean([d["token_agreement"] for d in details]))
        )
        chars = sum(len(d["reference_text"]) for d in details)
        variant.cer = (
            sum(
                character_error_rate(d["reference_text"], d["text"]) * len(d["reference_text"])
                for d in details
            )
            / chars
            if chars
            else 0.0
        )
    by_role = {c.role: c for c in variant.components}
    for entry in report.components:
        for c in entry["components"]:
            result = by_role.get(c["role"])
            stats = _main_output(c["outputs"])
            if result is None or stats is None:
                continue
            quality = 1.0 - float(stats["rel_l2"])
            result.quality = quality if result.quality is None else min(result.quality, quality)
            cosine = float(stats["cosine"])
            result.cosine = cosine if result.cosine is None else min(result.cosine, cosine)
    latency = report.latency.get(ENGINE_BACKEND, {})
    for result in variant.components:
        if result.name in latency:
            result.latency_ms = latency[result.name]["median_ms"]


def _main_output(outputs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The first float output (the component's result; lengths and decisions are integer)."""
    return next((s for s in outputs.values() if not s["integer"]), None)


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


def rank(variants: list[VariantResult]) -> list[str]:
    """Best first: variants that pass the gate, then by end-to-end quality, then CER, then
    size (the smaller wins a tie)."""

    def key(v: VariantResult) -> tuple[float, float, float, int]:
        quality = v.quality()
        return (
            0.0 if v.passed in (True, None) else 1.0,
            -(quality if quality is not None else 0.0),
            v.cer if v.cer is not None else 0.0,
            v.bytes,
        )

    return [v.name for v in sorted(variants, key=key)]


def pareto_front(variants: list[VariantResult]) -> list[str]:
    """Variants no other beats on both size (smaller) and end-to-end quality (higher); by
    size when nothing was scored."""
    scored = [v for v in variants if v.quality() is not None]
    if not scored:
        return [min(variants, key=lambda v: v.bytes).name] if variants else []
    front = []
    for v in scored:
        q = v.quality() or 0.0
        dominated = any(
            (o.bytes <= v.bytes and (o.quality() or 0.0) >= q)
            and (o.bytes < v.bytes or (o.quality() or 0.0) > q)
            for o in scored
        )
        if not dominated:
            front.append(v.name)
    return sorted(front, key=lambda n: next(v.bytes for v in scored if v.name == n))


def _recipe_text(recipe: Recipe) -> str:
    if recipe.is_baseline:
        return "nothing (the bundle as it is)"
    return ", ".join(f"{role} {s.name}" for role, s in recipe.per_component.items())


def _progress_line(v: VariantResult) -> str:
    text = f"{v.bytes / 1e6:.2f} MB ({v.ratio:.2f}x)"
    if v.token_agreement is not None:
        text += (
            f", token agreement {v.token_agreement:.4f}, CER {v.cer:.4f}, "
            f"{v.token_exact_files}/{v.files} files token-exact"
        )
    if v.max_prob_diff is not None:
        text += f", max |dp| {v.max_prob_diff:.2e}"
    return text
