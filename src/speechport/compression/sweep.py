"""``speechport quantize``: compress a bundle's Core ML components with many strategies and
score every variant on what users hear.

Each variant is a complete bundle (``OUT/variants/NAME``: the compressed packages, every
other file hard-linked from the source bundle, a manifest that records the compression)
and is scored with ``verify`` against the fp32 torch reference on the audio set:

- per component, on the reference's own inputs: quality ``1 - ‖Δ‖/‖ref‖`` and cosine of
  its main output (the worst file counts), warm latency (from the scoring's own calls);
- end to end: files token-exact, token agreement (``1 - token edits / reference tokens``,
  token-weighted over the files) and CER against the reference transcripts (VAD: the
  largest probability difference and whether the speech segments are equal);
- size on disk per component and in total, ratio against the source bundle's packages,
  conversion time.

The baseline (the source bundle's packages as they are) is scored the same way, first: the
torch reference's outputs it computes are kept (``ReferenceCache``) and read by every other
variant. A variant stops being scored at its first file that fails the gate. Without
audio, every variant is still built, sized and run once on silence (it must run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechport.compression.apply import compress_package
from speechport.compression.cache import PackageCache
from speechport.compression.layout import (
    NOT_COPIED,
    PACKAGES_DIR,
    VARIANTS_DIR,
    link_tree,
    write_manifest,
)
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
    Strategy,
    parse_recipes,
)
from speechport.environment import host_info, package_versions, usable_cores
from speechport.errors import GateError, SpeechportError
from speechport.fsutil import atomic_directory, path_size
from speechport.manifest import Manifest, is_length, read_manifest
from speechport.parity.reference import ReferenceCache
from speechport.progress import Progress
from speechport.runtime.blas import blas_on_one_thread, one_blas_thread
from speechport.tasks import DEFAULT_LIMITS, GateLimits, Task, get_task, task_for

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


@dataclass(frozen=True)
class Scoring:
    """How every variant of a sweep is built and scored (the same for all of them)."""

    audio: tuple[Path, ...]
    checkpoint: Path | None
    weight_threshold: int
    limits: GateLimits
    latency_runs: int
    texts: tuple[str, ...] = ()
    verified: bool = False  # scored by verify (audio, texts, or the task's own inputs)
    keywords: str | None = None
    packages: PackageCache | None = None  # compressed packages shared by the recipes

    def inputs_text(self) -> str:
        """What verify runs on, for progress lines."""
        if self.audio:
            return f"{len(self.audio)} file(s)"
        return f"{len(self.texts) or 'built-in'} text(s)"


def quantize_sweep(
    bundle: Path,
    out: Path,
    *,
    strategies: str | None = None,
    components: list[str] | None = None,
    audio: list[Path] | None = None,
    reference: Path | None = None,
    weight_threshold: int = DEFAULT_WEIGHT_THRESHOLD,
    limits: GateLimits = DEFAULT_LIMITS,
    keywords: str | None = None,
    texts: list[str] | None = None,
    latency_runs: int = 5,
    emit: str | None = None,
    overwrite: bool = False,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> QuantizeSummary:
    """Build and score every recipe of ``strategies`` (see ``strategies.py``); write
    ``OUT/quantization_summary.json`` and its plots; with ``emit``, copy that variant to
    ``OUT/EMIT`` as a bundle of its own if it passes the gate (``GateError`` if not, after
    the summary is written). Returns the summary.

    The torch reference runs once per sweep: the first variant (the baseline) is scored
    first and fills a ``ReferenceCache`` that every other variant reads. A variant stops
    being scored as soon as its gate cannot be met (at the first failing file, unless the
    gate allows a share of files to differ: keyword spotting's ``limits.min_agreement``). Each
    component is compressed once per strategy (``PackageCache``) and hard-linked into every
    variant that uses it; numpy's BLAS and torch (the reference) run on one thread
    (``one_blas_thread``, ``_one_torch_thread``). ``jobs`` worker processes (default: the
    usable cores) build and score the variants side by side (``_in_workers``); the figures
    are the ones a single process gives, except timings (latency, RTFx, conversion
    seconds), which share the cores."""
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
    if jobs is not None and jobs < 1:
        raise SpeechportError(f"--jobs must be at least 1, not {jobs}")
    audio = list(audio or [])
    checkpoint = _checkpoint(manifest, bundle, reference)
    scoring = Scoring(
        tuple(audio),
        checkpoint,
        weight_threshold,
        limits,
        latency_runs,
        tuple(texts or ()),
        verified=bool(audio or texts or task.verifies_by_default),
        keywords=keywords,
        packages=PackageCache(out / PACKAGES_DIR),
    )
    workers = min(jobs or usable_cores(), len(recipes) - 1)
    steps = 1 + len(recipes) if workers > 1 else 2 * len(recipes)
    progress = progress or Progress(steps + 1 + (emit is not None))
    summary = QuantizeSummary(
        bundle=str(bundle),
        task=manifest.task,
        reference=str(checkpoint) if checkpoint else None,
        audio=[str(a) for a in audio],
        texts=list(texts or []),
        engine="",
        weight_threshold=weight_threshold,
        gate=task.gates(scoring.limits),
        variants=[],
        host=host_info(),
        versions=package_versions(("coremltools", "numpy", "torch", "onnxruntime")),
    )
    out.mkdir(parents=True, exist_ok=True)
    cache = ReferenceCache(bundle, checkpoint) if scoring.verified else None
    targets = {r.name: out / VARIANTS_DIR / r.name for r in recipes}

    def done(variant: VariantResult) -> None:
        summary.engine = summary.engine or variant.engine
        progress.note(_progress_line(variant, task))
        if variant.stopped:
            progress.note(f"stopped: {variant.stopped}")
        for c in variant.components:
            if c.note:
                progress.note(f"{c.name}: {c.note}")

    assert scoring.packages is not None
    scoring.packages.clear()  # what a killed sweep left
    try:
        with one_blas_thread():
            if workers > 1:
                baseline, variants = _in_workers(
                    bundle, manifest, recipes, targets, scoring, cache, workers, progress, done
                )
            else:
                with _one_torch_thread():  # the baseline first: it fills the reference
                    results = []
                    for recipe in recipes:
                        target = targets[recipe.name]
                        results.append(
                            make_variant(bundle, manifest, recipe, target, scoring, cache, progress)
                        )
                        done(results[-1])
                    baseline, *variants = results
    except BaseException:
        scoring.packages.clear()
        raise
    # The variants hold hard links to what they use: the cache is removed while the plots
    # are drawn (file system calls, which leave the interpreter to the drawing).
    clearing = threading.Thread(target=scoring.packages.clear)
    clearing.start()
    try:
        summary.variants = [baseline, *variants]
        summary.ranking = rank(summary.variants)
        summary.pareto = pareto_front(summary.variants)
        progress.start("summary and plots")
        from speechport.compression.plots import draw_sweep_plots

        summary.plots = [p.relative_to(out).as_posix() for p in draw_sweep_plots(summary, out)]
        write_summary(summary, out)
    finally:
        clearing.join()
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


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch's intra-op pool on one thread inside the block (restored after), as numpy's
    BLAS: the reference then gives the same figures on any number of cores, and it does not
    spin threads on the cores the worker processes use (the test GigaAM's default sweep: 2 s
    less CPU in all). torch is imported here if installed; coremltools imports it anyway."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_variant(
    bundle: Path,
    manifest: Manifest,
    recipe: Recipe,
    target: Path,
    scoring: Scoring,
    reference: ReferenceCache | None,
    progress: Progress | None = None,
) -> VariantResult:
    """Build one variant at ``target`` and score it (on silence without audio)."""
    if progress is not None:
        progress.start(f"{recipe.name}: compress {_recipe_text(recipe)}")
    results = build_variant(
        bundle,
        manifest,
        recipe,
        target,
        checkpoint=scoring.checkpoint,
        weight_threshold=scoring.weight_threshold,
        packages=scoring.packages,
    )
    variant = VariantResult(recipe.name, recipe.to_dict(), str(target), results)
    if scoring.verified:
        assert reference is not None
        if progress is not None:
            progress.start(
                f"{recipe.name}: verify on {scoring.inputs_text()} with the Core ML engine"
            )
        _score(variant, target, scoring, reference)
    else:
        if progress is not None:
            progress.start(f"{recipe.name}: run every component once on silence")
        _smoke(variant, target)
    return variant


def _in_workers(
    bundle: Path,
    manifest: Manifest,
    recipes: list[Recipe],
    targets: dict[str, Path],
    scoring: Scoring,
    reference: ReferenceCache | None,
    workers: int,
    progress: Progress,
    done: Callable[[VariantResult], None],
) -> tuple[VariantResult, list[VariantResult]]:
    """Every recipe made and scored in ``workers`` processes; results in the order of
    ``recipes``, the baseline first.

    One worker scores the baseline first, which fills the reference; meanwhile and after,
    the workers make every compressed package the other recipes use, the longest first
    (``PackageCache.make_in``). A recipe is then scored (with that reference) once its
    packages exist, so no two processes make the same one and the cores end together.
    This process imports neither coremltools nor torch: each worker imports them (side by
    side, on the cores this process would leave idle while importing them), and this
    process then ends without tearing them down (close to a second)."""
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    from speechport.compression.plots import import_matplotlib

    assert scoring.packages is not None
    first, *rest = recipes
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=worker_context(),
        initializer=_start_worker,
        initargs=(scoring.packages,),
    ) as pool:
        try:
            progress.start(f"{first.name}: {_recipe_text(first)}, in a worker process")
            first_args = (bundle, first, targets[first.name], scoring, reference)
            scored_first = pool.submit(_worker_baseline, *first_args)
            making = scoring.packages.make_in(
                pool,
                _packages_wanted(bundle, manifest, rest),
                weight_threshold=scoring.weight_threshold,
            )
            import_matplotlib()  # while the workers run, not after them
            baseline, reference = scored_first.result()
            done(baseline)
            progress.start(f"{len(rest)} variants in {workers} worker processes")
            needs = {
                r.name: [making[p] for p in _packages_wanted(bundle, manifest, [r])] for r in rest
            }
            scoring_now: dict[Future[VariantResult], str] = {}
            results: dict[str, VariantResult] = {}
            while needs or scoring_now:
                ready = [
                    r for r in rest if r.name in needs and all(f.done() for f in needs[r.name])
                ]
                for recipe in ready:  # its packages exist (or could not be made)
                    del needs[recipe.name]
                    args = (bundle, recipe, targets[recipe.name], scoring, reference)
                    scoring_now[pool.submit(_worker_variant, *args)] = recipe.name
                pending: set[Future[Any]] = {f for n in needs.values() for f in n if not f.done()}
                finished, _ = wait(pending | set(scoring_now), return_when=FIRST_COMPLETED)
                for future in [f for f in scoring_now if f in finished]:
                    variant = future.result()
                    results[scoring_now.pop(future)] = variant
                    progress.advance(f"{variant.name}: compressed and scored")
                    done(variant)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return baseline, [results[r.name] for r in rest]


def worker_context() -> Any:
    """How a sweep starts its worker processes: forked on Linux (the parent's imports come
    along), spawned elsewhere (fork is unsafe with macOS frameworks)."""
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def _start_worker(packages: PackageCache) -> None:
    from speechport import interrupts
    from speechport.compression.apply import import_compression

    interrupts.install()
    packages.use_for_temporary_files()
    import_compression()
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(1)  # for the worker's life, as _one_torch_thread
    blas_on_one_thread()  # for the worker's life (a forked one inherits it too)


def _worker_baseline(
    bundle: Path,
    recipe: Recipe,
    target: Path,
    scoring: Scoring,
    reference: ReferenceCache | None,
) -> tuple[VariantResult, ReferenceCache | None]:
    """The baseline, and the reference its scoring filled (for every other recipe)."""
    return _worker_variant(bundle, recipe, target, scoring, reference), reference


def _worker_variant(
    bundle: Path,
    recipe: Recipe,
    target: Path,
    scoring: Scoring,
    reference: ReferenceCache | None,
) -> VariantResult:
    manifest = read_manifest(bundle)
    return make_variant(bundle, manifest, recipe, target, scoring, reference)


def build_variant(
    bundle: Path,
    manifest: Manifest,
    recipe: Recipe,
    target: Path,
    *,
    checkpoint: Path | None,
    weight_threshold: int,
    packages: PackageCache | None = None,
) -> list[CompressedComponent]:
    """Write ``recipe`` applied to ``bundle`` as a complete bundle at ``target``; with
    ``packages``, each compressed component is the sweep's (made once, hard-linked)."""
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
                if packages is None:
                    done = compress_package(
                        source, tmp / file.path, chosen, weight_threshold=weight_threshold
                    )
                else:
                    made, done = packages.compressed(
                        source, chosen, weight_threshold=weight_threshold
                    )
                    link_tree(made, tmp / file.path)
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


def _packages_wanted(
    bundle: Path, manifest: Manifest, recipes: list[Recipe]
) -> list[tuple[Path, Strategy]]:
    """Every (component package, strategy) the ``recipes`` compress, once, in their order."""
    wanted: list[tuple[Path, Strategy]] = []
    for recipe in recipes:
        for role, chosen in recipe.per_component.items():
            pair = (bundle / manifest.components[role].files["coreml"].path, chosen)
            if pair not in wanted:
                wanted.append(pair)
    return wanted


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
    variant: VariantResult, bundle: Path, scoring: Scoring, reference: ReferenceCache
) -> None:
    from speechport.parity.run import verify_bundle, write_report

    report = verify_bundle(
        bundle,
        list(scoring.audio),
        backends=[ENGINE_BACKEND],
        limits=scoring.limits,
        keywords=scoring.keywords,
        texts=list(scoring.texts),
        latency_runs=scoring.latency_runs,
        label=variant.name,
        reference=reference,
        stop_at_failure=True,
        latency_from_run=True,
    )
    write_report(report, bundle, plots=False)  # drawn for the variant that is emitted
    variant.engine = report.engines.get(ENGINE_BACKEND, "")
    variant.passed = report.passed
    variant.failures = report.failures()
    variant.files = len(report.files)
    variant.stopped = report.stopped
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
