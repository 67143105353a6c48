"""Write a bundle: component files per format, manifest, tokenizer, model card, examples.

The bundle is assembled in a temporary directory beside the target and renamed into place
only when every file is written and checked, so a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from speechport.environment import package_versions
from speechport.errors import ExportError
from speechport.families.base import BundlePlan, LoadedCheckpoint
from speechport.fsutil import atomic_directory
from speechport.manifest import FORMATS, MANIFEST_NAME, ComponentFile, ComponentSpec, Manifest
from speechport.progress import Progress
from speechport.tasks import get_task
from speechport.version import __version__

EXAMPLE_SCRIPTS = {"coreml": "example_infer.py", "onnx": "example_infer_onnx.py"}


def parse_formats(text: str | Sequence[str]) -> list[str]:
    """``"coreml,onnx"`` -> ``["coreml", "onnx"]``, rejecting unknown names."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ExportError(f"unknown format(s) {unknown or names}; choose from {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in names]


def converter_versions() -> dict[str, str]:
    """Versions of the tools that took part in a conversion."""
    return package_versions(("torch", "coremltools", "onnx", "numpy"))


def write_bundle(
    plan: BundlePlan,
    loaded: LoadedCheckpoint,
    out: Path,
    *,
    formats: Sequence[str] = FORMATS,
    precision: str = "fp16",
    overwrite: bool = False,
    progress: Progress | None = None,
    check: Callable[[Path], None] | None = None,
) -> Manifest:
    """Convert every component of ``plan`` to ``formats`` and write the bundle at ``out``.

    ``check`` runs on the finished bundle in its temporary directory before it is renamed
    into place; if it raises, nothing is left behind (``convert --verify`` gates this way).
    """
    from speechport.export.card import render_card

    formats = parse_formats(formats)
    progress = progress or Progress(0, quiet=True)
    with atomic_directory(Path(out), overwrite=overwrite) as tmp:
        components: dict[str, ComponentSpec] = {}
        for comp in plan.components:
            files: dict[str, ComponentFile] = {}
            if "coreml" in formats and "coreml" in comp.formats:
                from speechport.export.coreml import coreml_tensors, export_coreml

                comp_precision = comp.coreml_precision or precision
                progress.start(f"{comp.name} -> Core ML ({comp_precision})")
                path = f"{comp.name}.mlpackage"
                export_coreml(
                    comp,
                    tmp / path,
                    precision=comp_precision,
                    metadata={
                        "speechport.version": __version__,
                        "speechport.family": plan.family,
                        "speechport.variant": plan.variant,
                        "speechport.component": comp.name,
                    },
                )
                files["coreml"] = ComponentFile(path, comp_precision, *coreml_tensors(comp))
            if "onnx" in formats and "onnx" in comp.formats:
                from speechport.export.onnx import export_onnx

                progress.start(f"{comp.name} -> ONNX")
                export_onnx(comp, tmp / comp.onnx.file_name)
                files["onnx"] = ComponentFile(
                    comp.onnx.file_name,
                    "fp32",
                    comp.onnx.inputs,
                    comp.onnx.outputs,
                    comp.onnx.constants,
                )
            if not files:
                continue  # a component only other formats have
            components[comp.spec.role] = dataclasses.replace(comp.spec, files=files)

        progress.start("manifest, tokenizer, model card, examples")
        extra = dict(plan.files)
        if "onnx" in formats:
            extra.update(plan.onnx_files)
        for name, data in extra.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        manifest = Manifest(
            family=plan.family,
            variant=plan.variant,
            task=plan.task,
            sample_rate=plan.sample_rate,
            frontend=plan.frontend,
            window=plan.window,
            components=components,
            decoding=plan.decoding,
            tokenizer=plan.tokenizer,
            vad=plan.vad,
            streaming=plan.streaming,
            tts=plan.tts,
            provenance=_provenance(loaded, Path(out), formats, precision, plan.options),
            extras={**plan.extras, "description": plan.description},
        )
        (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        for fmt in formats:
            script = example_script(fmt, plan.task)
            (tmp / EXAMPLE_SCRIPTS[fmt]).write_text(script, encoding="utf-8")
        (tmp / "README.md").write_text(render_card(manifest, tmp), encoding="utf-8")
        if check is not None:
            check(tmp)
    return manifest


def example_script(fmt: str, task: str) -> str:
    """The standalone example for ``fmt``: the task's template, its default backend filled
    in."""
    name = get_task(task).example_template
    template = resources.files("speechport.export.templates").joinpath(name)
    text = template.read_text(encoding="utf-8")
    marker = 'DEFAULT_BACKEND = "onnx"'
    if marker not in text:
        raise AssertionError("example template lost its DEFAULT_BACKEND line")
    return text.replace(marker, f'DEFAULT_BACKEND = "{fmt}"')


def _provenance(
    loaded: LoadedCheckpoint,
    out: Path,
    formats: Sequence[str],
    precision: str,
    plan_options: dict[str, Any],
) -> dict[str, Any]:
    # The checkpoint's place relative to the bundle (no absolute path, so a published bundle
    # does not carry its maker's directories); the torch reference backend looks there.
    relative = os.path.relpath(loaded.checkpoint.resolve(), out.resolve())
    return {
        "source_checkpoint": loaded.checkpoint.name,
        "checkpoint_path": Path(relative).as_posix(),
        "checkpoint_sha256": loaded.checkpoint_sha256,
        "tokenizer_sha256": loaded.tokenizer_sha256,
        "formats": list(formats),
        "precision": {fmt: precision if fmt == "coreml" else "fp32" for fmt in formats},
        "compression": None,
        "converters": converter_versions(),
        "created": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "notes": list(loaded.notes),
        **({"plan_options": dict(plan_options)} if plan_options else {}),
    }
