"""The torch reference computed once per audio set, answered from memory afterwards.

``verify`` run many times on the same audio (a quantize sweep scores every variant against
the same reference) calls the reference's components with the same inputs every time: the
reference's own transcript, rollout and windows do not depend on the candidate. A
``ReferenceCache`` keeps the outputs of every call, keyed by a digest of its inputs
(dtype, shape and bytes), and runs torch only for inputs it has not seen, so a result
read from it is the one torch gave. It pickles without the torch model, so worker
processes start with what the parent computed and load torch only on a miss.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechport.manifest import ComponentSpec, read_manifest
from speechport.runtime.base import Component, LoadedBundle, dynamic_inputs, input_buckets

Outputs = tuple[np.ndarray, ...]


def inputs_key(inputs: tuple[np.ndarray, ...]) -> bytes:
    """A digest of the inputs' dtypes, shapes and values (BLAKE2b, 128 bits)."""
    digest = hashlib.blake2b(digest_size=16)
    for x in inputs:
        array = np.ascontiguousarray(x)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return digest.digest()


@dataclass
class ReferenceCache:
    """The reference of ``bundle`` (run from ``checkpoint``, or the one its provenance
    names), memoised per component role."""

    bundle: Path
    checkpoint: Path | None = None
    engine: str = ""
    outputs: dict[str, dict[bytes, Outputs]] = field(default_factory=dict)
    dynamic: dict[str, tuple[frozenset[int], ...]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    _reference: LoadedBundle | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reference"] = None  # the torch model stays in the process that loaded it
        return state

    def load(self) -> LoadedBundle:
        """The reference as a bundle whose components answer from this cache."""
        if not self.engine:
            self._torch()
        manifest = read_manifest(self.bundle)
        components: dict[str, Any] = {
            role: CachedComponent(self, role, manifest.component(role))
            for role in (self.dynamic or manifest.components)
        }
        return LoadedBundle(self.bundle, manifest, "torch", self.engine, components)

    def call(self, role: str, inputs: tuple[np.ndarray, ...]) -> Outputs:
        table = self.outputs.setdefault(role, {})
        key = inputs_key(inputs)
        stored = table.get(key)
        if stored is None:
            self.misses += 1
            stored = tuple(np.array(y, copy=True) for y in self._torch().component(role)(*inputs))
            table[key] = stored
        else:
            self.hits += 1
        return tuple(np.array(y, copy=True) for y in stored)  # callers may write to theirs

    def _torch(self) -> LoadedBundle:
        if self._reference is None:
            from speechport.runtime import load_bundle, make_backend

            self._reference = load_bundle(
                self.bundle, make_backend("torch", checkpoint=self.checkpoint)
            )
            self.engine = self._reference.engine
            self.dynamic = {
                role: dynamic_inputs(c) for role, c in self._reference.components.items()
            }
        return self._reference


class CachedComponent:
    """One reference component read through a ``ReferenceCache``."""

    def __init__(self, cache: ReferenceCache, role: str, spec: ComponentSpec) -> None:
        self.cache = cache
        self.role = role
        self.spec = spec
        self.dynamic_inputs = cache.dynamic.get(role, ())

    def __call__(self, *inputs: np.ndarray) -> Outputs:
        return self.cache.call(self.role, inputs)


class KeptOutputs:
    """A component whose outputs are kept per input, for a deterministic engine called
    again with the same inputs (verify's end-to-end run, then its per-component check on
    the same windows): the second call answers from memory."""

    def __init__(self, inner: Component) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.dynamic_inputs = dynamic_inputs(inner)
        self.input_buckets = input_buckets(inner)
        self._kept: dict[bytes, Outputs] = {}

    def __call__(self, *inputs: np.ndarray) -> Outputs:
        key = inputs_key(inputs)
        if key not in self._kept:
            self._kept[key] = tuple(np.array(y, copy=True) for y in self.inner(*inputs))
        return tuple(np.array(y, copy=True) for y in self._kept[key])


def keeping_outputs(bundle: LoadedBundle, kind: str) -> LoadedBundle:
    """``bundle`` with its components of ``kind`` wrapped in ``KeptOutputs`` (a new bundle
    object; the components themselves are shared)."""
    components = {
        role: KeptOutputs(c) if c.spec.kind == kind else c for role, c in bundle.components.items()
    }
    return dataclasses.replace(bundle, components=components)
