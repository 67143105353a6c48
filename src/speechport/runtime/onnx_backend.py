"""Run bundle components with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speechport.errors import BackendError, BundleError
from speechport.manifest import ComponentSpec, Manifest
from speechport.runtime.base import FileComponent


class OnnxComponent(FileComponent):
    """One ONNX file as a callable with canonical inputs and outputs."""

    def __init__(self, spec: ComponentSpec, path: Path, session: object, where: str) -> None:
        super().__init__(spec, "onnx", path, where)
        self._session = session

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        run = self._session.run  # type: ignore[attr-defined]
        return self.outputs(run(self._output_names, self.feeds(inputs)))


class OnnxBackend:
    """ONNX Runtime on the CPU (or the providers given)."""

    name = "onnx"

    def __init__(self, providers: list[str] | None = None, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a runtime dependency
            raise BackendError(
                "onnxruntime is not installed", hint="pip install onnxruntime"
            ) from exc
        self._ort = ort
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads

    @property
    def engine(self) -> str:
        return f"onnxruntime {self._ort.__version__} ({', '.join(self.providers)})"

    def load(self, bundle: Path, manifest: Manifest, role: str) -> OnnxComponent:
        spec = manifest.component(role)
        if "onnx" not in spec.files:
            raise BundleError(
                f"component {spec.name} has no ONNX file",
                path=bundle,
                hint="convert with --format onnx, or pick another --backend",
            )
        path = bundle / spec.files["onnx"].path
        if not path.is_file():
            raise BundleError(
                "ONNX file listed in the manifest is missing", path=path, component=spec.name
            )
        options = self._ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            session = self._ort.InferenceSession(
                str(path), sess_options=options, providers=self.providers
            )
        except Exception as exc:
            raise BundleError(
                f"ONNX Runtime cannot load the file ({exc})", path=path, component=spec.name
            ) from exc
        return OnnxComponent(spec, path, session, where=f"{path.name}")
