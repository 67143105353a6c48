"""Components to ONNX (opset 17+, TorchScript exporter), in the layout their family names."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from speechport.errors import ExportError
from speechport.families.base import ExportableComponent

if TYPE_CHECKING:
    import onnx

OPSET = 17
# Protobuf cannot hold a model of 2 GiB or more; from this size on the weights go to one
# external-data file beside the model, ``<file>.data`` (the name onnx-asr looks for).
EXTERNAL_DATA_BYTES = 1_800_000_000


def export_onnx(component: ExportableComponent, path: Path, *, opset: int = OPSET) -> None:
    """Write ``component`` to ``path`` (``.onnx``) with its layout's names, order, dynamic
    axes and metadata, then check the file with the ONNX checker and against the declared
    inputs/outputs. Weights of large models go to ``<path>.data``."""
    layout = component.onnx
    specs = (*layout.inputs, *layout.outputs, *layout.unused_outputs)
    dynamic_axes = {t.name: dict(t.dynamic_axes) for t in specs if t.dynamic_axes}
    input_names = list(layout.input_order) or [t.name for t in layout.inputs]
    output_names = list(layout.output_order) or [t.name for t in layout.outputs]
    data = _data_path(path)
    scratch = Path(tempfile.mkdtemp(prefix=".onnx-export-", dir=path.parent))
    try:
        exported = scratch / "model.onnx"  # the exporter may scatter weights beside it
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                layout.module,
                layout.example_inputs,
                str(exported),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes or None,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        _finish(exported, path, component)
        check_onnx_file(path, component)
    except ExportError:
        path.unlink(missing_ok=True)
        data.unlink(missing_ok=True)
        raise
    except Exception as exc:
        path.unlink(missing_ok=True)
        data.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX export failed: {type(exc).__name__}: {exc}",
            path=path,
            component=component.name,
        ) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _finish(exported: Path, path: Path, component: ExportableComponent) -> None:
    """Add the constant inputs the graph does not take and the metadata, then save the model
    at ``path`` (see ``save_onnx_model``)."""
    import onnx

    layout = component.onnx
    model = onnx.load(str(exported))
    ordered = set(layout.input_order)
    types = {
        "int64": onnx.TensorProto.INT64,
        "int32": onnx.TensorProto.INT32,
        "float32": onnx.TensorProto.FLOAT,
    }
    for constant in layout.constants:
        if constant.name in ordered:
            continue  # a real graph input, in its place
        # A scalar the graph takes but does not use (ONNX Runtime also accepts a
        # one-element array for a scalar, as callers of Silero's own file pass either).
        shape = list(np.shape(constant.value))
        value_info = onnx.helper.make_tensor_value_info(constant.name, types[constant.dtype], shape)
        model.graph.input.append(value_info)
    for default in layout.defaults:  # an initializer named as an input makes it optional
        array = np.array(default.value, dtype=np.dtype(default.dtype))
        model.graph.initializer.append(onnx.numpy_helper.from_array(array, default.name))
    for key, value in layout.metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    save_onnx_model(model, path)


def save_onnx_model(model: onnx.ModelProto, path: Path) -> None:
    """Save ``model`` at ``path``; a model too large for one protobuf keeps its weights in
    ``<path>.data`` beside it."""
    import onnx

    data = _data_path(path)
    size = sum(t.ByteSize() for t in model.graph.initializer)
    if size >= EXTERNAL_DATA_BYTES:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )
        data.chmod(path.stat().st_mode & 0o777)  # onnx writes it owner-only
    else:
        onnx.save_model(model, str(path))


def check_onnx_file(path: Path, component: ExportableComponent) -> None:
    """The file is valid ONNX and its graph inputs/outputs carry the layout's names, dtypes
    and ranks."""
    import onnx

    onnx.checker.check_model(str(path))  # a path: works for models with external data
    model = onnx.load(str(path), load_external_data=False)
    layout = component.onnx
    inputs = {t.name: (t.name, t.dtype, len(t.shape)) for t in layout.inputs}
    constants = {c.name: (c.name, c.dtype, np.ndim(c.value)) for c in layout.constants}
    outputs = {t.name: (t.name, t.dtype, len(t.shape)) for t in layout.outputs}
    outputs.update({t.name: (t.name, t.dtype, len(t.shape)) for t in layout.unused_outputs})
    if layout.input_order:
        want_inputs = [{**inputs, **constants}[n] for n in layout.input_order]
    else:
        want_inputs = [*inputs.values(), *constants.values()]
    want_outputs = [outputs[n] for n in layout.output_order] or list(outputs.values())
    for kind, graph_values, want in (
        ("input", model.graph.input, want_inputs),
        ("output", model.graph.output, want_outputs),
    ):
        got = [
            (v.name, _onnx_dtype(v.type.tensor_type.elem_type), len(v.type.tensor_type.shape.dim))
            for v in graph_values
        ]
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


def _data_path(path: Path) -> Path:
    """Where the weights of ``path`` go when they are kept apart: ``<path>.data``."""
    return path.with_name(path.name + ".data")
