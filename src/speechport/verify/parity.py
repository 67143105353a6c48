"""End-to-end parity of a bundle against its torch reference, on real audio.

For speech recognition: token-exact flag, character error rate and the first divergence
per file. For voice activity: the largest probability difference per file and whether the
speech segments are identical. A bundle passes when every file meets the gate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechport.audio import load_audio
from speechport.errors import SpeechportError
from speechport.eval.metrics import character_error_rate
from speechport.runtime import load_bundle, make_backend
from speechport.runtime.base import LoadedBundle


@dataclass
class FileParity:
    audio: str
    backend: str
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParityReport:
    bundle: str
    task: str
    reference_engine: str
    engines: dict[str, str]
    files: list[FileParity]

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def verify_bundle(
    bundle: Path,
    audio_files: list[Path],
    *,
    backends: list[str],
    checkpoint: Path | None = None,
    max_prob_diff: float = 1e-3,
    max_cer: float = 0.0,
) -> ParityReport:
    """Run ``audio_files`` through the torch reference and through each backend."""
    if not backends:
        raise SpeechportError("no backend to verify", hint="pass --backends onnx")
    if not audio_files:
        raise SpeechportError("no audio to verify on", hint="pass --audio FILES")
    reference = load_bundle(bundle, make_backend("torch", checkpoint=checkpoint))
    loaded = {name: load_bundle(bundle, name) for name in backends}
    task = reference.manifest.task
    results: list[FileParity] = []
    for path in audio_files:
        audio = load_audio(path, sample_rate=reference.manifest.sample_rate).samples
        for candidate in loaded.values():
            if task == "vad":
                results.append(_vad_parity(reference, candidate, audio, str(path), max_prob_diff))
            else:
                results.append(_asr_parity(reference, candidate, audio, str(path), max_cer))
    return ParityReport(
        bundle=str(bundle),
        task=task,
        reference_engine=reference.engine,
        engines={name: b.engine for name, b in loaded.items()},
        files=results,
    )


def _vad_parity(
    reference: LoadedBundle, candidate: LoadedBundle, audio: np.ndarray, path: str, gate: float
) -> FileParity:
    """Every form of the model in the bundle (one chunk per call, eight per call, the three
    stages chained) against the reference's one-chunk form."""
    from speechport.pipelines.vad import VoiceActivityDetector, speech_segments

    ref, got = VoiceActivityDetector(reference), VoiceActivityDetector(candidate)
    p_ref = ref.probabilities(audio, path="vad")
    segments_ref = ref.segments(audio)

    def segments(probs: np.ndarray) -> list[Any]:
        return speech_segments(
            probs,
            num_samples=audio.size,
            chunk_samples=ref.spec.chunk_samples,
            sample_rate=ref.sample_rate,
            params=ref.defaults,
        )

    paths: dict[str, Any] = {}
    for name in got.paths:
        probs = got.probabilities(audio, path=name)
        diff = np.abs(p_ref - probs)
        paths[name] = {
            "max_abs_prob_diff": float(diff.max(initial=0.0)),
            "mean_abs_prob_diff": float(diff.mean()) if diff.size else 0.0,
            "worst_chunk_seconds": float(np.argmax(diff) * ref.spec.chunk_samples / ref.sample_rate)
            if diff.size
            else 0.0,
            "segments_equal": segments(probs) == segments_ref,
        }
    worst = max(v["max_abs_prob_diff"] for v in paths.values())
    same = all(v["segments_equal"] for v in paths.values())
    details = {
        "chunks": int(p_ref.size),
        "max_abs_prob_diff": worst,
        "segments_reference": len(segments_ref),
        "segments_equal": same,
        "paths": paths,
    }
    return FileParity(path, candidate.backend, same and worst <= gate, details)


def _asr_parity(
    reference: LoadedBundle, candidate: LoadedBundle, audio: np.ndarray, path: str, gate: float
) -> FileParity:
    from speechport.pipelines.transcriber import Transcriber

    want = Transcriber(reference).transcribe(audio)
    got = Transcriber(candidate).transcribe(audio)
    cer = character_error_rate(want.text, got.text)
    exact = want.token_ids == got.token_ids
    details: dict[str, Any] = {
        "token_exact": exact,
        "cer": cer,
        "reference_text": want.text,
        "text": got.text,
    }
    if not exact:
        details["first_divergence"] = _first_divergence(want.tokens, got.tokens)
    return FileParity(path, candidate.backend, exact or cer <= gate, details)


def _first_divergence(want: list[Any], got: list[Any]) -> dict[str, Any]:
    for i, (a, b) in enumerate(zip(want, got, strict=False)):
        if a.id != b.id or abs(a.start - b.start) > 1e-6:
            return {"index": i, "seconds": a.start, "expected": a.piece, "got": b.piece}
    i = min(len(want), len(got))
    tail = want[i] if i < len(want) else got[i]
    return {
        "index": i,
        "seconds": tail.start,
        "expected": want[i].piece if i < len(want) else None,
        "got": got[i].piece if i < len(got) else None,
    }


def write_report(report: ParityReport, bundle: Path) -> Path:
    """Store the report as ``verify/parity.json`` in the bundle and refresh its model card's
    fidelity section. Returns the report's path."""
    import json

    from speechport.export.card import PARITY_FILE, render_card
    from speechport.fsutil import atomic_write_text
    from speechport.manifest import read_manifest

    target = bundle / PARITY_FILE
    atomic_write_text(target, json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(bundle / "README.md", render_card(read_manifest(bundle), bundle))
    return target
