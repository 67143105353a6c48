"""``quantize --emit NAME``: one variant of a sweep as a bundle of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

from speechport.compression.layout import VARIANTS_DIR, write_manifest
from speechport.errors import SpeechportError
from speechport.fsutil import atomic_directory
from speechport.manifest import MANIFEST_NAME, read_manifest
from speechport.parity.report import PARITY_FILE, ParityReport
from speechport.parity.run import write_report


def emit_variant(
    out: Path, name: str, target: Path | None = None, *, overwrite: bool = False
) -> Path:
    """Copy the sweep's variant ``name`` (``OUT/variants/NAME``) to ``target`` (default
    ``OUT/NAME``) as a self-standing bundle: real copies of its files, its verify report with
    its plots, and a manifest whose checkpoint path is right from the new place. Returns
    ``target``."""
    source = Path(out) / VARIANTS_DIR / name
    if not (source / MANIFEST_NAME).is_file():
        built = sorted(p.name for p in (Path(out) / VARIANTS_DIR).glob("*") if p.is_dir())
        raise SpeechportError(
            f"the sweep has no variant {name!r}",
            path=source,
            hint=f"--emit one of: {', '.join(built) or '(none built)'}",
        )
    target = Path(target) if target is not None else Path(out) / name
    manifest = read_manifest(source)
    relative = manifest.provenance.get("checkpoint_path")
    checkpoint = (source / relative).resolve() if relative else None
    with atomic_directory(target, overwrite=overwrite) as tmp:
        for item in source.iterdir():
            if item.name in (MANIFEST_NAME, "README.md"):
                continue
            if item.is_dir():
                shutil.copytree(item, tmp / item.name)
            else:
                shutil.copy2(item, tmp / item.name)
        write_manifest(
            manifest,
            tmp,
            final=target,
            checkpoint=checkpoint if checkpoint and checkpoint.is_file() else None,
        )
        if (tmp / PARITY_FILE).is_file():  # the sweep draws a variant's plots when it is emitted
            write_report(ParityReport.load(tmp / PARITY_FILE), tmp)
    return target
