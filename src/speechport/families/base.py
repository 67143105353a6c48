"""What a model family hands to the exporters and to the torch reference backend.

A family knows one architecture and one checkpoint format. It loads a checkpoint into its
own torch modules and describes the bundle to build: the components (each a torch module
with canonical inputs and outputs, plus the layout its ONNX file keeps for other runtimes),
the front end, the decoding, the tokenizer and any extra files. Everything downstream works
from that description, never from the family's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from speechport.errors import CheckpointError
from speechport.manifest import (
    ComponentSpec,
    ConstantInput,
    DecodingSpec,
    StreamingSpec,
    TensorSpec,
    TokenizerSpec,
    VadSpec,
    WindowSpec,
)


@dataclass
class OnnxLayout:
    """How a component's ONNX file is laid out (file name, tensor names, dtypes, axes).

    ``module`` takes ``example_inputs`` in this layout; ``inputs``/``outputs`` correspond
    in order and element count to the component's canonical ones.

    Where another runtime calls the file positionally with extra tensors (NeMo's
    ``target_length`` in, ``prednet_lengths`` out), ``input_order`` names every graph input
    in order (``inputs`` and ``constants`` by name; the module then takes all of them, the
    constants being real graph inputs) and ``output_order`` every graph output
    (``outputs`` and ``unused_outputs``, which the runtime does not read). ``metadata``
    becomes the file's ``metadata_props``.
    """

    file_name: str
    module: nn.Module
    example_inputs: tuple[Tensor, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    constants: tuple[ConstantInput, ...] = ()
    input_order: tuple[str, ...] = ()
    unused_outputs: tuple[TensorSpec, ...] = ()
    output_order: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    # Graph inputs with a default value (an initializer of the same name): runtimes that do
    # not know them may leave them out.
    defaults: tuple[ConstantInput, ...] = ()


@dataclass(frozen=True)
class ShapeBuckets:
    """The sizes a component's Core ML file takes on one axis of one input (enumerated
    shapes: one program and one set of weights for all of them), ascending, the largest
    the canonical size; ``outputs`` maps each output whose axis follows them to that axis.
    A runtime feeds the smallest size that holds its data (e.g. an encoder's features
    padded to a 5 s bucket instead of the 30 s window)."""

    input: str
    axis: int
    sizes: tuple[int, ...]
    outputs: dict[str, int] = field(default_factory=dict)


@dataclass
class ExportableComponent:
    """A component: its canonical contract, the torch module that implements it, and its
    ONNX layout. ``formats`` limits the formats it is exported to (e.g. a fused variant
    only Core ML needs); ``coreml_precision`` overrides the bundle's Core ML precision (a
    front end that float16 cannot compute); ``coreml_buckets`` lets its Core ML file take
    shorter inputs too (the module is traced once, at the canonical shape)."""

    spec: ComponentSpec
    module: nn.Module
    example_inputs: tuple[Tensor, ...]
    onnx: OnnxLayout
    formats: tuple[str, ...] = ("coreml", "onnx")
    coreml_precision: str | None = None
    coreml_buckets: ShapeBuckets | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class BundlePlan:
    """Everything a bundle holds except the converted component files."""

    family: str
    variant: str
    task: str
    sample_rate: int
    frontend: dict[str, Any]
    components: list[ExportableComponent]
    window: WindowSpec | None = None
    decoding: DecodingSpec | None = None
    tokenizer: TokenizerSpec | None = None
    vad: VadSpec | None = None
    streaming: StreamingSpec | None = None
    # The ``tts`` manifest section of a speech-synthesis bundle (speechport.tasks.tts).
    tts: dict[str, Any] | None = None
    tokens: list[str] = field(default_factory=list)
    # Files copied or written into the bundle, by relative path. ``onnx_files`` only with
    # ONNX.
    files: dict[str, bytes] = field(default_factory=dict)
    onnx_files: dict[str, bytes] = field(default_factory=dict)
    description: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    # The family's plan options this plan was made with (recorded in the provenance, so the
    # torch reference rebuilds the same components).
    options: dict[str, Any] = field(default_factory=dict)

    def component(self, role: str) -> ExportableComponent:
        for comp in self.components:
            if comp.spec.role == role:
                return comp
        raise KeyError(role)


@dataclass
class LoadedCheckpoint:
    """A checkpoint loaded into the family's torch model."""

    family: str
    variant: str
    model: nn.Module
    config: Any
    checkpoint: Path
    tokenizer_path: Path | None
    checkpoint_sha256: str
    tokenizer_sha256: str | None = None
    notes: list[str] = field(default_factory=list)


class Family(Protocol):
    """The interface every model family implements."""

    name: str

    def load(self, checkpoint: Path | None, *, tokenizer: Path | None = None) -> LoadedCheckpoint:
        """Read a checkpoint safely into torch modules (eval mode, fp32); ``None`` where the
        family has a default source (an installed package's weights)."""
        ...

    def plan(
        self, loaded: LoadedCheckpoint, *, window_seconds: float | None = None, **options: Any
    ) -> BundlePlan:
        """Describe the bundle (for a fixed window, where the family has one; ``options``
        are the family's own, e.g. which lookaheads a streaming bundle exports)."""
        ...


def refuse_options(family: str, options: dict[str, Any]) -> None:
    """A family that takes no plan options says so when given some."""
    if options:
        raise CheckpointError(
            f"the {family} family takes no option {', '.join(sorted(options))}",
            hint="leave it out for this family",
        )


def load_weights(
    model: nn.Module,
    weights: dict[str, np.ndarray],
    *,
    source: Path | None,
    architecture: str,
    hint: str,
) -> None:
    """Load numpy ``weights`` (already renamed to the model's names) into ``model``; names
    that are missing or unexpected are listed in the error (``architecture`` says what the
    config described), so a corrupt or mismatched checkpoint is named, not half-loaded."""
    tensors = {
        k: torch.from_numpy(np.array(v, dtype=np.float32 if v.dtype.kind == "f" else None))
        for k, v in weights.items()
    }
    expected = set(model.state_dict())
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        detail = "; ".join(
            part
            for part in (
                f"missing {_few(missing)}" if missing else "",
                f"unexpected {_few(unexpected)}" if unexpected else "",
            )
            if part
        )
        raise CheckpointError(
            f"weights do not fit {architecture}: {detail}",
            path=source,
            component="state_dict",
            hint=hint,
        )
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"weights do not fit the architecture: {str(exc).splitlines()[-1].strip()}",
            path=source,
            component="state_dict",
        ) from exc


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown} (+{len(keys) - n} more)" if len(keys) > n else shown
