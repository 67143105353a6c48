"""The Backend protocol: an inference engine that turns a manifest component into a callable.

A loaded component is called with its canonical inputs, positionally, as numpy arrays, and
returns its canonical outputs, positionally. Each kind has a fixed calling convention:

- ``encoder(features, length) -> (encoded | log_probs, encoded_len)``
- ``decoder_step(token, *state_inputs) -> (dec_out, *state_outputs)`` (state pairs in
  manifest order)
- ``joint(enc_t, dec_t) -> (logits,)``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from speechport.errors import BundleError
from speechport.manifest import NP_DTYPES, ComponentSpec, Manifest, TensorSpec


class Component(Protocol):
    spec: ComponentSpec

    def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]: ...


class Backend(Protocol):
    """An engine able to run a bundle's components."""

    name: str

    @property
    def engine(self) -> str:
        """What actually runs, for reports (e.g. ``onnxruntime 1.20, CPUExecutionProvider``)."""
        ...

    def load(self, bundle: Path, manifest: Manifest, role: str) -> Component: ...


class JointProjections(Protocol):
    """A joint ``f(enc, dec) = out(act(P(enc) + Q(dec)))`` in its parts, for a decoding loop
    that projects a window's frames at once and each decoder output once: ``scores`` of a
    projected frame and a projected decoder output have the argmax of ``f``. Projections
    that know ``Q`` as an affine map may also offer it as ``decoder_affine`` (``W``, ``b``),
    for a predictor that fuses it into its own products (``predictor_for``)."""

    def project_encoder(self, frames: np.ndarray) -> np.ndarray:
        """``[T, D]`` -> ``[T, J]``."""
        ...

    def project_decoder(self, dec: np.ndarray) -> np.ndarray:
        """``[H]`` -> ``[J]``."""
        ...

    def scores(self, enc: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """``[J]``, ``[J]`` -> ``[C]``."""
        ...


def joint_projections(component: Component) -> JointProjections | None:
    """The joint's ``JointProjections`` when its engine offers them (wrappers forward them)."""
    projections: JointProjections | None = getattr(component, "projections", None)
    return projections


def dynamic_axes(component: Component, index: int = 0) -> frozenset[int]:
    """The axes of ``component``'s canonical input ``index`` that it takes at any size
    (none for fixed-shape files and for components that do not say)."""
    axes: tuple[frozenset[int], ...] = getattr(component, "dynamic_inputs", ())
    return axes[index] if index < len(axes) else frozenset()


def dynamic_inputs(component: Component) -> tuple[frozenset[int], ...]:
    """``dynamic_axes`` of every input: what a wrapper around ``component`` declares, so that
    wrapping (timing, recording) does not change the shapes it is fed."""
    return tuple(dynamic_axes(component, i) for i in range(len(component.spec.inputs)))


def bucket_sizes(component: Component, index: int = 0) -> dict[int, tuple[int, ...]]:
    """The axes of ``component``'s canonical input ``index`` that it takes at a few sizes
    (a Core ML input with enumerated shapes), with those sizes in ascending order; empty
    for components that do not say."""
    buckets: tuple[dict[int, tuple[int, ...]], ...] = getattr(component, "input_buckets", ())
    return dict(buckets[index]) if index < len(buckets) else {}


def input_buckets(component: Component) -> tuple[dict[int, tuple[int, ...]], ...]:
    """``bucket_sizes`` of every input, for wrappers (as ``dynamic_inputs``)."""
    return tuple(bucket_sizes(component, i) for i in range(len(component.spec.inputs)))


def smallest_bucket(sizes: tuple[int, ...], needed: int, default: int) -> int:
    """The smallest of ``sizes`` that holds ``needed``; ``default`` when none does or there
    are no sizes."""
    return next((size for size in sizes if size >= needed), default)


@dataclass
class LoadedBundle:
    """A bundle with its components loaded by one backend."""

    path: Path
    manifest: Manifest
    backend: str
    engine: str
    components: dict[str, Component]

    def component(self, role: str) -> Component:
        try:
            return self.components[role]
        except KeyError:
            raise BundleError(f"bundle has no {role!r} component", path=self.path) from None

    def has_kind(self, kind: str) -> bool:
        """Whether a loaded component is of ``kind`` (see ``manifest.COMPONENT_KINDS``)."""
        return any(c.spec.kind == kind for c in self.components.values())

    def of_kind(self, kind: str) -> Component:
        """The loaded component of ``kind``; an error naming what the bundle has otherwise
        (including components that exist only in another format)."""
        for component in self.components.values():
            if component.spec.kind == kind:
                return component
        elsewhere = [
            f"{c.name} ({', '.join(c.files) or 'no files'})"
            for c in self.manifest.components.values()
            if c.kind == kind
        ]
        if elsewhere:
            raise BundleError(
                f"the {kind} component has no {self.backend} file: {', '.join(elsewhere)}",
                path=self.path,
                hint=f"run it with a backend it has files for, or convert with "
                f"--format {self.backend}",
            )
        raise BundleError(
            f"this bundle has no {kind} component (it has "
            f"{', '.join(sorted(c.spec.kind for c in self.components.values()))})",
            path=self.path,
        )


@dataclass(frozen=True)
class Binding:
    """How one canonical tensor maps to the tensor a file declares: name, dtype, shape, and
    the axes the file lets vary (``dynamic``; only where both sides have the same shape)."""

    name: str
    dtype: type[np.generic]
    shape: tuple[int, ...]
    dynamic: frozenset[int] = frozenset()

    @classmethod
    def of(cls, spec: TensorSpec, dynamic: frozenset[int] = frozenset()) -> Binding:
        return cls(spec.name, NP_DTYPES[spec.dtype], spec.shape, dynamic)

    def adapt(self, array: np.ndarray) -> np.ndarray:
        """Cast and reshape ``array`` to this binding (same element count); an array that
        differs from the shape only on dynamic axes keeps its shape."""
        out = np.asarray(array, dtype=self.dtype)
        if out.shape != self.shape and not self._fits(out.shape):
            out = out.reshape(self.shape)
        return out

    def _fits(self, shape: tuple[int, ...]) -> bool:
        if not self.dynamic or len(shape) != len(self.shape):
            return False
        pairs = enumerate(zip(shape, self.shape, strict=True))
        return all(a == b or i in self.dynamic for i, (a, b) in pairs)


def bindings_for(
    canonical: tuple[TensorSpec, ...], declared: tuple[TensorSpec, ...], *, where: str
) -> tuple[list[Binding], list[Binding]]:
    """Pair canonical specs with a file's declared specs, checking count and element count.
    Returns (file-side bindings, canonical-side bindings)."""
    if len(canonical) != len(declared):
        raise BundleError(
            f"{where}: the file declares {len(declared)} tensors, the component {len(canonical)}"
        )
    for c, d in zip(canonical, declared, strict=True):
        if int(np.prod(c.shape)) != int(np.prod(d.shape)):
            raise BundleError(
                f"{where}: {d.name} {list(d.shape)} cannot hold {c.name} {list(c.shape)}"
            )
    dynamic = [
        frozenset(d.dynamic_axes) | frozenset(d.buckets) if c.shape == d.shape else frozenset()
        for c, d in zip(canonical, declared, strict=True)
    ]
    return (
        [Binding.of(d, axes) for d, axes in zip(declared, dynamic, strict=True)],
        [Binding.of(c, axes) for c, axes in zip(canonical, dynamic, strict=True)],
    )


class FileComponent:
    """A component file run by some engine, called with canonical inputs and outputs: the
    manifest's bindings and constant inputs, in one place for every file-format backend.
    Subclasses call ``feeds`` to build the file's inputs and ``outputs`` to read its results.

    ``dynamic_inputs``: per canonical input, the axes the file takes at any size (its
    manifest entry's ``dynamic_axes``); an input may be fed shorter on those axes, and the
    outputs' dynamic axes come back at the size the engine gives. ``input_buckets``: per
    canonical input, the axes it takes at a few sizes only (its ``buckets``), which the
    input may be fed at.
    """

    def __init__(self, spec: ComponentSpec, fmt: str, path: Path, where: str) -> None:
        file = spec.files[fmt]
        self.spec = spec
        self.path = path
        self._in, _ = bindings_for(spec.inputs, file.inputs, where=f"{where} inputs")
        _, self._out = bindings_for(spec.outputs, file.outputs, where=f"{where} outputs")
        same = [c.shape == d.shape for c, d in zip(spec.inputs, file.inputs, strict=True)]
        self.input_buckets = tuple(
            dict(d.buckets) if ok else {} for d, ok in zip(file.inputs, same, strict=True)
        )
        self.dynamic_inputs = tuple(
            b.dynamic - frozenset(buckets)
            for b, buckets in zip(self._in, self.input_buckets, strict=True)
        )
        self._output_names = [t.name for t in file.outputs]
        self._constants = {
            c.name: np.array(c.value, dtype=NP_DTYPES[c.dtype]) for c in file.constants
        }

    def feeds(self, inputs: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
        """The file's named inputs: canonical ones cast and reshaped, constants added."""
        feeds = {b.name: b.adapt(x) for b, x in zip(self._in, inputs, strict=True)}
        feeds.update(self._constants)
        return feeds

    def outputs(self, values: list[np.ndarray] | tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """The file's outputs, in its declared order, as canonical tensors."""
        return tuple(b.adapt(y) for b, y in zip(self._out, values, strict=True))
