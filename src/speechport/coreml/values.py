"""MIL values: the data types of a Core ML program and how its constants are stored.

A constant is either an *immediate* value inside the program (``TensorValue``: floats, ints,
bools, strings, 64-bit ints, doubles, or packed ``bytes`` for fp16, 8-bit and sub-byte types)
or a *blob file* value: an offset into ``weights/weight.bin``, read with coremltools' own blob
storage reader (which also unpacks sub-byte data). Values are numpy arrays in their storage
dtype (float16 stays float16); sub-byte integers are unpacked into int8 / uint8 arrays.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechport.errors import BackendError


@dataclass(frozen=True)
class DType:
    """One MIL data type: its name in the MIL text format, numpy storage dtype and bit width."""

    name: str
    np_dtype: type[np.generic]
    bits: int
    signed: bool = False

    @property
    def is_float(self) -> bool:
        return self.name.startswith("fp")

    @property
    def is_int(self) -> bool:
        return self.name.startswith(("int", "uint"))

    @property
    def sub_byte(self) -> bool:
        return self.is_int and self.bits < 8


# Proto enum name -> DType (the MIL text names used by ``cast`` and ``constexpr_cast``).
_DTYPES: dict[str, DType] = {
    "BOOL": DType("bool", np.bool_, 8),
    "STRING": DType("string", np.str_, 0),
    "FLOAT16": DType("fp16", np.float16, 16, True),
    "FLOAT32": DType("fp32", np.float32, 32, True),
    "FLOAT64": DType("fp64", np.float64, 64, True),
    "INT4": DType("int4", np.int8, 4, True),
    "INT8": DType("int8", np.int8, 8, True),
    "INT16": DType("int16", np.int16, 16, True),
    "INT32": DType("int32", np.int32, 32, True),
    "INT64": DType("int64", np.int64, 64, True),
    "UINT1": DType("uint1", np.uint8, 1),
    "UINT2": DType("uint2", np.uint8, 2),
    "UINT3": DType("uint3", np.uint8, 3),
    "UINT4": DType("uint4", np.uint8, 4),
    "UINT6": DType("uint6", np.uint8, 6),
    "UINT8": DType("uint8", np.uint8, 8),
    "UINT16": DType("uint16", np.uint16, 16),
    "UINT32": DType("uint32", np.uint32, 32),
    "UINT64": DType("uint64", np.uint64, 64),
}
BY_NAME: dict[str, DType] = {d.name: d for d in _DTYPES.values()}
# ``cast``'s dtype strings also accept these spellings.
BY_NAME.update({"int1": BY_NAME["bool"], "float16": BY_NAME["fp16"], "float32": BY_NAME["fp32"]})


def dtype_from_proto(code: int) -> DType:
    from coremltools.proto import MIL_pb2

    name = MIL_pb2.DataType.Name(code)
    try:
        return _DTYPES[name]
    except KeyError:
        raise BackendError(f"MIL data type {name} is not supported by the interpreter") from None


def dtype_named(name: str) -> DType:
    try:
        return BY_NAME[name]
    except KeyError:
        raise BackendError(f"unknown MIL data type {name!r}") from None


def unpack_bits(packed: np.ndarray, nbits: int, count: int, *, signed: bool) -> np.ndarray:
    """Elements packed LSB first, ``nbits`` each, into bytes (MIL's sub-byte layout)."""
    flat = np.unpackbits(np.ascontiguousarray(packed).view(np.uint8), bitorder="little")
    if flat.size < nbits * count:
        raise BackendError(f"packed data holds {flat.size // nbits} elements, need {count}")
    bits = flat[: nbits * count].reshape(count, nbits).astype(np.int32)
    values = bits @ (1 << np.arange(nbits, dtype=np.int32))
    if signed:
        values = np.where(values >= 1 << (nbits - 1), values - (1 << nbits), values)
        return values.astype(np.int8)
    return values.astype(np.uint8)


@dataclass(frozen=True)
class TensorType:
    """A value's declared type: data type and shape (``None`` for a dimension not fixed)."""

    dtype: DType
    shape: tuple[int | None, ...] | None  # None: rank unknown

    @functools.cached_property
    def static(self) -> bool:
        return self.shape is not None and all(d is not None for d in self.shape)

    def describe(self) -> str:
        dims = (
            "?"
            if self.shape is None
            else ", ".join("?" if d is None else str(d) for d in self.shape)
        )
        return f"tensor<{self.dtype.name}, [{dims}]>"


def tensor_type(value_type: Any) -> TensorType | None:
    """The TensorType of a proto ``ValueType`` (None for list, tuple, dict and state types)."""
    if value_type.WhichOneof("type") != "tensorType":
        return None
    t = value_type.tensorType
    dims: list[int | None] = [
        int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None
        for d in t.dimensions
    ]
    shape = tuple(dims) if t.rank >= 0 and len(dims) == t.rank else None
    return TensorType(dtype_from_proto(t.dataType), shape)


class BlobFiles:
    """Readers of the blob files (``@model_path/weights/weight.bin``) of one package."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._readers: dict[Path, Any] = {}

    def read(self, file_name: str, offset: int, dtype: DType) -> np.ndarray:
        from coremltools.libmilstoragepython import _BlobStorageReader

        prefix = "@model_path/"
        relative = file_name[len(prefix) :] if file_name.startswith(prefix) else file_name
        path = (self.model_dir / relative).resolve()
        if self.model_dir.resolve() not in path.parents:
            raise BackendError(f"blob file {file_name!r} lies outside the package")
        if path not in self._readers:
            if not path.is_file():
                raise BackendError(f"weights file {file_name!r} is missing", path=path)
            self._readers[path] = _BlobStorageReader(str(path))
        reader = self._readers[path]
        method = {
            "fp16": "read_fp16_data",
            "fp32": "read_float_data",
            "int4": "read_int4_data",
            "int8": "read_int8_data",
            "int16": "read_int16_data",
            "int32": "read_int32_data",
            "uint1": "read_uint1_data",
            "uint2": "read_uint2_data",
            "uint3": "read_uint3_data",
            "uint4": "read_uint4_data",
            "uint6": "read_uint6_data",
            "uint8": "read_uint8_data",
            "uint16": "read_uint16_data",
            "uint32": "read_uint32_data",
        }.get(dtype.name)
        if method is None:
            raise BackendError(f"blob values of type {dtype.name} cannot be read")
        data = np.asarray(getattr(reader, method)(offset))
        if dtype.name == "fp16":
            data = data.view(np.float16)
        return data.astype(dtype.np_dtype, copy=False)


def decode_value(value: Any, blobs: BlobFiles) -> Any:
    """A proto ``Value`` as a numpy array of its declared shape, or a str for a scalar string."""
    ttype = tensor_type(value.type)
    if ttype is None:
        raise BackendError(f"constant of type {value.type.WhichOneof('type')} is not supported")
    if ttype.shape is None or not ttype.static:
        raise BackendError(f"constant of unknown shape ({ttype.describe()})")
    shape: tuple[int, ...] = tuple(d for d in ttype.shape if d is not None)
    count = int(np.prod(shape, dtype=np.int64))
    dtype = ttype.dtype
    kind = value.WhichOneof("value")
    if kind == "blobFileValue":
        flat = blobs.read(value.blobFileValue.fileName, value.blobFileValue.offset, dtype)
    elif kind == "immediateValue":
        flat = _immediate(value.immediateValue, dtype, count)
    else:
        raise BackendError("constant without a value")
    if dtype.name == "string":
        strings = [str(s) for s in flat]
        return strings[0] if shape == () else np.array(strings).reshape(shape)
    if flat.size != count:
        raise BackendError(f"constant holds {flat.size} elements, its type {ttype.describe()}")
    return flat.reshape(shape)


def _immediate(immediate: Any, dtype: DType, count: int) -> Any:
    if immediate.WhichOneof("value") != "tensor":
        raise BackendError(f"immediate {immediate.WhichOneof('value')} values are not supported")
    tensor = immediate.tensor
    field = tensor.WhichOneof("value")
    if field is None:  # an empty tensor
        return np.zeros(0, dtype=dtype.np_dtype)
    if field == "strings":
        return list(tensor.strings.values)
    if field == "bytes":
        raw = np.frombuffer(tensor.bytes.values, dtype=np.uint8)
        if dtype.sub_byte:
            return unpack_bits(raw, dtype.bits, count, signed=dtype.signed)
        return raw.view(dtype.np_dtype).copy()
    values = getattr(tensor, field).values
    return np.asarray(list(values)).astype(dtype.np_dtype)
