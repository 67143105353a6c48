"""Run a Core ML program op by op with numpy.

Values live in a dict by name, in the dtype the program declares for them: an op's float
math runs in float32 and each output is then cast to its declared type, so every fp16
tensor is rounded to fp16 at op boundaries (and overflows to inf where fp16 would) while
fp32 tensors stay fp32. Integer tensors keep int32 arithmetic. Constants (``const`` and
the ``constexpr_*`` decompression ops) are evaluated once, when the interpreter is built.
A value is dropped after its last use, which keeps peak memory near that of one layer.

This checks a program's graph and fp16 numerics; it does not model the Neural Engine's or
the GPU's own kernels (their accumulation order and internal precision).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speechport.coreml.ops import KERNELS, OpArgs
from speechport.coreml.program import Block, Function, Op, Program, Var
from speechport.coreml.values import TensorType
from speechport.errors import BackendError

_CONSTANT_OPS = ("const",)


def _casts_saturate() -> Any:
    """A run's (and constant folding's) float state: a cast to a narrower type overflows to
    inf (and a NaN or inf cast to an integer is whatever numpy gives) without a warning, as
    the fp16 hardware does. Entered once per run, not per op: entering a numpy error state
    costs about what casting a decoder step's output does."""
    return np.errstate(over="ignore", invalid="ignore")


@dataclass
class Fp16Overflow:
    """An op whose finite float32 result became inf when rounded to its fp16 output."""

    op: str
    output: str
    count: int
    max_abs: float


@dataclass
class RunStats:
    """What the last run saw (filled only when ``check_overflow`` is on)."""

    overflows: list[Fp16Overflow] = field(default_factory=list)


class Interpreter:
    """One function of a program, ready to run."""

    def __init__(self, program: Program, function: str = "main") -> None:
        self.program = program
        self.function: Function = program.function(function)
        self._check_supported()
        self.constants: dict[str, Any] = {}
        with _casts_saturate():
            self._fold_constants(self.function.block)
        self._frees = _frees(self.function.block)
        self._plans: dict[int, list[tuple[Op, list[str]]]] = {}  # by id() of a program block
        self.stats = RunStats()
        self.check_overflow = False
        # called with each executed op and its outputs (e.g. to find a first divergence)
        self.observer: Callable[[Op, list[Any]], None] | None = None

    @property
    def precision(self) -> str:
        """``fp16`` if any computed value of the program is fp16, else ``fp32``."""
        for op in self.program.ops():
            if op.type in _CONSTANT_OPS or op.type.startswith("constexpr_"):
                continue
            if any(v.type is not None and v.type.dtype.name == "fp16" for v in op.outputs):
                return "fp16"
        return "fp32"

    @property
    def inputs(self) -> list[Var]:
        return self.function.inputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name for inputs by name (cast to the declared input types)."""
        self.stats = RunStats()
        env: dict[str, Any] = dict(self.constants)
        for var in self.function.inputs:
            if var.name not in feeds:
                raise BackendError(
                    f"input {var.name!r} was not given (the program takes "
                    f"{[v.name for v in self.function.inputs]})",
                    path=self.program.path,
                )
            env[var.name] = _coerce_input(feeds[var.name], var, self.program)
        unknown = set(feeds) - {v.name for v in self.function.inputs}
        if unknown:
            raise BackendError(
                f"the program has no inputs named {sorted(unknown)}", path=self.program.path
            )
        block = self.function.block
        with _casts_saturate():
            self._run_ops(block, env, self._frees)
        return {name: env[name] for name in block.outputs}

    # -- execution -------------------------------------------------------------------------

    def _run_ops(self, block: Block, env: dict[str, Any], frees: dict[int, list[str]]) -> None:
        for op, dropped in self._steps(block, frees):
            outputs = self._execute(op, env)
            for var, value in zip(op.outputs, outputs, strict=True):
                env[var.name] = value
            if self.observer is not None:
                self.observer(op, outputs)
            for name in dropped:
                env.pop(name, None)

    def _steps(self, block: Block, frees: dict[int, list[str]]) -> list[tuple[Op, list[str]]]:
        """The ops of ``block`` that run (folded constants left out), each with the values
        to drop after it (last read there, and neither a block output nor a constant);
        worked out on the block's first run."""
        steps = self._plans.get(id(block))
        if steps is None:
            keep = set(block.outputs)
            steps = [
                (op, [n for n in frees.get(i, ()) if n not in keep and n not in self.constants])
                for i, op in enumerate(block.ops)
                if not (op.outputs and all(v.name in self.constants for v in op.outputs))
            ]
            self._plans[id(block)] = steps
        return steps

    def _execute(self, op: Op, env: dict[str, Any]) -> list[Any]:
        inputs: dict[str, list[Any]] = {}
        for key, args in op.inputs.items():
            values = []
            for arg in args:
                if arg.name is None:
                    values.append(arg.value)
                elif arg.name in env:
                    values.append(env[arg.name])
                else:
                    raise self._error(op, f"its input {key!r} refers to {arg.name!r}, not defined")
            inputs[key] = values
        kernel = KERNELS.get(op.type)
        if kernel is None:
            raise self._unsupported(op)
        nested = (lambda b, xs: self._run_nested(b, xs, env)) if op.blocks else None
        try:
            result = kernel(OpArgs(op, inputs, nested))
        except BackendError as exc:
            raise self._error(op, exc.message) from exc
        except (ValueError, TypeError, IndexError, ArithmeticError) as exc:
            raise self._error(op, f"{type(exc).__name__}: {exc}") from exc
        results = list(result) if isinstance(result, tuple) else [result]
        if len(results) != len(op.outputs):
            raise self._error(
                op,
                f"the kernel gave {len(results)} outputs, the program declares {len(op.outputs)}",
            )
        return [
            self._coerce(op, var, value) for var, value in zip(op.outputs, results, strict=True)
        ]

    def _run_nested(
        self, block: Block, inputs: Sequence[Any], outer: Mapping[str, Any]
    ) -> list[Any]:
        """A nested block (``cond``, ``while_loop``): it sees the enclosing values."""
        env = dict(outer)
        for var, value in zip(block.inputs, inputs, strict=True):
            env[var.name] = self._coerce_block_input(var, value)
        self._run_ops(block, env, {})
        return [env[name] for name in block.outputs]

    def _coerce_block_input(self, var: Var, value: Any) -> Any:
        if var.type is None:
            return value
        return np.asarray(value).astype(var.type.dtype.np_dtype, copy=False)

    def _coerce(self, op: Op, var: Var, value: Any) -> Any:
        ttype = var.type
        if ttype is None or ttype.dtype.name == "string":
            return value
        array = np.asarray(value)
        target = ttype.dtype.np_dtype
        if array.dtype != target:
            if self.check_overflow and target == np.float16 and array.dtype.kind == "f":
                rounded = array.astype(np.float16)  # under _casts_saturate()
                _note_overflow(self.stats, op, var, array, rounded)
                array = rounded
            else:
                array = array.astype(target)  # under _casts_saturate()
        if ttype.static and ttype.shape is not None and array.shape != ttype.shape:
            raise self._error(
                op,
                f"output {var.name!r} came out with shape {list(array.shape)}, the program "
                f"declares {ttype.describe()}",
            )
        return array

    # -- load-time work ---------------------------------------------------------------------

    def _check_supported(self) -> None:
        missing = [op for op in self.program.ops() if op.type not in KERNELS]
        if missing:
            first = missing[0]
            others = sorted({op.type for op in missing} - {first.type})
            more = f"; also unsupported: {', '.join(others)}" if others else ""
            raise BackendError(
                f"{first.describe()} is not supported by the speechport MIL interpreter{more}",
                path=self.program.path,
                hint="run the package with the Core ML framework on macOS, or add the op's "
                "kernel to speechport.coreml.ops",
            )

    def _unsupported(self, op: Op) -> BackendError:
        return BackendError(
            f"{op.describe()} is not supported by the speechport MIL interpreter",
            path=self.program.path,
        )

    def _error(self, op: Op, message: str) -> BackendError:
        return BackendError(f"{op.describe()}: {message}", path=self.program.path)

    def _fold_constants(self, block: Block) -> None:
        """Evaluate ``const`` and ``constexpr_*`` ops (and nothing that reads an input)."""
        for op in block.ops:
            if op.type in _CONSTANT_OPS or op.type.startswith("constexpr_"):
                names = [a.name for args in op.inputs.values() for a in args if a.name]
                if all(n in self.constants for n in names):
                    outputs = self._execute(op, self.constants)
                    for var, value in zip(op.outputs, outputs, strict=True):
                        self.constants[var.name] = value


def _coerce_input(value: np.ndarray, var: Var, program: Program) -> np.ndarray:
    array = np.asarray(value)
    ttype: TensorType | None = var.type
    if ttype is None:
        return array
    if ttype.shape is not None and (
        len(ttype.shape) != array.ndim
        or any(d is not None and d != s for d, s in zip(ttype.shape, array.shape, strict=True))
    ):
        raise BackendError(
            f"input {var.name!r} has shape {list(array.shape)}, the program takes "
            f"{ttype.describe()}",
            path=program.path,
        )
    return array.astype(ttype.dtype.np_dtype, copy=False)


def _note_overflow(
    stats: RunStats, op: Op, var: Var, wide: np.ndarray, rounded: np.ndarray
) -> None:
    became_inf = np.isinf(rounded) & np.isfinite(wide)
    count = int(became_inf.sum())
    if count:
        stats.overflows.append(
            Fp16Overflow(op.describe(), var.name, count, float(np.abs(wide[became_inf]).max()))
        )


def _frees(block: Block) -> dict[int, list[str]]:
    """For each op index of ``block``, the values last read by that op (reads from nested
    blocks count for the op that owns them)."""
    last: dict[str, int] = {}

    def reads(op: Op) -> list[str]:
        names = [a.name for args in op.inputs.values() for a in args if a.name]
        for inner in op.blocks:
            for inner_op in inner.ops:
                names += reads(inner_op)
            names += inner.outputs
        return names

    for index, op in enumerate(block.ops):
        for name in reads(op):
            last[name] = index
    frees: dict[int, list[str]] = {}
    for name, index in last.items():
        frees.setdefault(index, []).append(name)
    return frees
