"""Run bundle components from their Core ML packages.

On macOS the Core ML framework runs them (through coremltools) on the compute units asked
for. Everywhere else, speechport's MIL interpreter runs the same ``.mlpackage`` with numpy,
rounding fp16 tensors at every op boundary (see ``speechport.coreml``). ``engine`` says which
of the two ran.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from speechport.errors import BackendError, BundleError, SpeechportError
from speechport.manifest import ComponentSpec, Manifest
from speechport.runtime.base import FileComponent

COMPUTE_UNITS = {
    "cpu": ("CPU_ONLY", "CPU"),
    "gpu": ("CPU_AND_GPU", "CPU and GPU"),
    "ane": ("CPU_AND_NE", "ANE"),
    "all": ("ALL", "all compute units"),
}
ENGINES = ("auto", "framework", "interpreter")


class CoreMLComponent(FileComponent):
    """One ``.mlpackage`` as a callable with canonical inputs and outputs."""

    def __init__(self, spec: ComponentSpec, path: Path, predict: Any, where: str) -> None:
        super().__init__(spec, "coreml", path, where)
        self._predict = predict

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        try:
            outputs = self._predict(self.feeds(inputs))
        except SpeechportError as exc:
            raise BackendError(exc.message, path=self.path, component=self.spec.name) from exc
        missing = [n for n in self._output_names if n not in outputs]
        if missing:
            raise BackendError(
                f"the package gave no outputs named {missing}",
                path=self.path,
                component=self.spec.name,
            )
        return self.outputs([outputs[name] for name in self._output_names])


class CoreMLBackend:
    """Core ML packages: the real framework on macOS, speechport's MIL interpreter elsewhere.

    ``compute_units`` (cpu, gpu, ane, all) applies to the framework; ``engine`` forces
    ``framework`` or ``interpreter`` (``auto``: the framework where it can run).
    """

    name = "coreml"

    def __init__(self, compute_units: str = "all", engine: str = "auto") -> None:
        if compute_units not in COMPUTE_UNITS:
            raise BackendError(
                f"unknown compute units {compute_units!r}; expected one of {sorted(COMPUTE_UNITS)}"
            )
        if engine not in ENGINES:
            raise BackendError(f"unknown Core ML engine {engine!r}; expected one of {ENGINES}")
        if engine == "framework" and not framework_available():
            raise BackendError(
                "the Core ML framework runs only on macOS",
                hint="use engine='interpreter' (speechport's MIL interpreter)",
            )
        self.compute_units = compute_units
        self.use_framework = engine == "framework" or (engine == "auto" and framework_available())
        self._precisions: set[str] = set()

    @property
    def engine(self) -> str:
        if self.use_framework:
            import coremltools as ct

            return (
                f"Core ML framework, {COMPUTE_UNITS[self.compute_units][1]} "
                f"(coremltools {ct.__version__})"
            )
        base = "speechport MIL interpreter (numpy)"
        if "fp16" in self._precisions:
            return f"{base}, fp16 emulation"
        if self._precisions:
            return f"{base}, fp32"
        return base

    def load(self, bundle: Path, manifest: Manifest, role: str) -> CoreMLComponent:
        spec = manifest.component(role)
        if "coreml" not in spec.files:
            raise BundleError(
                f"component {spec.name} has no Core ML file",
                path=bundle,
                hint="convert with --format coreml, or pick another --backend",
            )
        path = bundle / spec.files["coreml"].path
        if not path.exists():
            raise BundleError(
                "Core ML package listed in the manifest is missing", path=path, component=spec.name
            )
        predict = self._framework(path) if self.use_framework else self._interpreter(path, spec)
        return CoreMLComponent(spec, path, predict, where=path.name)

    def _interpreter(self, path: Path, spec: ComponentSpec) -> Any:
        from speechport.coreml import Interpreter, load_program

        try:
            interpreter = Interpreter(load_program(path))
        except SpeechportError as exc:
            raise BackendError(exc.message, path=path, component=spec.name, hint=exc.hint) from exc
        self._precisions.add(interpreter.precision)
        return interpreter.run

    def _framework(self, path: Path) -> Any:  # pragma: no cover - macOS only
        from speechport.coreml.quiet import quiet_coremltools

        quiet_coremltools()
        import coremltools as ct

        units = getattr(ct.ComputeUnit, COMPUTE_UNITS[self.compute_units][0])
        try:
            model = ct.models.MLModel(str(path), compute_units=units)
        except Exception as exc:
            raise BackendError(f"Core ML cannot load the package ({exc})", path=path) from exc

        def predict(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {k: np.asarray(v) for k, v in model.predict(feeds).items()}

        return predict


def framework_available() -> bool:
    """The Core ML framework can run predictions: macOS with coremltools' native module."""
    if platform.system() != "Darwin":
        return False
    try:
        import coremltools.libcoremlpython  # noqa: F401
    except ImportError:
        return False
    return True
