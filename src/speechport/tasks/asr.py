"""Offline speech recognition (``asr``): a bundle opens as a ``Transcriber``; verify checks
tokens end to end and every component on the reference's inputs; quantize ranks variants
by token agreement."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechport.parity.report import (
    TOP_K,
    AsrFileResult,
    Divergence,
    FileComponents,
    FileResult,
    ParityReport,
)
from speechport.pipelines.transcriber import Transcriber
from speechport.tasks.base import GateLimits, Task

if TYPE_CHECKING:
    from speechport.compression.results import VariantResult
    from speechport.parity.run import VerifyRun
    from speechport.pipelines.transcriber import TokenTiming
    from speechport.runtime.base import LoadedBundle


class TranscriptTask(Task):
    """What every task that yields transcripts shares: the CER gate, the per-file report
    line, the card's fidelity table and the quantize ranking by token agreement."""

    file_result = AsrFileResult
    quality_label = "token agreement"

    # --- verify --------------------------------------------------------------------------

    def gates(self, limits: GateLimits) -> dict[str, float]:
        return {"max_cer": limits.max_cer}

    def file_line(self, result: FileResult) -> str:
        r = _asr(result)
        line = f"{'token-exact' if r.token_exact else 'tokens differ'}, CER {r.cer:.4f}"
        if r.first_divergence is not None:
            div = r.first_divergence
            line += (
                f", first divergence at {div.seconds:.2f} s: expected "
                f"{div.expected!r}, got {div.got!r}"
            )
        return line

    def card_fidelity(self, report: ParityReport) -> list[str]:
        from speechport.export.tables import component_table

        lines = [
            "| audio | backend | transcript | CER | first divergence |",
            "|---|---|---|---|---|",
        ]
        for f in report.files:
            r = _asr(f)
            exact = "token-exact" if r.token_exact else "differs"
            div = r.first_divergence
            where = f"{div.seconds:.2f} s: `{div.expected}` → `{div.got}`" if div else "—"
            lines.append(
                f"| {Path(r.audio).name} | {r.backend} | {exact} | {r.cer:.4f} | {where} |"
            )
        return [*lines, *component_table(report.components)]

    # --- quantize ------------------------------------------------------------------------

    def score_variant(self, variant: VariantResult, report: ParityReport) -> None:
        from speechport.metrics import character_error_rate

        results = [_asr(f) for f in report.files]
        variant.token_exact_files = sum(r.token_exact for r in results)
        tokens = sum(r.tokens for r in results)
        variant.token_agreement = (
            sum(r.token_agreement * r.tokens for r in results) / tokens
            if tokens
            else float(np.mean([r.token_agreement for r in results]))
        )
        chars = sum(len(r.reference_text) for r in results)
        variant.cer = (
            sum(
                character_error_rate(r.reference_text, r.text) * len(r.reference_text)
                for r in results
            )
            / chars
            if chars
            else 0.0
        )

    def ranking_columns(self) -> str:
        return f" {'exact':>6} {'tokens':>7} {'CER':>7}"

    def ranking_cells(self, variant: VariantResult) -> str:
        v = variant
        return f" {v.token_exact_files:>2}/{v.files:<3} {v.token_agreement:>7.4f} {v.cer:>7.4f}"

    def variant_text(self, variant: VariantResult) -> str:
        v = variant
        if v.token_agreement is None:
            return ""
        return (
            f", token agreement {v.token_agreement:.4f}, CER {v.cer:.4f}, "
            f"{v.token_exact_files}/{v.files} files token-exact"
        )


class AsrTask(TranscriptTask):
    name = "asr"
    title = "speech recognition"
    sections = ("window", "decoding", "tokenizer")
    example_template = "asr_example.py"
    usage = "speechport transcribe . audio.wav --timestamps"

    def open(self, bundle: LoadedBundle, **options: Any) -> Transcriber:
        """A ``Transcriber``; options: ``overlap``, ``window_seconds``, ``tolerance``,
        ``vad`` (a VAD bundle's path or a loaded detector) and ``vad_params``."""
        vad = options.pop("vad", None)
        if isinstance(vad, (str, Path)):
            from speechport.pipelines.vad import VoiceActivityDetector
            from speechport.runtime import load_bundle

            vad = VoiceActivityDetector(load_bundle(vad, "onnx"))
        return Transcriber(bundle, vad=vad, **options)

    # --- verify ---

    def verify_file(self, run: VerifyRun, audio: np.ndarray, path: str) -> None:
        from speechport.metrics import character_error_rate, token_agreement
        from speechport.parity.components import asr_component_parity
        from speechport.parity.reference import keeping_outputs

        max_cer = run.limits.max_cer
        ref_tr = Transcriber(run.reference)
        want = ref_tr.transcribe(audio)
        for name, candidate in run.candidates.items():
            # the component check feeds the encoder the windows the transcript did
            tr = Transcriber(keeping_outputs(candidate, "encoder"))
            start = time.perf_counter()
            got = tr.transcribe(audio)
            run.run_seconds[name] += time.perf_counter() - start
            cer = character_error_rate(want.text, got.text)
            exact = want.token_ids == got.token_ids
            checks = asr_component_parity(ref_tr, tr, audio)
            failures = []
            if not exact and cer > max_cer:
                failures.append(f"CER {cer:.4f} > {max_cer:g}")
            for c in checks:
                failures += c.failures
            run.report.files.append(
                AsrFileResult(
                    audio=path,
                    backend=name,
                    failures=failures,
                    token_exact=exact,
                    token_agreement=token_agreement(want.token_ids, got.token_ids),
                    tokens=len(want.token_ids),
                    cer=cer,
                    reference_text=want.text,
                    text=got.text,
                    first_divergence=None if exact else first_divergence(want.tokens, got.tokens),
                )
            )
            run.report.components.append(FileComponents(path, name, checks))

    def draw_plots(self, report: ParityReport, out: Path) -> list[Path]:
        from speechport.parity import plots

        l2: dict[str, tuple[list[float], list[float]]] = {}
        topk: dict[str, tuple[list[float], list[float]]] = {}
        for entry in report.components[: plots.MAX_FILES_PLOTTED * max(len(report.engines), 1)]:
            label = f"{entry.backend} · {Path(entry.audio).name}"
            for c in entry.components:
                if c.kind == "encoder":
                    first = next(iter(c.outputs.values()))
                    l2[label] = (c.times, [max(x, 1e-9) for x in first.l2_per_frame])
                if c.top1:
                    topk[label] = (c.times, c.topk)
        written = []
        if l2:
            written.append(
                plots.line_plot(
                    l2,
                    out / "encoder_l2.png",
                    title="Encoder: ‖Δ‖ / ‖reference‖ per frame",
                    ylabel="relative L2 (floor 1e-9)",
                    log=True,
                )
            )
        if topk:
            written.append(
                plots.line_plot(
                    topk,
                    out / "joint_topk.png",
                    title=f"Joint (CTC: per frame): share of the reference's top-{TOP_K} classes",
                    ylabel=f"top-{TOP_K} overlap",
                )
            )
        return written


def first_divergence(want: list[TokenTiming], got: list[TokenTiming]) -> Divergence:
    """The first token where two transcripts differ (in id or start time)."""
    for i, (a, b) in enumerate(zip(want, got, strict=False)):
        if a.id != b.id or abs(a.start - b.start) > 1e-6:
            return Divergence(i, a.start, a.piece, b.piece)
    i = min(len(want), len(got))
    tail = want[i] if i < len(want) else got[i]
    return Divergence(
        i,
        tail.start,
        want[i].piece if i < len(want) else None,
        got[i].piece if i < len(got) else None,
    )


def _asr(result: FileResult) -> AsrFileResult:
    assert isinstance(result, AsrFileResult), type(result).__name__
    return result
