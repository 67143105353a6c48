"""Read an ONNX file's graph (nodes, attributes, float and integer initializers) without the
``onnx`` package, which the runtime does not depend on.

ONNX files are Protocol Buffers; this reads the few fields of ``ModelProto``,
``GraphProto``, ``NodeProto``, ``AttributeProto`` and ``TensorProto`` that recognising a
small per-step graph needs (see ``speechport.runtime.numpy_steps``) and skips every other
field by its wire type. Tensors stored outside the file (external data) are not read:
``Graph.initializers`` leaves them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# TensorProto.DataType values read here.
_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 11: np.float64}


@dataclass
class Node:
    op_type: str
    inputs: list[str]
    outputs: list[str]
    ints: dict[str, list[int]] = field(default_factory=dict)  # int and ints attributes
    floats: dict[str, list[float]] = field(default_factory=dict)
    strings: dict[str, list[bytes]] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def attributes(self) -> set[str]:
        return {*self.ints, *self.floats, *self.strings, *self.tensors}


@dataclass
class Graph:
    nodes: list[Node]
    initializers: dict[str, np.ndarray]
    inputs: list[str]
    outputs: list[str]

    def producer(self, name: str) -> Node | None:
        """The node whose output ``name`` is (None: a graph input or an initializer)."""
        for node in self.nodes:
            if name in node.outputs:
                return node
        return None

    def value(self, name: str) -> np.ndarray | None:
        """The constant ``name`` holds: an initializer or a ``Constant`` node's value."""
        if name in self.initializers:
            return self.initializers[name]
        node = self.producer(name)
        if node is not None and node.op_type == "Constant" and "value" in node.tensors:
            return node.tensors["value"]
        return None


class ProtobufError(ValueError):
    """The bytes are not the protobuf message they should be."""


def read_graph(path: Path) -> Graph:
    """The graph of the ONNX file at ``path`` (``ProtobufError`` if it cannot be parsed)."""
    model = Path(path).read_bytes()
    graph = next((v for f, v in _fields(model) if f == 7), None)  # ModelProto.graph
    if not isinstance(graph, bytes):
        raise ProtobufError("no graph in the model")
    nodes: list[Node] = []
    initializers: dict[str, np.ndarray] = {}
    inputs: list[str] = []
    outputs: list[str] = []
    for number, value in _fields(graph):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            nodes.append(_node(value))
        elif number == 5:
            name, array = _tensor(value)
            if array is not None:
                initializers[name] = array
        elif number == 11:
            inputs.append(_value_info_name(value))
        elif number == 12:
            outputs.append(_value_info_name(value))
    return Graph(nodes, initializers, inputs, outputs)


def _node(data: bytes) -> Node:
    node = Node("", [], [])
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            node.inputs.append(value.decode())
        elif number == 2 and isinstance(value, bytes):
            node.outputs.append(value.decode())
        elif number == 4 and isinstance(value, bytes):
            node.op_type = value.decode()
        elif number == 5 and isinstance(value, bytes):
            _attribute(value, node)
    return node


def _attribute(data: bytes, node: Node) -> None:
    name = ""
    ints: list[int] = []
    floats: list[float] = []
    strings: list[bytes] = []
    tensor: np.ndarray | None = None
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            name = value.decode()
        elif number == 2 and isinstance(value, float):
            floats.append(value)
        elif number == 3 and isinstance(value, int):
            ints.append(_signed(value))
        elif number == 4 and isinstance(value, bytes):
            strings.append(value)
        elif number == 5 and isinstance(value, bytes):
            tensor = _tensor(value)[1]
        elif number == 7:  # floats
            floats += (
                list(np.frombuffer(value, "<f4").astype(float))
                if isinstance(value, bytes)
                else [float(value)]
            )
        elif number == 8:  # ints
            ints += _varints(value) if isinstance(value, bytes) else [_signed(int(value))]
        elif number == 9 and isinstance(value, bytes):
            strings.append(value)
    if ints:
        node.ints[name] = ints
    if floats:
        node.floats[name] = floats
    if strings:
        node.strings[name] = strings
    if tensor is not None:
        node.tensors[name] = tensor


def _tensor(data: bytes) -> tuple[str, np.ndarray | None]:
    """(name, values) of a TensorProto; values None when stored elsewhere or of a type not
    read here."""
    dims: list[int] = []
    dtype = 0
    name = ""
    raw: bytes | None = None
    floats: list[float] = []
    integers: list[int] = []
    external = False
    for number, value in _fields(data):
        if number == 1:
            dims += _varints(value) if isinstance(value, bytes) else [_signed(int(value))]
        elif number == 2 and isinstance(value, int):
            dtype = value
        elif number == 4:  # float_data
            if isinstance(value, bytes):
                floats += list(np.frombuffer(value, "<f4").astype(float))
            else:
                floats.append(float(value))
        elif number in (5, 7):  # int32_data, int64_data
            integers += _varints(value) if isinstance(value, bytes) else [_signed(int(value))]
        elif number == 8 and isinstance(value, bytes):
            name = value.decode()
        elif number == 9 and isinstance(value, bytes):
            raw = value
        elif number == 13 or (number == 14 and value == 1):
            external = True
    if external or dtype not in _DTYPES:
        return name, None
    np_dtype = np.dtype(_DTYPES[dtype]).newbyteorder("<")
    if raw is not None:
        array = np.frombuffer(raw, dtype=np_dtype).astype(_DTYPES[dtype])
    elif floats:
        array = np.array(floats, dtype=_DTYPES[dtype])
    else:
        array = np.array(integers, dtype=_DTYPES[dtype])
    count = int(np.prod(dims)) if dims else 1
    if array.size != count:
        raise ProtobufError(f"tensor {name!r}: {array.size} values for the shape {dims}")
    return name, array.reshape(dims)


def _value_info_name(data: bytes) -> str:
    return next((v.decode() for f, v in _fields(data) if f == 1 and isinstance(v, bytes)), "")


def _fields(data: bytes) -> Iterator[tuple[int, int | float | bytes]]:
    """(field number, value) of every field of a message: varints as ints, 32-bit floats
    as floats, length-delimited fields as bytes; 64-bit fields as ints."""
    view = memoryview(data)
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(view, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(view, position)
            yield number, value
        elif wire == 1:
            yield number, int.from_bytes(view[position : position + 8], "little")
            position += 8
        elif wire == 2:
            size, position = _varint(view, position)
            if position + size > end:
                raise ProtobufError("a field runs past the end of its message")
            yield number, bytes(view[position : position + size])
            position += size
        elif wire == 5:
            yield number, float(np.frombuffer(view[position : position + 4], "<f4")[0])
            position += 4
        else:
            raise ProtobufError(f"wire type {wire} is not one ONNX uses")


def _varint(view: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(view):
            raise ProtobufError("a varint runs past the end of the message")
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _varints(data: bytes | int | float) -> list[int]:
    """A packed repeated varint field."""
    if not isinstance(data, bytes):
        return [_signed(int(data))]
    view = memoryview(data)
    out, position = [], 0
    while position < len(view):
        value, position = _varint(view, position)
        out.append(_signed(value))
    return out


def _signed(value: int) -> int:
    """A varint read as a two's-complement int64 (how protobuf stores negative ints)."""
    return value - (1 << 64) if value >= 1 << 63 else value
