"""Workarounds the current converters need, kept in one place.

Each patch says what breaks, with which versions, and is applied only for the duration of a
conversion (a context manager), so importing speechport changes nothing globally.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, redirect_stderr
from typing import Any

import numpy as np

from speechport.coreml.quiet import quiet_coremltools  # re-exported: it moved to the runtime side

__all__ = ["coreml_conversion_patches", "quiet_coremltools"]


@contextmanager
def coreml_conversion_patches() -> Iterator[None]:
    """Patches active while coremltools converts a traced module."""
    with ExitStack() as stack:
        stack.enter_context(_scalar_casts_under_numpy2())
        stack.enter_context(_integer_floor_division())
        stack.enter_context(_hide_progress_bars())
        yield


@contextmanager
def _hide_progress_bars() -> Iterator[None]:
    """coremltools draws tqdm bars for every pass with no switch to turn them off; speechport
    shows its own progress. The captured text is replayed only if the conversion fails."""
    real = sys.stderr
    captured = io.StringIO()
    try:
        with redirect_stderr(captured):
            yield
    except BaseException:
        real.write(captured.getvalue()[-4000:])
        raise


@contextmanager
def _integer_floor_division() -> Iterator[None]:
    """``torch.div(a, b, rounding_mode="floor")`` on integer tensors stays integer.

    coremltools 9 converts every ``aten::div`` by casting both operands to fp32; in an fp16
    program that cast becomes fp16, which cannot hold every integer above 2048, so a length
    like 2052 // 2 comes out as 514 instead of 513 (the off-by-one ``encoded_len`` of fp16
    GigaAM ports made without this). MIL's ``floor_div`` takes int32 operands, so integer
    floor division is converted as that.
    """
    from coremltools.converters.mil import Builder as mb  # noqa: N813 (coremltools idiom)
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY
    from coremltools.converters.mil.mil import types

    table = _TORCH_OPS_REGISTRY.name_to_func_mapping
    original = table.get("div")

    def convert(context: Any, node: Any) -> None:
        inputs = _get_inputs(context, node, min_expected=2)
        mode = inputs[2].val if len(inputs) > 2 and inputs[2] is not None else None
        x, y = inputs[0], inputs[1]
        if mode == "floor" and types.is_int(x.dtype) and types.is_int(y.dtype):
            y = mb.cast(x=y, dtype="int32") if y.dtype != types.int32 else y
            x = mb.cast(x=x, dtype="int32") if x.dtype != types.int32 else x
            context.add(mb.floor_div(x=x, y=y, name=node.name))
            return
        assert original is not None
        original(context, node)

    try:
        if original is not None:
            table["div"] = convert
        yield
    finally:
        if original is not None:
            table["div"] = original


@contextmanager
def _scalar_casts_under_numpy2() -> Iterator[None]:
    """``aten::Int`` / ``aten::Bool`` on a constant-folded one-element tensor.

    torch >= 2.9 traces sizes used in ``view``/slicing as ``aten::Int`` of a ``[1]``-shaped
    constant. coremltools 8-9 converts it with ``int(x.val)``, which numpy >= 2 refuses for a
    1-D array ("only 0-dimensional arrays can be converted to Python scalars"). The override
    takes ``.item()`` of constants and defers everything else to the original converter.
    """
    from coremltools.converters.mil import Builder as mb  # noqa: N813 (coremltools idiom)
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    table = _TORCH_OPS_REGISTRY.name_to_func_mapping
    saved = {name: table.get(name) for name in ("int", "bool")}

    def patched(name: str, kind: type) -> Callable[[Any, Any], None]:
        original = saved[name]

        def convert(context: Any, node: Any) -> None:
            x = _get_inputs(context, node, expected=1)[0]
            value = x.val if x.can_be_folded_to_const() else None
            if isinstance(value, np.ndarray) and value.size == 1:
                context.add(mb.const(val=kind(value.reshape(()).item()), name=node.name))
                return
            assert original is not None
            original(context, node)

        return convert

    try:
        for name, kind in (("int", int), ("bool", bool)):
            if saved[name] is not None:
                table[name] = patched(name, kind)
        yield
    finally:
        for name, func in saved.items():
            if func is not None:
                table[name] = func
