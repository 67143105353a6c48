"""Run bundles: load components with a backend (ONNX Runtime, Core ML, torch reference)."""

from __future__ import annotations

from pathlib import Path

from speechport.errors import BackendError, BundleError
from speechport.manifest import FORMATS, read_manifest
from speechport.runtime.base import Backend, Component, LoadedBundle

BACKENDS = ("onnx", "coreml", "torch")
# The backends whose thread pools ``speechport.load(threads=...)`` sizes (the others take
# no thread count: jobs of ``transcribe_many`` leave them theirs).
SIZED_THREAD_POOLS = frozenset({"onnx"})


def make_backend(name: str, **options: object) -> Backend:
    """A backend by name: ``onnx``, ``coreml`` (the Core ML framework on macOS, speechport's
    MIL interpreter elsewhere) or ``torch`` (reference; needs the checkpoint)."""
    if name == "onnx":
        from speechport.runtime.onnx_backend import OnnxBackend

        return OnnxBackend(**options)  # type: ignore[arg-type]
    if name == "coreml":
        from speechport.runtime.coreml_backend import CoreMLBackend

        return CoreMLBackend(**options)  # type: ignore[arg-type]
    if name == "torch":
        from speechport.runtime.torch_backend import TorchBackend

        return TorchBackend(**options)  # type: ignore[arg-type]
    raise BackendError(f"unknown backend {name!r}; expected one of {BACKENDS}")


def load_bundle(bundle: str | Path, backend: str | Backend = "onnx") -> LoadedBundle:
    """Read a bundle's manifest and load every component with ``backend``.

    A file-format backend loads the components that have a file in its format (a bundle may
    hold a component in one format only, e.g. a fused variant only Core ML needs)."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    engine = make_backend(backend) if isinstance(backend, str) else backend
    if engine.name in FORMATS and engine.name not in manifest.formats:
        raise BundleError(
            f"this bundle has no {engine.name} files; it has: "
            f"{', '.join(manifest.formats) or 'none'}",
            path=bundle,
            hint=f"pick a backend it has files for, or convert with --format {engine.name}",
        )
    components = {
        role: engine.load(bundle, manifest, role)
        for role, spec in manifest.components.items()
        if engine.name not in FORMATS or engine.name in spec.files
    }
    return LoadedBundle(bundle, manifest, engine.name, engine.engine, components)


__all__ = [
    "BACKENDS",
    "SIZED_THREAD_POOLS",
    "Backend",
    "Component",
    "LoadedBundle",
    "load_bundle",
    "make_backend",
]
