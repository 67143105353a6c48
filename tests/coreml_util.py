"""Helpers for the Core ML interpreter tests: run one MIL op on inline values, and build
small Core ML packages from MIL builder programs or torch modules."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from speechport.coreml import Interpreter
from speechport.coreml.program import Arg, Block, Function, Op, Program, Var
from speechport.coreml.values import BY_NAME, TensorType


def op_program(
    op_type: str, inputs: dict[str, Any], outputs: tuple[str, ...] = ("fp32",)
) -> Program:
    """A program of one op. Each input is an inline constant; a Python list is a variadic
    input (one binding per element). ``outputs`` are the declared dtypes (rank unknown)."""
    bound = {
        name: [Arg(value=v) for v in value] if isinstance(value, list) else [Arg(value=value)]
        for name, value in inputs.items()
    }
    out_vars = [Var(f"out{i}", TensorType(BY_NAME[d], None)) for i, d in enumerate(outputs)]
    op = Op(op_type, bound, {}, out_vars, [], "main op #0")
    block = Block([], [op], [v.name for v in out_vars])
    return Program(Path("<test>"), {"main": Function("main", "CoreML7", [], block)}, 8)


def run_op(
    op_type: str, inputs: dict[str, Any], outputs: tuple[str, ...] = ("fp32",)
) -> list[np.ndarray]:
    """Run one op (see ``op_program``) through the interpreter; its outputs in order."""
    result = Interpreter(op_program(op_type, inputs, outputs)).run({})
    return [result[f"out{i}"] for i in range(len(outputs))]


def i32(value: Any) -> np.ndarray:
    return np.array(value, dtype=np.int32)


def f32(value: Any) -> np.ndarray:
    return np.array(value, dtype=np.float32)


def flag(value: bool) -> np.ndarray:
    return np.array(value, dtype=bool)


def save_mil_program(program: Any, path: Path, *, target: Any = None, fp16: bool = False) -> Path:
    """Convert a ``mb.program`` to an ML Program package at ``path``."""
    from speechport.export.compat import quiet_coremltools

    quiet_coremltools()
    import coremltools as ct

    model = ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=target or ct.target.iOS17,
        compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
        skip_model_load=True,
    )
    model.save(str(path))
    return path


def save_torch_module(
    module: Any, example: tuple[Any, ...], names: list[str], path: Path, *, fp16: bool
) -> Path:
    """Trace a torch module and convert it as speechport's exporter does (iOS 17, fp32 I/O)."""
    import torch

    from speechport.export.compat import coreml_conversion_patches, quiet_coremltools
    from speechport.export.coreml import jit_trace

    quiet_coremltools()
    import coremltools as ct

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and converter notes, as in export/coreml.py
        traced = jit_trace(module.eval(), example)
    inputs = [
        ct.TensorType(name=n, shape=tuple(x.shape), dtype=x.numpy().dtype)
        for n, x in zip(names, example, strict=True)
    ]
    with coreml_conversion_patches(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert(
            traced,
            inputs=inputs,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
            skip_model_load=True,
        )
    model.save(str(path))
    return path
