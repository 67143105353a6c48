"""How far one tensor is from its reference: the figures verify reports per component."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Relative differences below this reference magnitude are not meaningful (a value that should
# be 0 and is 1e-9 has an infinite relative error); they count through max_abs instead.
_REL_FLOOR = 1e-3


@dataclass
class TensorStats:
    """Differences between a candidate tensor and the reference.

    ``l2_per_frame`` is ‖Δ_t‖ / ‖ref_t‖ for every frame (row) when the tensors are given as
    [frames, features]; ``exact`` is whether every element is equal and ``equal_fraction``
    the share of elements that are (meaningful for integer outputs: lengths must be exact,
    decisions such as token ids are reported as agreement).
    """

    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float
    exact: bool
    elements: int
    equal_fraction: float = 1.0
    integer: bool = False
    rel_l2: float = 0.0  # ‖Δ‖ / ‖ref‖ over every element
    l2_per_frame: list[float] = field(default_factory=list)

    @property
    def worst_frame(self) -> int | None:
        if not self.l2_per_frame:
            return None
        return int(np.argmax(self.l2_per_frame))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "worst_frame": self.worst_frame}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorStats:
        """The inverse of ``to_dict`` (derived figures are recomputed, not read)."""
        return cls(**{k: v for k, v in data.items() if k != "worst_frame"})


def compare(reference: np.ndarray, candidate: np.ndarray, *, frames: bool = False) -> TensorStats:
    """Statistics of ``candidate`` against ``reference`` (same shape); with ``frames`` the
    first axis is time and the relative L2 of every frame is kept."""
    ref = np.asarray(reference)
    got = np.asarray(candidate)
    if ref.shape != got.shape:
        raise ValueError(f"shapes differ: reference {ref.shape}, candidate {got.shape}")
    exact = bool(np.array_equal(ref, got))
    r = ref.astype(np.float64).reshape(-1)
    g = got.astype(np.float64).reshape(-1)
    if r.size == 0:
        return TensorStats(0.0, 0.0, 0.0, 1.0, exact, 0)
    diff = np.abs(r - g)
    scale = np.abs(r)
    rel = diff[scale > _REL_FLOOR] / scale[scale > _REL_FLOOR]
    norms = float(np.linalg.norm(r) * np.linalg.norm(g))
    ref_norm = float(np.linalg.norm(r))
    diff_norm = float(np.linalg.norm(r - g))
    rel_l2 = diff_norm / ref_norm if ref_norm > 0 else diff_norm  # zero reference: absolute
    cosine = float(np.dot(r, g) / norms) if norms > 0 else float(exact)
    per_frame: list[float] = []
    if frames and ref.ndim >= 1:
        rf = ref.astype(np.float64).reshape(ref.shape[0], -1)
        gf = got.astype(np.float64).reshape(got.shape[0], -1)
        num = np.linalg.norm(rf - gf, axis=1)
        den = np.linalg.norm(rf, axis=1)
        per_frame = [float(x) for x in num / np.maximum(den, 1e-12)]
    return TensorStats(
        max_abs=float(diff.max()),
        max_rel=float(rel.max()) if rel.size else 0.0,
        mean_abs=float(diff.mean()),
        cosine=cosine,
        exact=exact,
        elements=int(r.size),
        equal_fraction=float(np.mean(r == g)),
        integer=bool(np.issubdtype(ref.dtype, np.integer)),
        l2_per_frame=per_frame,
        rel_l2=rel_l2,
    )


def merge(stats: list[TensorStats]) -> TensorStats:
    """One summary over several comparisons (windows or files): worst case of each figure,
    element-weighted mean, frames concatenated."""
    if not stats:
        return TensorStats(0.0, 0.0, 0.0, 1.0, True, 0)
    total = sum(s.elements for s in stats)
    return TensorStats(
        max_abs=max(s.max_abs for s in stats),
        max_rel=max(s.max_rel for s in stats),
        mean_abs=sum(s.mean_abs * s.elements for s in stats) / max(total, 1),
        cosine=min(s.cosine for s in stats),
        exact=all(s.exact for s in stats),
        elements=total,
        equal_fraction=sum(s.equal_fraction * s.elements for s in stats) / max(total, 1),
        integer=all(s.integer for s in stats),
        l2_per_frame=[x for s in stats for x in s.l2_per_frame],
        rel_l2=max(s.rel_l2 for s in stats),
    )


def topk_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 5) -> tuple[bool, float]:
    """Whether the argmax agrees, and the share of the reference's top ``k`` classes that are
    also in the candidate's top ``k`` (1-D logits)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    got = np.asarray(candidate, dtype=np.float64).reshape(-1)
    k = min(k, ref.size)
    top_ref = set(np.argsort(-ref, kind="stable")[:k].tolist())
    top_got = set(np.argsort(-got, kind="stable")[:k].tolist())
    return bool(np.argmax(ref) == np.argmax(got)), len(top_ref & top_got) / k
