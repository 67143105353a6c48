"""Where a sweep puts things on disk: ``OUT/variants/NAME`` bundles whose unchanged files
are hard links to the source bundle's, with their own manifest and model card, and whose
compressed packages are hard links to the sweep's ``OUT/.packages`` (removed at its end)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from speechport.export.card import render_card
from speechport.manifest import MANIFEST_NAME, Manifest

VARIANTS_DIR = "variants"
PACKAGES_DIR = ".packages"  # compressed packages shared by a sweep's recipes, while it runs
NOT_COPIED = frozenset({MANIFEST_NAME, "README.md", "verify"})  # rewritten for every variant


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


def link_tree(source: Path, target: Path) -> None:
    """Hard-link ``source`` (a file, or every file under a directory) at ``target``; copy
    where links are not possible (another filesystem)."""
    if source.is_dir():
        target.mkdir()
        for child in source.iterdir():
            link_tree(child, target / child.name)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
