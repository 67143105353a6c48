"""Run bundle components with ONNX Runtime."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from speechport.errors import BackendError, BundleError
from speechport.manifest import ComponentSpec, Manifest
from speechport.runtime.base import Component, FileComponent


class OnnxComponent(FileComponent):
    """One ONNX file as a callable with canonical inputs and outputs."""

    def __init__(self, spec: ComponentSpec, path: Path, session: object, where: str) -> None:
        super().__init__(spec, "onnx", path, where)
        self._session = session

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        run = self._session.run  # type: ignore[attr-defined]
        try:
            results = run(self._output_names, self.feeds(inputs))
        except Exception as exc:  # an engine error: name the component and the file
            raise BackendError(
                f"ONNX Runtime failed ({str(exc).splitlines()[0] if str(exc) else exc!r})",
                path=self.path,
                component=self.spec.name,
                hint="the file may not be the model the manifest describes; reconvert the bundle",
            ) from exc
        return self.outputs(results)


# Kinds called once per frame, token or audio chunk on tensors of one step. Such a call
# reads every weight once for a few multiply-adds each, so its time is the time to fetch its
# weights: small ones (GigaAM's 320-wide predictor and joint, a VAD) sit in one core's
# cache and a thread pool costs more to wake than it saves (full-size GigaAM v3: 1.27x
# slower on two threads); large ones (Parakeet's 640-wide two-layer predictor, its 8k-token
# joint: 24-45 MiB) stream from memory, and more cores fetch faster (1.27x faster on two).
STEP_KINDS = frozenset(
    {
        "decoder_step",
        "joint",
        "decoder_joint",
        "joint_decision_frame",
        "decoder_context",
        "vad",
        "vad_encoder",
        "vad_decoder",
    }
)


# Weights per thread for a per-step component run by ONNX Runtime: about what one core's
# cache holds.
STEP_BYTES_PER_THREAD = 8 << 20

# How per-step components run (``OnnxBackend(steps=...)``): ``auto`` runs a recognised
# decoder step or joint in numpy (``speechport.runtime.numpy_steps``) when a decoding step
# with it, timed at load time against the ONNX Runtime call, is faster (``step_seconds``: a
# few milliseconds at load); ``numpy`` whenever recognised; ``onnx`` always in ONNX Runtime.
STEP_ENGINES = ("auto", "numpy", "onnx")

# Graph optimisation levels (``OnnxBackend(graph_optimization=...)``) by the name users give,
# as ONNX Runtime's ``GraphOptimizationLevel`` members: ``disable`` runs the graph as
# exported, ``basic`` folds constants and drops redundant nodes, ``extended`` fuses
# operators (attention, GELU, layer norm), ``all`` also changes memory layouts (the default).
GRAPH_OPTIMIZATIONS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


# Whole-window components split each operator's work into shrinking blocks that every
# thread of the pool takes from as it comes free (ONNX Runtime's
# ``session.dynamic_block_base``), not one fixed share per thread: a thread that wakes late,
# or finds its core taken by another process, no longer holds the others waiting. Full-size
# Parakeet-TDT 118M, 4 s, two threads, busy machine (load 5): 89 ms a clip (median of 30)
# against 95 ms with fixed shares; GigaAM v3 CTC 392 ms against 404 ms.
DYNAMIC_BLOCK_BASE = 4


def threads_for(kind: str, threads: int, weight_bytes: int = 0) -> int:
    """Intra-op threads for a component of ``kind`` whose files hold ``weight_bytes``:
    ``threads`` for whole-window and whole-chunk kinds (encoders, front ends); for per-step
    kinds one per ``STEP_BYTES_PER_THREAD`` of weights, at least one, at most ``threads``."""
    if kind not in STEP_KINDS:
        return threads
    return max(1, min(threads, weight_bytes // STEP_BYTES_PER_THREAD))


class OnnxBackend:
    """ONNX Runtime on the CPU (or the providers given).

    ``threads``: intra-op threads for the components that run on a whole window or chunk
    (encoders, front ends; default: every CPU); components called once per step (decoder,
    joint, VAD chunk) run on one thread per 8 MiB of weights (see ``threads_for``). No pool
    spin-waits: the decoder and the joint alternate every step, and a spinning pool of one
    would hold the core the other needs.

    ``steps``: how a recognised decoder step or joint runs (``STEP_ENGINES``).

    ``graph_optimization``: how far ONNX Runtime rewrites each graph when it loads it
    (``GRAPH_OPTIMIZATIONS``; default ``all``, ONNX Runtime's own default).
    ``memory_arena``: whether tensors come from ONNX Runtime's CPU memory arena (default),
    which keeps the peak of every shape it has run; without it each run allocates and frees
    its own (less memory held between calls of varying shapes, a little slower)."""

    name = "onnx"

    def __init__(
        self,
        providers: list[str] | None = None,
        threads: int | None = None,
        steps: str = "auto",
        graph_optimization: str = "all",
        memory_arena: bool = True,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a runtime dependency
            raise BackendError(
                "onnxruntime is not installed", hint="pip install onnxruntime"
            ) from exc
        if threads is not None and threads < 1:
            raise BackendError(f"threads must be at least 1, got {threads}")
        if steps not in STEP_ENGINES:
            raise BackendError(f"steps must be one of {', '.join(STEP_ENGINES)}, not {steps!r}")
        if graph_optimization not in GRAPH_OPTIMIZATIONS:
            raise BackendError(
                f"graph optimization must be one of {', '.join(GRAPH_OPTIMIZATIONS)}, "
                f"not {graph_optimization!r}"
            )
        self.steps = steps
        self.graph_optimization = graph_optimization
        self.memory_arena = memory_arena
        self._ort = ort
        # Graph notes (e.g. an input with a default value is not constant-folded) go to the
        # process-wide logger, not the session's: errors only.
        ort.set_default_logger_severity(3)
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads or os.cpu_count() or 1

    def session_options(self, kind: str, weight_bytes: int = 0) -> object:
        """The session options for a component of ``kind`` with ``weight_bytes`` of files."""
        options = self._ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads_for(kind, self.threads, weight_bytes)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if kind not in STEP_KINDS:
            options.add_session_config_entry("session.dynamic_block_base", str(DYNAMIC_BLOCK_BASE))
        level = GRAPH_OPTIMIZATIONS[self.graph_optimization]
        options.graph_optimization_level = getattr(self._ort.GraphOptimizationLevel, level)
        options.enable_cpu_mem_arena = self.memory_arena
        return options

    @property
    def engine(self) -> str:
        return f"onnxruntime {self._ort.__version__} ({', '.join(self.providers)})"

    def load(self, bundle: Path, manifest: Manifest, role: str) -> Component:
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
        try:
            session = self._ort.InferenceSession(
                str(path),
                sess_options=self.session_options(spec.kind, _weight_bytes(path)),
                providers=self.providers,
            )
        except Exception as exc:
            raise BundleError(
                f"ONNX Runtime cannot load the file ({exc})", path=path, component=spec.name
            ) from exc
        _check_io(session, spec, path)
        component = OnnxComponent(spec, path, session, where=f"{path.name}")
        if self.steps != "onnx" and spec.kind in STEP_KINDS:
            from speechport.runtime.numpy_steps import agrees, numpy_step, step_seconds

            kernel = numpy_step(spec, path)
            if kernel is not None and agrees(kernel, component):
                if self.steps == "numpy":
                    return kernel
                numpy_seconds, onnx_seconds = step_seconds(kernel, component)
                if numpy_seconds < onnx_seconds:
                    return kernel
        return component


def _check_io(session: object, spec: ComponentSpec, path: Path) -> None:
    """The file takes the inputs and gives the outputs the manifest declares for it (names,
    ranks, fixed sizes): another model's file is refused here, by name, not at its first
    call with an engine error."""
    file = spec.files["onnx"]
    got_in = {i.name: i.shape for i in session.get_inputs()}  # type: ignore[attr-defined]
    # Inputs with a default value (an initializer of the same name) are not listed as inputs.
    overridable = session.get_overridable_initializers()  # type: ignore[attr-defined]
    got_in.update({i.name: i.shape for i in overridable})
    got_out = {o.name: o.shape for o in session.get_outputs()}  # type: ignore[attr-defined]
    want_in = {t.name: t.shape for t in file.inputs}
    want_in.update({c.name: None for c in file.constants})  # type: ignore[misc]
    want_out = {t.name: t.shape for t in file.outputs}
    problems = []
    if set(got_in) != set(want_in):
        problems.append(f"inputs {sorted(got_in)}, the manifest declares {sorted(want_in)}")
    missing = sorted(set(want_out) - set(got_out))
    if missing:
        problems.append(f"no outputs {missing} (it has {sorted(got_out)})")
    for kind, got, want in (("input", got_in, want_in), ("output", got_out, want_out)):
        for name, shape in want.items():
            actual = got.get(name)
            if shape is None or actual is None:
                continue
            fixed = [a == w for a, w in zip(actual, shape, strict=False) if isinstance(a, int)]
            if len(actual) != len(shape) or not all(fixed):
                problems.append(f"{kind} {name} of shape {list(actual)}, not {list(shape)}")
    if problems:
        raise BundleError(
            "the ONNX file is not the model the manifest describes: it has " + "; ".join(problems),
            path=path,
            component=spec.name,
            hint="reconvert the bundle, or restore the component's file",
        )


def _weight_bytes(path: Path) -> int:
    """The size of an ONNX file and of its external-data file (``<file>.data``) if any."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)
