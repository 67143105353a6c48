"""``verify``: a bundle against its torch reference, on real audio, per backend.

For speech recognition, per file and backend:

- end to end: token-exact flag, character error rate and the first divergence (time,
  expected and got);
- per component (``verify/components.py``): max abs, max rel, mean abs, cosine and L2 per
  frame over time, on the reference's inputs; integer outputs (lengths) must be exact;
- latency per component (first call, warm median and p90) and end-to-end RTFx.

For voice activity: the largest probability difference per form of the model and whether
the speech segments are identical, plus latency.

A bundle passes when every file meets the gate: transcripts token-exact or within
``max_cer``, and exact lengths; VAD probabilities within ``max_prob_diff`` with equal
segments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechport.audio import load_audio
from speechport.environment import host_info, package_versions
from speechport.errors import GateError, SpeechportError
from speechport.metrics import character_error_rate, edit_distance
from speechport.progress import Progress
from speechport.runtime import load_bundle, make_backend
from speechport.runtime.base import LoadedBundle
from speechport.verify.latency import Recorder, measure, record

REFERENCE = "torch"
_VERSIONS = ("numpy", "onnxruntime", "coremltools", "torch", "onnx")


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
    gates: dict[str, float] = field(default_factory=dict)
    components: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    rtfx: dict[str, float] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.files)

    def failures(self) -> list[str]:
        """One line per failed file and backend, saying why."""
        return [
            f"{f.backend} {Path(f.audio).name}: {'; '.join(f.details.get('failures', []))}"
            for f in self.files
            if not f.passed
        ]

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
    latency_runs: int = 20,
    label: str | None = None,
    time_reference: bool = True,
) -> ParityReport:
    """Run ``audio_files`` through the torch reference and through each backend
    (``time_reference=False``: latency of the backends only)."""
    if not backends:
        raise SpeechportError("no backend to verify", hint="pass --backends onnx")
    if REFERENCE in backends:
        raise SpeechportError(
            "the torch backend is the reference; it cannot be verified against itself",
            hint="pass --backends onnx,coreml",
        )
    if not audio_files:
        raise SpeechportError("no audio to verify on", hint="pass --audio FILES or a directory")
    reference = load_bundle(bundle, make_backend(REFERENCE, checkpoint=checkpoint))
    loaded = {name: load_bundle(bundle, name) for name in backends}
    recorders = {REFERENCE: record(reference)} if time_reference else {}
    recorders.update({name: record(b) for name, b in loaded.items()})
    task = reference.manifest.task
    report = ParityReport(
        bundle=label or str(bundle),
        task=task,
        reference_engine=reference.engine,
        engines={name: b.engine for name, b in loaded.items()},
        files=[],
        gates={"max_cer": max_cer} if task != "vad" else {"max_prob_diff": max_prob_diff},
        host=host_info(),
        versions=package_versions(_VERSIONS),
    )
    audio_seconds = 0.0
    run_seconds = dict.fromkeys(loaded, 0.0)
    for path in audio_files:
        audio = load_audio(path, sample_rate=reference.manifest.sample_rate).samples
        audio_seconds += audio.size / reference.manifest.sample_rate
        if task == "vad":
            _verify_vad_file(
                report, reference, loaded, audio, str(path), max_prob_diff, run_seconds
            )
        else:
            _verify_asr_file(report, reference, loaded, audio, str(path), max_cer, run_seconds)
    report.rtfx = {
        name: audio_seconds / seconds for name, seconds in run_seconds.items() if seconds > 0
    }
    report.latency = _latency(recorders, latency_runs)
    return report


def _verify_asr_file(
    report: ParityReport,
    reference: LoadedBundle,
    loaded: dict[str, LoadedBundle],
    audio: np.ndarray,
    path: str,
    max_cer: float,
    run_seconds: dict[str, float],
) -> None:
    from speechport.pipelines.transcriber import Transcriber
    from speechport.verify.components import asr_component_parity

    ref_tr = Transcriber(reference)
    want = ref_tr.transcribe(audio)
    for name, candidate in loaded.items():
        tr = Transcriber(candidate)
        start = time.perf_counter()
        got = tr.transcribe(audio)
        run_seconds[name] += time.perf_counter() - start
        cer = character_error_rate(want.text, got.text)
        exact = want.token_ids == got.token_ids
        checks = asr_component_parity(ref_tr, tr, audio)
        failures = []
        if not exact and cer > max_cer:
            failures.append(f"CER {cer:.4f} > {max_cer:g}")
        for c in checks:
            failures += c.failures
        details: dict[str, Any] = {
            "token_exact": exact,
            "token_agreement": token_agreement(want.token_ids, got.token_ids),
            "tokens": len(want.token_ids),
            "cer": cer,
            "reference_text": want.text,
            "text": got.text,
            "failures": failures,
        }
        if not exact:
            details["first_divergence"] = _first_divergence(want.tokens, got.tokens)
        report.files.append(FileParity(path, name, not failures, details))
        report.components.append(
            {"audio": path, "backend": name, "components": [c.to_dict() for c in checks]}
        )


def _verify_vad_file(
    report: ParityReport,
    reference: LoadedBundle,
    loaded: dict[str, LoadedBundle],
    audio: np.ndarray,
    path: str,
    gate: float,
    run_seconds: dict[str, float],
) -> None:
    """Every form of the model in the bundle (one chunk per call, eight per call, the three
    stages chained) against the reference's one-chunk form."""
    from speechport.pipelines.vad import VoiceActivityDetector, speech_segments

    ref = VoiceActivityDetector(reference)
    p_ref = ref.probabilities(audio, path="vad")
    segments_ref = ref.segments(audio)
    seconds_per_chunk = ref.spec.chunk_samples / ref.sample_rate

    def segments(probs: np.ndarray) -> list[Any]:
        return speech_segments(
            probs,
            num_samples=audio.size,
            chunk_samples=ref.spec.chunk_samples,
            sample_rate=ref.sample_rate,
            params=ref.defaults,
        )

    for name, candidate in loaded.items():
        got = VoiceActivityDetector(candidate)
        paths: dict[str, Any] = {}
        for form in got.paths:
            start = time.perf_counter()
            probs = got.probabilities(audio, path=form)
            if form == "vad":
                run_seconds[name] += time.perf_counter() - start
            diff = np.abs(p_ref - probs)
            paths[form] = {
                "max_abs_prob_diff": float(diff.max(initial=0.0)),
                "mean_abs_prob_diff": float(diff.mean()) if diff.size else 0.0,
                "worst_chunk_seconds": float(np.argmax(diff) * seconds_per_chunk)
                if diff.size
                else 0.0,
                "segments_equal": segments(probs) == segments_ref,
                "abs_prob_diff": [float(x) for x in diff],
            }
        worst = max(v["max_abs_prob_diff"] for v in paths.values())
        same = all(v["segments_equal"] for v in paths.values())
        failures = []
        if worst > gate:
            failures.append(f"max |dp| {worst:.2e} > {gate:g}")
        if not same:
            failures.append("speech segments differ")
        details = {
            "chunks": int(p_ref.size),
            "seconds_per_chunk": seconds_per_chunk,
            "max_abs_prob_diff": worst,
            "segments_reference": len(segments_ref),
            "segments_equal": same,
            "paths": paths,
            "failures": failures,
        }
        report.files.append(FileParity(path, name, not failures, details))


def _latency(
    recorders: dict[str, dict[str, Recorder]], runs: int
) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for backend, per_role in recorders.items():
        for recorder in per_role.values():
            figures = measure(recorder, runs=runs)
            if figures is not None:
                out.setdefault(backend, {})[recorder.spec.name] = figures.to_dict()
    return out


def token_agreement(reference: list[int], candidate: list[int]) -> float:
    """1 - (token edit distance / reference tokens), floored at 0: the share of the
    reference's tokens the candidate reproduces in order (1.0 when both are empty)."""
    if not reference:
        return 1.0 if not candidate else 0.0
    return max(0.0, 1.0 - edit_distance(reference, candidate) / len(reference))


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
    """Store the report as ``verify/parity.json`` in the bundle with its plots, and refresh
    the model card's fidelity and latency sections. Returns the report's path."""
    import json

    from speechport.export.card import PARITY_FILE, render_card
    from speechport.fsutil import atomic_write_text
    from speechport.manifest import read_manifest
    from speechport.verify.report_plots import draw_plots

    report.plots = [p.relative_to(bundle).as_posix() for p in draw_plots(report, bundle)]
    target = bundle / PARITY_FILE
    atomic_write_text(target, json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(bundle / "README.md", render_card(read_manifest(bundle), bundle))
    return target


@dataclass(frozen=True)
class Gate:
    """What ``convert --verify`` checks a new bundle on, and how strictly."""

    audio: list[Path]
    backends: list[str]
    max_cer: float = 0.0
    max_prob_diff: float = 1e-3
    latency_runs: int = 20


def gate_check(
    gate: Gate,
    final: Path,
    *,
    on_report: Callable[[ParityReport], None] | None = None,
    progress: Progress | None = None,
) -> Callable[[Path], None]:
    """A ``write_bundle`` check: verify the bundle where it is being assembled, store the
    report in it, and raise ``GateError`` (so nothing is kept) if it fails. ``on_report``,
    if given, receives the report either way (to print it)."""

    def check(tmp: Path) -> None:
        if progress is not None:
            progress.start(f"verify on {len(gate.audio)} file(s): {', '.join(gate.backends)}")
        report = verify_bundle(
            tmp,
            gate.audio,
            backends=gate.backends,
            max_cer=gate.max_cer,
            max_prob_diff=gate.max_prob_diff,
            latency_runs=gate.latency_runs,
            label=str(final),
        )
        if on_report is not None:
            on_report(report)
        if not report.passed:
            raise GateError(
                "the new bundle failed its parity gate, so it was not written: "
                + " | ".join(report.failures()),
                path=final,
                hint="see the failures above; loosen the gate only if the loss is acceptable "
                "(--max-cer), or convert with --precision fp32",
            )
        write_report(report, tmp)

    return check
