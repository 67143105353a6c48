"""What the CLI prints: the verify report, the quantize ranking, a stream's partial text
and statistics. What differs per task comes from the task's plug-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from speechport.tasks import get_task

if TYPE_CHECKING:
    from speechport.compression.results import QuantizeSummary
    from speechport.parity.report import ParityReport
    from speechport.parity.stats import TensorStats
    from speechport.pipelines.streaming import StreamingSession, StreamUpdate


def report_lines(report: ParityReport) -> list[str]:
    """The verify report in a few lines per file, then latency."""
    task = get_task(report.task)
    lines = [f"reference: {report.reference_engine}"]
    lines += [f"{name}: {engine}" for name, engine in report.engines.items()]
    for f in report.files:
        verdict = "PASS" if f.passed else "FAIL"
        lines.append(f"{verdict} {f.backend:<6} {f.audio}: {task.file_line(f)}")
        lines += [f"     - {failure}" for failure in f.failures]
    for entry in report.components:
        for c in entry.components:
            figures = ", ".join(stats_text(out, s) for out, s in c.outputs.items())
            agreement = c.top1_agreement
            agree = "" if agreement is None else f", argmax agrees on {100 * agreement:.2f}%"
            name = Path(entry.audio).name
            lines.append(f"  {entry.backend:<6} {name} {c.component}: {figures}{agree}")
    for backend, per in report.latency.items():
        cells = ", ".join(
            f"{comp} {f.median_ms:.2f} ms (p90 {f.p90_ms:.2f}, first {f.first_ms:.1f})"
            for comp, f in per.items()
        )
        rtfx = f"; RTFx {report.rtfx[backend]:.1f}" if backend in report.rtfx else ""
        lines.append(f"latency {backend}: {cells}{rtfx}")
    return lines


def stats_text(name: str, s: TensorStats) -> str:
    """One output's figures: exact (or agreement) for integers, max abs and cosine else."""
    if s.integer:
        return f"{name} " + ("exact" if s.exact else f"equal on {100 * s.equal_fraction:.2f}%")
    return f"{name} max abs {s.max_abs:.1e} cos {s.cosine:.6f}"


def ranking_table(summary: QuantizeSummary) -> list[str]:
    """The sweep's variants best first, one line each."""
    task = get_task(summary.task)
    first = summary.variants[0].components if summary.variants else []
    scored_roles = {c.role for v in summary.variants for c in v.components if c.quality is not None}
    roles = [c.role for c in first if c.role in scored_roles]
    head = f"{'#':>2} {'variant':<24} {'MB':>8} {'ratio':>6} {'conv s':>7}"
    scored = any(v.passed is not None for v in summary.variants)
    if scored:
        head += task.ranking_columns()
    head += "".join(f" {r[:11]:>11}" for r in roles) + f" {'RTFx':>6} gate"
    lines = [head]
    for i, name in enumerate(summary.ranking, start=1):
        v = summary.variant(name)
        row = f"{i:>2} {name[:24]:<24} {v.bytes / 1e6:>8.2f} {v.ratio:>6.2f}"
        row += f" {v.convert_seconds:>7.1f}"
        if scored:
            row += task.ranking_cells(v)
        by_role = {c.role: c for c in v.components}
        for role in roles:
            q = by_role[role].quality
            row += f" {q:>11.5f}" if q is not None else f" {'-':>11}"
        row += f" {v.rtfx:>6.1f}" if v.rtfx else f" {'-':>6}"
        row += " " + {True: "pass", False: "FAIL", None: "-"}[v.passed]
        if v.stopped:
            row += f" (stopped: {v.stopped})"
        lines.append(row)
    if roles:
        lines.append("(per component: 1 - ‖Δ‖/‖ref‖ of its output against the fp32 reference)")
    return lines


class StreamPrinter:
    """What ``speechport stream`` prints as a session runs: on a terminal, the text so far
    rewritten in place (``text``); otherwise one line per update, or one JSON object per
    event (``jsonl``: ``partial`` with the new tokens, ``end_of_utterance``, ``final``)."""

    def __init__(self, out: TextIO, output: str, sample_rate: int) -> None:
        self.out = out
        self.output = output
        self.sample_rate = sample_rate
        self.tty = out.isatty()
        self._shown = ""

    def update(self, update: StreamUpdate, samples: int) -> None:
        seconds = round(samples / self.sample_rate, 3)
        if self.output == "jsonl":
            if update.tokens:
                tokens = [
                    {"id": t.id, "piece": t.piece, "start": round(t.start, 3)}
                    for t in update.tokens
                ]
                self._json({"type": "partial", "audio_seconds": seconds, "text": update.text,
                            "tokens": tokens})  # fmt: skip
            for event in update.events:
                self._json({"type": event.kind, "seconds": round(event.seconds, 3),
                            "text": event.utterance})  # fmt: skip
            if update.final:
                self._json({"type": "final", "audio_seconds": seconds, "text": update.text})
            return
        if self.tty:
            if update.text != self._shown or update.final:
                self.out.write("\r\x1b[K" + update.text + ("\n" if update.final else ""))
                self.out.flush()
        elif update.tokens or update.final:
            self.out.write(update.text + "\n")
            self.out.flush()
        self._shown = update.text

    def close(self) -> None:
        self.out.flush()

    def _json(self, data: dict[str, Any]) -> None:
        self.out.write(json.dumps(data, ensure_ascii=False) + "\n")
        self.out.flush()


def stream_stats(session: StreamingSession, audio_seconds: float, wall: float) -> str:
    """Per-chunk encoder latency (first, median, p90) and the RTFx of a finished session."""
    times = [1000 * t for t in session.chunk_seconds]
    if not times:
        return "no chunk ran"
    hop = session.frontend.spec.hop_length
    chunk_ms = 1000 * session.chunking.step_frames * hop / session.recognizer.sample_rate
    return (
        f"{len(times)} chunks of {chunk_ms:.0f} ms (lookahead {session.chunking.lookahead}): "
        f"encoder first {times[0]:.2f} ms, median {float(np.median(times)):.2f} ms, "
        f"p90 {float(np.percentile(times, 90)):.2f} ms; "
        f"{audio_seconds:.2f} s of audio in {wall:.2f} s (RTFx {audio_seconds / wall:.1f}); "
        f"engine {session.recognizer.bundle.engine}"
    )
