"""A Core ML ML Program read from an ``.mlpackage``: functions, blocks and ops as plain data.

The package is read with coremltools (``ModelPackage`` for the root model, the protobuf
``Model`` spec, the blob storage reader for weights), which works on any platform. Every
constant (``const`` ops' values, inline arguments, attributes) is decoded once here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechport.coreml.quiet import quiet_coremltools
from speechport.coreml.values import BlobFiles, TensorType, decode_value, tensor_type
from speechport.errors import BackendError


@dataclass(frozen=True)
class Arg:
    """One binding of an op input: a reference to a named value, or an inline constant."""

    name: str | None = None
    value: Any = None


@dataclass(frozen=True)
class Var:
    """A named value with its declared type (None for list / tuple / state types)."""

    name: str
    type: TensorType | None


@dataclass
class Op:
    type: str
    inputs: dict[str, list[Arg]]
    attributes: dict[str, Any]
    outputs: list[Var]
    blocks: list[Block]
    where: str  # e.g. "main op #12" or "main op #12 block 0 op #3"

    def describe(self) -> str:
        names = ", ".join(v.name for v in self.outputs) or "no outputs"
        return f"op {self.type!r} ({self.where}, output {names})"


@dataclass
class Block:
    inputs: list[Var]
    ops: list[Op]
    outputs: list[str]


@dataclass
class Function:
    name: str
    opset: str
    inputs: list[Var]
    block: Block


@dataclass
class Program:
    """The program of one package, and where it came from (for error messages)."""

    path: Path
    functions: dict[str, Function]
    spec_version: int
    output_names: list[str] = field(default_factory=list)

    def function(self, name: str = "main") -> Function:
        try:
            return self.functions[name]
        except KeyError:
            raise BackendError(
                f"the program has no function {name!r} (has {sorted(self.functions)})",
                path=self.path,
            ) from None

    def ops(self) -> list[Op]:
        """Every op, nested blocks included, in program order."""
        out: list[Op] = []

        def walk(block: Block) -> None:
            for op in block.ops:
                out.append(op)
                for inner in op.blocks:
                    walk(inner)

        for function in self.functions.values():
            walk(function.block)
        return out


def load_program(path: str | Path) -> Program:
    """Read an ``.mlpackage`` (or a bare ``.mlmodel`` ML Program with its weights beside it)."""
    quiet_coremltools()
    path = Path(path)
    if not path.exists():
        raise BackendError("Core ML package not found", path=path)
    try:
        model_file = _root_model_file(path)
        from coremltools.proto import Model_pb2

        spec = Model_pb2.Model()
        spec.ParseFromString(model_file.read_bytes())
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(
            f"cannot read the Core ML package ({type(exc).__name__}: {exc})", path=path
        ) from exc
    if spec.WhichOneof("Type") != "mlProgram":
        raise BackendError(
            f"the model is a {spec.WhichOneof('Type')}, not an ML Program; the interpreter runs "
            "ML Programs only",
            path=path,
            hint="convert with convert_to='mlprogram'",
        )
    blobs = BlobFiles(model_file.parent)
    try:
        functions = {
            name: _function(name, f, blobs) for name, f in spec.mlProgram.functions.items()
        }
    except BackendError as exc:
        raise BackendError(exc.message, path=path, hint=exc.hint) from exc
    outputs = [o.name for o in spec.description.output]
    return Program(path, functions, int(spec.specificationVersion), outputs)


def _root_model_file(path: Path) -> Path:
    if path.is_file():
        return path
    from coremltools.libmodelpackage import ModelPackage

    return Path(ModelPackage(str(path)).getRootModel().path())


def _function(name: str, spec: Any, blobs: BlobFiles) -> Function:
    opset = spec.opset
    if opset not in spec.block_specializations:
        raise BackendError(f"function {name!r} has no block for its opset {opset}")
    inputs = [Var(v.name, tensor_type(v.type)) for v in spec.inputs]
    block = _block(spec.block_specializations[opset], blobs, name)
    return Function(name, opset, inputs, block)


def _block(spec: Any, blobs: BlobFiles, where: str) -> Block:
    ops = [_op(op, blobs, f"{where} op #{i}") for i, op in enumerate(spec.operations)]
    inputs = [Var(v.name, tensor_type(v.type)) for v in spec.inputs]
    return Block(inputs, ops, list(spec.outputs))


def _op(spec: Any, blobs: BlobFiles, where: str) -> Op:
    inputs: dict[str, list[Arg]] = {}
    for key, argument in spec.inputs.items():
        bindings = []
        for binding in argument.arguments:
            if binding.WhichOneof("binding") == "name":
                bindings.append(Arg(name=binding.name))
            else:
                bindings.append(Arg(value=_decoded(binding.value, blobs, where, key)))
        inputs[key] = bindings
    attributes = {
        key: _decoded(value, blobs, where, key)
        for key, value in spec.attributes.items()
        if key != "name"
    }
    outputs = [Var(v.name, tensor_type(v.type)) for v in spec.outputs]
    blocks = [_block(b, blobs, f"{where} block {i}") for i, b in enumerate(spec.blocks)]
    return Op(spec.type, inputs, attributes, outputs, blocks, where)


def _decoded(value: Any, blobs: BlobFiles, where: str, key: str) -> Any:
    try:
        return decode_value(value, blobs)
    except BackendError as exc:
        raise BackendError(f"{where} ({key}): {exc.message}") from exc
