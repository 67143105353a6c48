"""The reference: the family's own torch modules, fp32, run from the source checkpoint.

Imported lazily: torch is needed only here, never on the ONNX / Core ML runtime path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from speechport.errors import BackendError, CheckpointError
from speechport.manifest import ComponentSpec, Manifest


class TorchComponent:
    def __init__(self, spec: ComponentSpec, module: Any) -> None:
        import torch

        self.spec = spec
        self._module = module
        self._torch = torch
        self._dtypes = [getattr(torch, t.dtype) for t in spec.inputs]

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        torch = self._torch
        tensors = [
            torch.as_tensor(np.asarray(x)).to(dtype)
            for x, dtype in zip(inputs, self._dtypes, strict=True)
        ]
        with torch.inference_mode():
            out = self._module(*tensors)
        if not isinstance(out, tuple):
            out = (out,)
        return tuple(o.numpy() for o in out)


class TorchBackend:
    """Loads the checkpoint named in the manifest's provenance (or the one given), checks
    its SHA-256, and serves the family's modules for the bundle's window."""

    name = "torch"

    def __init__(self, checkpoint: Path | None = None, tokenizer: Path | None = None) -> None:
        self.checkpoint = checkpoint
        self.tokenizer = tokenizer
        self._plans: dict[Path, Any] = {}

    @property
    def engine(self) -> str:
        import torch

        return f"torch {torch.__version__} (reference, fp32, CPU)"

    def load(self, bundle: Path, manifest: Manifest, role: str) -> TorchComponent:
        plan = self._plan(bundle, manifest)
        comp = plan.component(role)
        return TorchComponent(manifest.component(role), comp.module)

    def _plan(self, bundle: Path, manifest: Manifest) -> Any:
        if bundle not in self._plans:
            from speechport.families import get_family
            from speechport.fsutil import sha256_file

            prov = manifest.provenance
            checkpoint = self.checkpoint
            if checkpoint is None and prov.get("checkpoint_path"):
                beside = bundle / prov["checkpoint_path"]  # relative to the bundle
                checkpoint = beside if beside.is_file() else None
            if checkpoint is not None and not checkpoint.is_file():
                raise BackendError(
                    "checkpoint not found", path=checkpoint, hint="pass --checkpoint PATH"
                )
            want = prov.get("checkpoint_sha256")
            if checkpoint is not None and want and sha256_file(checkpoint) != want:
                raise _wrong_checkpoint(checkpoint)
            tokenizer = self.tokenizer
            if tokenizer is None and manifest.tokenizer and manifest.tokenizer.model_file:
                tokenizer = bundle / manifest.tokenizer.model_file
            family = get_family(manifest.family)
            try:  # no checkpoint found: the family's default source, if it has one
                loaded = family.load(checkpoint, tokenizer=tokenizer)
            except CheckpointError as exc:
                if checkpoint is not None:
                    raise
                raise BackendError(
                    f"the torch reference needs the source checkpoint "
                    f"({prov.get('source_checkpoint')}) and it was not found next to where "
                    "the bundle was made",
                    path=bundle,
                    hint="pass --checkpoint PATH",
                ) from exc
            if want and loaded.checkpoint_sha256 != want:
                raise _wrong_checkpoint(loaded.checkpoint)
            window_seconds = (
                manifest.window.seconds(manifest.sample_rate) if manifest.window else None
            )
            options = dict(prov.get("plan_options") or {})  # as the bundle was planned
            self._plans[bundle] = family.plan(loaded, window_seconds=window_seconds, **options)
        return self._plans[bundle]


def _wrong_checkpoint(path: Path) -> BackendError:
    return BackendError(
        "this checkpoint is not the one the bundle was converted from (SHA-256 differs)",
        path=path,
        hint="pass the checkpoint named in the bundle's provenance",
    )
