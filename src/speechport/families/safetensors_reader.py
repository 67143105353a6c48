"""Read ``.safetensors`` files with numpy: a JSON header, then raw little-endian tensors.

The format cannot carry code, so reading it is safe by construction; this reader still
checks every offset against the file so a corrupt file is an error, not garbage.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from speechport.errors import CheckpointError

_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
    "BF16": "<u2",
}
_MAX_HEADER = 100 * 1024 * 1024


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file, by name (bf16 widened to float32)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("file not found", path=path, hint="check the path")
    data = path.read_bytes()
    if len(data) < 8:
        raise CheckpointError("not a safetensors file (too short)", path=path)
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(_MAX_HEADER, len(data) - 8):
        raise CheckpointError("not a safetensors file (bad header length)", path=path)
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError("not a safetensors file (header is not JSON)", path=path) from exc
    body = memoryview(data)[8 + header_len :]
    tensors: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(_DTYPES[entry["dtype"]])
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"tensor {name!r} has a malformed header entry", path=path
            ) from exc
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(body) or end - begin != count * dtype.itemsize:
            raise CheckpointError(
                f"tensor {name!r} points outside the file or has the wrong size",
                path=path,
                hint="the file is truncated or corrupt",
            )
        array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()
        if entry["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array
    return tensors
