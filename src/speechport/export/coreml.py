"""Components to Core ML ML Programs (``.mlpackage``), fp16 or fp32, iOS 17 / macOS 14.

A component with ``coreml_buckets`` gets one input with enumerated shapes: one program and
one set of weights that Core ML runs at each of the listed sizes."""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from speechport.coreml.quiet import quiet_coremltools
from speechport.errors import ExportError
from speechport.export.compat import coreml_conversion_patches
from speechport.families.base import ExportableComponent, ShapeBuckets
from speechport.manifest import NP_DTYPES, TensorSpec, valid_buckets

PRECISIONS = ("fp16", "fp32")
_COREML_DTYPES = ("float32", "float16", "int32")  # Core ML has no int64 tensors

# torch.jit.trace itself, with the type torch leaves unannotated: given a module, a ScriptModule.
jit_trace: Callable[..., torch.jit.ScriptModule] = torch.jit.trace


def export_coreml(
    component: ExportableComponent,
    path: Path,
    *,
    precision: str = "fp16",
    metadata: dict[str, str] | None = None,
) -> None:
    """Trace ``component.module`` on its example inputs and convert it to an ML Program at
    ``path``; inputs and outputs keep the canonical names, shapes and dtypes."""
    quiet_coremltools()
    import coremltools as ct

    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    spec = component.spec
    inputs, outputs = coreml_tensors(component)
    tmp = path.with_name(f".partial-{path.name}")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = jit_trace(component.module, component.example_inputs, check_trace=False)
            with coreml_conversion_patches():
                mlmodel = ct.convert(
                    traced,
                    inputs=[_tensor_type(t) for t in inputs],
                    outputs=[_tensor_type(t, with_shape=False) for t in outputs],
                    convert_to="mlprogram",
                    minimum_deployment_target=ct.target.iOS17,
                    compute_precision=(
                        ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
                    ),
                    skip_model_load=True,
                )
        mlmodel.short_description = spec.description
        for key, value in (metadata or {}).items():
            mlmodel.user_defined_metadata[key] = value
        shutil.rmtree(tmp, ignore_errors=True)
        mlmodel.save(str(tmp))
        check_coreml_package(tmp, component)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    except ExportError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(
            f"Core ML conversion failed: {type(exc).__name__}: {exc}",
            path=path,
            component=spec.name,
        ) from exc


def coreml_tensors(
    component: ExportableComponent,
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The inputs and outputs of ``component``'s Core ML file: the canonical ones, with its
    bucketed input's sizes and the outputs that follow them marked dynamic on that axis."""
    spec, buckets = component.spec, component.coreml_buckets
    if buckets is None or len(buckets.sizes) < 2:
        return spec.inputs, spec.outputs
    _check_buckets(component, buckets)
    inputs = tuple(
        dataclasses.replace(t, buckets={buckets.axis: buckets.sizes})
        if t.name == buckets.input
        else t
        for t in spec.inputs
    )
    outputs = tuple(
        dataclasses.replace(t, dynamic_axes={buckets.outputs[t.name]: "frames"})
        if t.name in buckets.outputs
        else t
        for t in spec.outputs
    )
    return inputs, outputs


def _check_buckets(component: ExportableComponent, buckets: ShapeBuckets) -> None:
    spec = component.spec
    names = [t.name for t in spec.inputs]
    if buckets.input not in names or not 0 <= buckets.axis < len(spec.input(buckets.input).shape):
        raise ExportError(
            f"buckets name input {buckets.input!r} axis {buckets.axis}; inputs are {names}",
            component=spec.name,
        )
    size = spec.input(buckets.input).shape[buckets.axis]
    sizes = list(buckets.sizes)
    if not valid_buckets(sizes, size):
        raise ExportError(
            f"buckets {sizes} on {buckets.input} must ascend and end at its size {size}",
            component=spec.name,
        )


def _tensor_type(spec: TensorSpec, *, with_shape: bool = True) -> Any:
    """Inputs get name, shape (enumerated where it has buckets) and dtype; outputs name and
    dtype (an fp16 program's outputs would otherwise be fp16: keeping the manifest's fp32
    adds one cast at the end)."""
    import coremltools as ct

    if spec.dtype not in _COREML_DTYPES:
        raise ExportError(f"Core ML has no {spec.dtype} tensors", component=spec.name)
    dtype = NP_DTYPES[spec.dtype]
    if not with_shape:
        return ct.TensorType(name=spec.name, dtype=dtype)
    if spec.buckets:
        shape = ct.EnumeratedShapes(shapes=spec.bucket_shapes(), default=spec.shape)
        return ct.TensorType(name=spec.name, shape=shape, dtype=dtype)
    return ct.TensorType(name=spec.name, shape=spec.shape, dtype=dtype)


def package_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs that a saved ``.mlpackage`` declares (name, shape, dtype)."""
    quiet_coremltools()
    import coremltools as ct

    model = ct.models.MLModel(str(path), skip_model_load=True)
    description = model.get_spec().description
    return (
        [_feature_spec(f) for f in description.input],
        [_feature_spec(f) for f in description.output],
    )


def _feature_spec(feature: Any) -> TensorSpec:
    """A declared input or output; an enumerated input's ``buckets`` are the sizes its
    shapes take on each axis where they differ. An output whose shape follows such an
    input declares none (shape ``()``)."""
    array = feature.type.multiArrayType
    dtypes = {65568: "float32", 65552: "float16", 131104: "int32"}
    shape = tuple(int(d) for d in array.shape)
    enumerated = [tuple(int(d) for d in s.shape) for s in array.enumeratedShapes.shapes]
    buckets = {
        axis: tuple(sorted({s[axis] for s in enumerated}))
        for axis in range(len(shape))
        if len({s[axis] for s in enumerated}) > 1
    }
    return TensorSpec(
        name=feature.name,
        shape=shape,
        dtype=dtypes.get(array.dataType, f"coreml-type-{array.dataType}"),
        buckets=buckets,
    )


def check_coreml_package(path: Path, component: ExportableComponent) -> None:
    """The package's declared I/O equals the Core ML file's contract (the canonical one,
    with its buckets; an output that follows the buckets declares no shape)."""
    inputs, outputs = package_io(path)
    want_in, want_out = coreml_tensors(component)
    spec = component.spec
    for kind, got, want in (("input", inputs, want_in), ("output", outputs, want_out)):
        got_t = [(t.name, t.shape, t.dtype, t.buckets) for t in got]
        want_t = [(t.name, () if t.dynamic_axes else t.shape, t.dtype, t.buckets) for t in want]
        if got_t != want_t:
            raise ExportError(
                f"Core ML {kind}s {got_t} differ from the manifest's {want_t}",
                path=path,
                component=spec.name,
            )
