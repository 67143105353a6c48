"""What an op kernel sees (``OpArgs``) and the table of kernels by MIL op type.

A kernel takes an ``OpArgs`` and returns one numpy array, or a tuple for ops with several
outputs. It computes floating point in float32 (fp16 inputs are widened on read); the
interpreter then casts each output to the type the program declares, which is where fp16
values are rounded. Integer ops keep int32 arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from speechport.errors import BackendError

if TYPE_CHECKING:
    from speechport.coreml.program import Block, Op

Kernel = Callable[["OpArgs"], Any]
KERNELS: dict[str, Kernel] = {}
_MISSING = object()


def kernel(*op_types: str) -> Callable[[Kernel], Kernel]:
    """Register a kernel for one or more MIL op types."""

    def register(func: Kernel) -> Kernel:
        for name in op_types:
            if name in KERNELS:
                raise RuntimeError(f"two kernels for MIL op {name!r}")
            KERNELS[name] = func
        return func

    return register


def widen(x: Any) -> np.ndarray:
    """A float tensor as float32 (fp16 widened); other tensors unchanged."""
    a = np.asarray(x)
    if a.dtype == np.float16:
        return a.astype(np.float32)
    return a


class OpArgs:
    """The resolved inputs and attributes of one op, with typed accessors."""

    def __init__(
        self,
        op: Op,
        inputs: dict[str, list[Any]],
        run_block: Callable[[Block, Sequence[Any]], list[Any]] | None = None,
    ) -> None:
        self.op = op
        self._inputs = inputs
        self._run_block = run_block

    @property
    def type(self) -> str:
        return self.op.type

    def has(self, name: str) -> bool:
        return name in self._inputs or name in self.op.attributes

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        """One input (or attribute) as stored: numpy array in its storage dtype, or str."""
        if name in self._inputs:
            values = self._inputs[name]
            if len(values) != 1:
                raise BackendError(f"input {name!r} has {len(values)} values, expected one")
            return values[0]
        if name in self.op.attributes:
            return self.op.attributes[name]
        if default is _MISSING:
            raise BackendError(f"required input {name!r} is missing")
        return default

    def many(self, name: str) -> list[Any]:
        """A variadic input (e.g. ``concat``'s ``values``)."""
        if name in self._inputs:
            return list(self._inputs[name])
        raise BackendError(f"required input {name!r} is missing")

    def tensor(self, name: str, default: Any = _MISSING) -> np.ndarray:
        """A tensor, float ones as float32."""
        return widen(self.raw(name, default))

    def optional(self, name: str) -> np.ndarray | None:
        """An optional tensor (None when absent), float ones as float32."""
        value = self.raw(name, None)
        return None if value is None else widen(value)

    def integer(self, name: str, default: Any = _MISSING) -> int:
        value = self.raw(name, default)
        return int(np.asarray(value).reshape(()))

    def number(self, name: str, default: Any = _MISSING) -> float:
        value = self.raw(name, default)
        return float(np.asarray(value, dtype=np.float64).reshape(()))

    def flag(self, name: str, default: Any = _MISSING) -> bool:
        value = self.raw(name, default)
        return bool(np.asarray(value).reshape(()))

    def text(self, name: str, default: Any = _MISSING) -> str:
        value = self.raw(name, default)
        if isinstance(value, np.ndarray):
            value = value.reshape(()).item()
        return str(value)

    def integers(self, name: str, default: Any = _MISSING) -> tuple[int, ...]:
        value = self.raw(name, default)
        if value is None:
            return ()
        return tuple(int(v) for v in np.asarray(value).reshape(-1))

    def flags(self, name: str, default: Any = _MISSING) -> tuple[bool, ...]:
        value = self.raw(name, default)
        if value is None:
            return ()
        return tuple(bool(v) for v in np.asarray(value).reshape(-1))

    def out_dtype(self, index: int = 0) -> str:
        """The MIL name of the declared data type of output ``index`` (e.g. ``fp16``)."""
        ttype = self.op.outputs[index].type
        return ttype.dtype.name if ttype is not None else "?"

    def run_block(self, block: Block, inputs: Sequence[Any]) -> list[Any]:
        if self._run_block is None:
            raise BackendError("nested blocks cannot run here")
        return self._run_block(block, inputs)


def axis_of(axis: int, rank: int) -> int:
    """A possibly negative axis as an index in ``range(rank)``."""
    if not -rank <= axis < max(rank, 1):
        raise BackendError(f"axis {axis} out of range for rank {rank}")
    return axis % max(rank, 1)
