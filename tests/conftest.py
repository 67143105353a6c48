"""Shared fixtures: bundles converted once per test run (shared by the xdist workers)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import VARIANTS, BundleCache, checkpoint, tokenizer_for


@pytest.fixture(scope="session", autouse=True)
def temporary_files_in_the_runs_directory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Every temporary file of the run under its own base temp directory, which pytest
    prunes: coremltools writes a temporary package for each model it converts or opens and
    removes it only when the model object is collected, which an xdist worker's exit does
    not wait for (left in the system temp directory, 150 of them per run)."""
    import tempfile

    before = tempfile.tempdir
    scratch = tmp_path_factory.mktemp("tempfile")
    tempfile.tempdir = str(scratch)
    yield
    tempfile.tempdir = before


@pytest.fixture(scope="session")
def bundle_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BundleCache]:
    """The run's bundle cache. Under xdist each worker's base temp directory sits in the
    run's own directory, which all workers share; without xdist the base temp directory is
    the run's."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    cache = BundleCache(base / "bundle-cache")
    yield cache
    changed = cache.changed()
    assert not changed, f"tests modified shared bundles (use copy_bundle): {changed}"


@pytest.fixture(scope="session")
def gigaam_bundles(bundle_cache: BundleCache) -> dict[str, Path]:
    """Every v3 variant converted to Core ML (fp16) and ONNX."""
    return {
        variant: bundle_cache.get(
            "gigaam", checkpoint(variant), variant, tokenizer=tokenizer_for(variant)
        )
        for variant in VARIANTS
    }


@pytest.fixture(scope="session")
def gigaam_onnx(bundle_cache: BundleCache) -> Callable[[str], Path]:
    """A v3 variant converted to ONNX only: quicker, for tests that need some bundle and
    no Core ML file."""

    def get(variant: str) -> Path:
        return bundle_cache.get(
            "gigaam", checkpoint(variant), variant, tokenizer=tokenizer_for(variant), formats="onnx"
        )

    return get


@pytest.fixture(scope="session")
def vad_bundle(bundle_cache: BundleCache) -> Path:
    """Silero VAD from the installed silero-vad package, Core ML and ONNX."""
    pytest.importorskip("silero_vad")
    return bundle_cache.get("silero-vad", None, "silero")


@pytest.fixture(scope="session")
def kokoro_onnx_bundle(bundle_cache: BundleCache) -> Path:
    """The tiny Kokoro fixture (tests/data/tts) converted to ONNX with its two voices."""
    data = Path(__file__).parent / "data" / "tts"
    return bundle_cache.get(
        "kokoro",
        data / "kokoro-tiny.pth",
        "kokoro-tiny",
        tokenizer=data / "config.json",
        formats="onnx",
        plan_options={"voices": str(data / "voices")},
    )
