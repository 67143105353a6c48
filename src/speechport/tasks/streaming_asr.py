"""Streaming speech recognition (``streaming-asr``): a bundle opens as a
``StreamingRecognizer`` (sessions fed audio as it arrives; ``transcribe`` runs one over a
file). Verify runs the reference and each backend chunk by chunk over the same audio: tokens
end to end, and every chunk's encoder output and caches on the reference's own inputs.
Reports, card and quantize ranking read as for offline recognition."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechport.parity.report import AsrFileResult, FileComponents, ParityReport
from speechport.pipelines.streaming import StreamingRecognizer
from speechport.tasks.asr import TranscriptTask, first_divergence

if TYPE_CHECKING:
    from speechport.parity.run import VerifyRun
    from speechport.runtime.base import LoadedBundle


class StreamingAsrTask(TranscriptTask):
    name = "streaming-asr"
    title = "streaming speech recognition"
    sections = ("decoding", "tokenizer", "streaming")
    example_template = "streaming_example.py"
    usage = "speechport stream . audio.wav            # or - to read 16 kHz PCM from stdin"

    def open(self, bundle: LoadedBundle, **options: Any) -> StreamingRecognizer:
        """A ``StreamingRecognizer`` (no options: sessions take the language and
        lookahead)."""
        if options:
            raise TypeError(f"a streaming bundle takes no options ({', '.join(options)})")
        return StreamingRecognizer(bundle)

    def verify_file(self, run: VerifyRun, audio: np.ndarray, path: str) -> None:
        from speechport.metrics import character_error_rate, token_agreement
        from speechport.parity.components import streaming_encoder_parity

        max_cer = run.limits.max_cer
        reference = StreamingRecognizer(run.reference)
        for lookahead in reference.lookaheads:
            recorder = _ChunkRecorder()
            session = reference.stream(lookahead=lookahead)
            session.encoder = recorder.wrap(session.encoder)
            session.feed(audio)
            session.finish()
            want = session.transcript()
            for name, bundle in run.candidates.items():
                candidate = StreamingRecognizer(bundle)
                started = time.perf_counter()
                got = candidate.transcribe(audio, lookahead=lookahead)
                run.run_seconds[name] += time.perf_counter() - started
                cer = character_error_rate(want.text, got.text)
                exact = want.token_ids == got.token_ids and [t.start for t in want.tokens] == [
                    t.start for t in got.tokens
                ]
                checks = streaming_encoder_parity(
                    recorder.calls,
                    candidate.bundle.component(session.chunking.encoder),
                    frame_seconds=reference.decoding.frame_duration,
                )
                failures = []
                if not exact and cer > max_cer:
                    failures.append(f"lookahead {lookahead}: CER {cer:.4f} > {max_cer:g}")
                for c in checks:
                    failures += c.failures
                run.report.files.append(
                    AsrFileResult(
                        audio=f"{path} (lookahead {lookahead})",
                        backend=name,
                        failures=failures,
                        token_exact=exact,
                        token_agreement=token_agreement(want.token_ids, got.token_ids),
                        tokens=len(want.token_ids),
                        cer=cer,
                        reference_text=want.text,
                        text=got.text,
                        first_divergence=None
                        if exact
                        else first_divergence(want.tokens, got.tokens),
                    )
                )
                run.report.components.append(
                    FileComponents(f"{path} (lookahead {lookahead})", name, checks)
                )

    def draw_plots(self, report: ParityReport, out: Path) -> list[Path]:
        from speechport.parity import plots

        series: dict[str, tuple[list[float], list[float]]] = {}
        for entry in report.components[: plots.MAX_FILES_PLOTTED * max(len(report.engines), 1)]:
            for c in entry.components:
                first = next(iter(c.outputs.values()))
                series[f"{entry.backend} · {Path(entry.audio).name}"] = (
                    c.times,
                    [max(x, 1e-9) for x in first.l2_per_frame],
                )
        if not series:
            return []
        return [
            plots.line_plot(
                series,
                out / "encoder_chunk_l2.png",
                title="Encoder, chunk by chunk: ‖Δ‖ / ‖reference‖ per frame",
                ylabel="relative L2 (floor 1e-9)",
                log=True,
            )
        ]


class _ChunkRecorder:
    """Wraps a session's encoder and keeps every call's inputs and outputs."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]] = []

    def wrap(self, component: Any) -> Any:
        recorder = self

        class Recorded:
            spec = component.spec

            def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
                outputs = component(*inputs)
                recorder.calls.append(
                    (tuple(np.array(x, copy=True) for x in inputs), tuple(outputs))
                )
                return tuple(outputs)

        return Recorded()
