"""The results of a quantization sweep: per compressed component, per variant, and the
summary (``quantization_summary.json``), with the ranking and the Pareto front."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechport.errors import SpeechportError
from speechport.fsutil import atomic_write_text

SUMMARY_FILE = "quantization_summary.json"


@dataclass
class CompressedComponent:
    role: str
    kind: str
    name: str
    path: str
    strategy: str | None
    bytes: int
    baseline_bytes: int
    convert_seconds: float = 0.0
    compressed_tensors: int = 0
    retargeted: bool = False
    quality: float | None = None  # 1 - ‖Δ‖/‖ref‖ of the main output, worst file
    cosine: float | None = None
    latency_ms: float | None = None  # warm median under the engine
    note: str | None = None

    @property
    def ratio(self) -> float:
        return self.baseline_bytes / self.bytes if self.bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class VariantResult:
    name: str
    recipe: dict[str, Any]
    bundle: str
    components: list[CompressedComponent]
    engine: str = ""
    passed: bool | None = None  # the gate (None: no audio to score on)
    failures: list[str] = field(default_factory=list)
    files: int = 0  # files scored
    stopped: str | None = None  # "gate failed at file k/n": the rest were not scored
    token_exact_files: int = 0
    token_agreement: float | None = None
    cer: float | None = None
    max_prob_diff: float | None = None
    segments_equal: bool | None = None
    spectral_convergence: float | None = None  # speech synthesis: worst text
    mel_distance_db: float | None = None
    rtfx: float | None = None

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.components)

    @property
    def baseline_bytes(self) -> int:
        return sum(c.baseline_bytes for c in self.components)

    @property
    def ratio(self) -> float:
        return self.baseline_bytes / self.bytes if self.bytes else 0.0

    @property
    def convert_seconds(self) -> float:
        return sum(c.convert_seconds for c in self.components)

    def quality(self) -> float | None:
        """The end-to-end figure the ranking and the Pareto front use (higher is better)."""
        if self.token_agreement is not None:
            return self.token_agreement
        if self.max_prob_diff is not None:
            return 1.0 - self.max_prob_diff
        if self.spectral_convergence is not None:
            return 1.0 - self.spectral_convergence
        return None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["components"] = [c.to_dict() for c in self.components]
        out.update(
            bytes=self.bytes,
            baseline_bytes=self.baseline_bytes,
            ratio=self.ratio,
            convert_seconds=self.convert_seconds,
        )
        return out


@dataclass
class QuantizeSummary:
    bundle: str
    task: str
    reference: str | None
    audio: list[str]
    engine: str
    weight_threshold: int
    gate: dict[str, float]
    variants: list[VariantResult]
    ranking: list[str] = field(default_factory=list)
    pareto: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    emitted: str | None = None
    host: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)  # speech synthesis: scored on (or built-in)

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise SpeechportError(
            f"no variant {name!r} in this sweep",
            hint=f"variants: {', '.join(v.name for v in self.variants)}",
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["variants"] = [v.to_dict() for v in self.variants]
        return out


def write_summary(summary: QuantizeSummary, out: Path) -> Path:
    target = out / SUMMARY_FILE
    atomic_write_text(target, json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return target


def rank(variants: list[VariantResult]) -> list[str]:
    """Best first: variants that pass the gate, then by end-to-end quality, then CER, then
    size (the smaller wins a tie)."""

    def key(v: VariantResult) -> tuple[float, float, float, int]:
        quality = v.quality()
        return (
            0.0 if v.passed in (True, None) else 1.0,
            -(quality if quality is not None else 0.0),
            v.cer if v.cer is not None else 0.0,
            v.bytes,
        )

    return [v.name for v in sorted(variants, key=key)]


def pareto_front(variants: list[VariantResult]) -> list[str]:
    """Variants no other beats on both size (smaller) and end-to-end quality (higher); by
    size when nothing was scored."""
    scored = [v for v in variants if v.quality() is not None]
    if not scored:
        return [min(variants, key=lambda v: v.bytes).name] if variants else []
    front = []
    for v in scored:
        q = v.quality() or 0.0
        dominated = any(
            (o.bytes <= v.bytes and (o.quality() or 0.0) >= q)
            and (o.bytes < v.bytes or (o.quality() or 0.0) > q)
            for o in scored
        )
        if not dominated:
            front.append(v.name)
    return sorted(front, key=lambda n: next(v.bytes for v in scored if v.name == n))
