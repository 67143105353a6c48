"""Voice activity detection (``vad``): a bundle opens as a ``VoiceActivityDetector``; verify
compares the speech probability of every form of the model chunk by chunk and the speech
segments; quantize ranks variants by ``1 - max |Δp|``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechport.parity.report import FileResult, ParityReport, VadFileResult, VadFormResult
from speechport.pipelines.vad import ONE_CHUNK, VoiceActivityDetector, speech_segments
from speechport.tasks.base import GateLimits, Task

if TYPE_CHECKING:
    from speechport.compression.results import VariantResult
    from speechport.parity.run import VerifyRun
    from speechport.pipelines.vad import SpeechSegment
    from speechport.runtime.base import LoadedBundle


class VadTask(Task):
    name = "vad"
    title = "voice activity detection"
    sections = ("vad",)
    file_result = VadFileResult
    example_template = "vad_example.py"
    usage = "speechport vad . audio.wav            # speech segments (text, json or srt)"
    quality_label = "1 - max |Δp|"

    def open(self, bundle: LoadedBundle, **options: Any) -> VoiceActivityDetector:
        """A ``VoiceActivityDetector``; options: the segmentation parameters
        (``threshold``, ``min_silence_ms``, ...), which become its defaults."""
        return VoiceActivityDetector(bundle, **options)

    # --- verify --------------------------------------------------------------------------

    def gates(self, limits: GateLimits) -> dict[str, float]:
        return {"max_prob_diff": limits.max_prob_diff}

    def verify_file(self, run: VerifyRun, audio: np.ndarray, path: str) -> None:
        """Every form of the model in the bundle (one chunk per call, several per call, the
        stages chained) against the reference's one-chunk form."""
        gate = run.limits.max_prob_diff
        ref = VoiceActivityDetector(run.reference)
        p_ref = ref.probabilities(audio, path=ONE_CHUNK)
        segments_ref = ref.segments(audio)
        seconds_per_chunk = ref.spec.chunk_samples / ref.sample_rate

        def segments(probs: np.ndarray) -> list[SpeechSegment]:
            return speech_segments(
                probs,
                num_samples=audio.size,
                chunk_samples=ref.spec.chunk_samples,
                sample_rate=ref.sample_rate,
                params=ref.defaults,
            )

        for name, candidate in run.candidates.items():
            got = VoiceActivityDetector(candidate)
            forms: dict[str, VadFormResult] = {}
            for form in got.paths:
                start = time.perf_counter()
                probs = got.probabilities(audio, path=form)
                if form == ONE_CHUNK:
                    run.run_seconds[name] += time.perf_counter() - start
                diff = np.abs(p_ref - probs)
                forms[form] = VadFormResult(
                    max_abs_prob_diff=float(diff.max(initial=0.0)),
                    mean_abs_prob_diff=float(diff.mean()) if diff.size else 0.0,
                    worst_chunk_seconds=float(np.argmax(diff) * seconds_per_chunk)
                    if diff.size
                    else 0.0,
                    segments_equal=segments(probs) == segments_ref,
                    abs_prob_diff=[float(x) for x in diff],
                )
            worst = max(v.max_abs_prob_diff for v in forms.values())
            same = all(v.segments_equal for v in forms.values())
            failures = []
            if worst > gate:
                failures.append(f"max |dp| {worst:.2e} > {gate:g}")
            if not same:
                failures.append("speech segments differ")
            run.report.files.append(
                VadFileResult(
                    audio=path,
                    backend=name,
                    failures=failures,
                    chunks=int(p_ref.size),
                    seconds_per_chunk=seconds_per_chunk,
                    max_abs_prob_diff=worst,
                    segments_reference=len(segments_ref),
                    segments_equal=same,
                    forms=forms,
                )
            )

    def file_line(self, result: FileResult) -> str:
        r = _vad(result)
        return (
            f"max |dp| {r.max_abs_prob_diff:.2e} over {r.chunks} chunks, segments "
            f"{'equal' if r.segments_equal else 'DIFFER'} ({r.segments_reference})"
        )

    def card_fidelity(self, report: ParityReport) -> list[str]:
        lines = [
            "| audio | backend | chunks | max abs Δp (per form) | segments |",
            "|---|---|---|---|---|",
        ]
        for f in report.files:
            r = _vad(f)
            forms = ", ".join(f"{name} {v.max_abs_prob_diff:.1e}" for name, v in r.forms.items())
            same = "equal" if r.segments_equal else "differ"
            lines.append(
                f"| {Path(r.audio).name} | {r.backend} | {r.chunks} | "
                f"{forms} | {same} ({r.segments_reference}) |"
            )
        return lines

    def draw_plots(self, report: ParityReport, out: Path) -> list[Path]:
        from speechport.parity import plots

        series = {}
        for f in report.files[: plots.MAX_FILES_PLOTTED * max(len(report.engines), 1)]:
            r = _vad(f)
            for form, d in r.forms.items():
                diffs = [max(x, 1e-9) for x in d.abs_prob_diff]
                times = [i * r.seconds_per_chunk for i in range(len(diffs))]
                series[f"{r.backend} {form} · {Path(r.audio).name}"] = (times, diffs)
        return [
            plots.line_plot(
                series,
                out / "vad_prob_diff.png",
                title="|Δ speech probability| against the torch reference, per chunk",
                ylabel="|Δp| (floor 1e-9)",
                log=True,
            )
        ]

    # --- quantize ------------------------------------------------------------------------

    def score_variant(self, variant: VariantResult, report: ParityReport) -> None:
        results = [_vad(f) for f in report.files]
        variant.max_prob_diff = max(r.max_abs_prob_diff for r in results)
        variant.segments_equal = all(r.segments_equal for r in results)

    def ranking_columns(self) -> str:
        return f" {'max|dp|':>9} {'segments':>8}"

    def ranking_cells(self, variant: VariantResult) -> str:
        v = variant
        return f" {v.max_prob_diff:>9.2e} {'equal' if v.segments_equal else 'DIFFER':>8}"

    def variant_text(self, variant: VariantResult) -> str:
        v = variant
        return "" if v.max_prob_diff is None else f", max |dp| {v.max_prob_diff:.2e}"


def _vad(result: FileResult) -> VadFileResult:
    assert isinstance(result, VadFileResult), type(result).__name__
    return result
