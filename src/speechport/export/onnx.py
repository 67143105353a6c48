"""Components to ONNX (opset 17+, TorchScript exporter), in the layout their family names."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from speechport.errors import ExportError
from speechport.families.base import ExportableComponent
from speechport.manifest import ConstantInput

OPSET = 17


def export_onnx(component: ExportableComponent, path: Path, *, opset: int = OPSET) -> None:
    """Write ``component`` to ``path`` (``.onnx``) with its layout's names and dynamic axes,
    then check the file with the ONNX checker and against the declared inputs/outputs."""
    layout = component.onnx
    specs = (*layout.inputs, *layout.outputs)
    dynamic_axes = {t.name: dict(t.dynamic_axes) for t in specs if t.dynamic_axes}
    tmp = path.with_name(f".partial-{path.name}")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                layout.module,
                layout.example_inputs,
                str(tmp),
                input_names=[t.name for t in layout.inputs],
                output_names=[t.name for t in layout.outputs],
                dynamic_axes=dynamic_axes or None,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        if layout.constants:
            _add_constant_inputs(tmp, layout.constants)
        check_onnx_file(tmp, component)
        tmp.replace(path)
    except ExportError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX export failed: {type(exc).__name__}: {exc}",
            path=path,
            component=component.name,
        ) from exc


def _add_constant_inputs(path: Path, constants: tuple[ConstantInput, ...]) -> None:
    """Declare scalar inputs the graph takes but does not use (ONNX Runtime also accepts a
    one-element array for a scalar, as callers of Silero's own file pass either)."""
    import onnx

    model = onnx.load(str(path))
    types = {
        "int64": onnx.TensorProto.INT64,
        "int32": onnx.TensorProto.INT32,
        "float32": onnx.TensorProto.FLOAT,
    }
    for constant in constants:
        value_info = onnx.helper.make_tensor_value_info(constant.name, types[constant.dtype], [])
        model.graph.input.append(value_info)
    onnx.save(model, str(path))


def check_onnx_file(path: Path, component: ExportableComponent) -> None:
    """The file is valid ONNX and its graph inputs/outputs carry the layout's names, dtypes
    and ranks."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    layout = component.onnx
    for kind, graph_values, specs in (
        ("input", model.graph.input, layout.inputs),
        ("output", model.graph.output, layout.outputs),
    ):
        got = [
            (v.name, _onnx_dtype(v.type.tensor_type.elem_type), len(v.type.tensor_type.shape.dim))
            for v in graph_values
        ]
        want = [(t.name, t.dtype, len(t.shape)) for t in specs]
        if kind == "input":
            want += [(c.name, c.dtype, 0) for c in layout.constants]
        if got != want:
            raise ExportError(
                f"ONNX graph {kind}s {got} differ from the declared layout {want}",
                path=path,
                component=component.name,
            )


def _onnx_dtype(elem_type: int) -> str:
    import onnx

    names: dict[int, str] = {
        onnx.TensorProto.FLOAT: "float32",
        onnx.TensorProto.FLOAT16: "float16",
        onnx.TensorProto.INT32: "int32",
        onnx.TensorProto.INT64: "int64",
    }
    return names.get(elem_type, f"onnx-type-{elem_type}")
