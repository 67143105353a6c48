"""Numpy kernels of MIL ops, registered by op type in ``KERNELS``."""

from speechport.coreml.ops import (  # noqa: F401 (importing registers the kernels)
    constexpr,
    control,
    elementwise,
    nn,
    recurrent,
    reduction,
    tensor,
)
from speechport.coreml.ops.base import KERNELS, OpArgs, kernel

__all__ = ["KERNELS", "OpArgs", "kernel"]
