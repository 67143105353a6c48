"""``verify``: a bundle against its torch reference, on real audio, per backend.

For speech recognition, per file and backend:

- end to end: token-exact flag, character error rate and the first divergence (time,
  expected and got);
- per component (``parity/components.py``): max abs, max rel, mean abs, cosine and L2 per
  frame over time, on the reference's inputs; integer outputs (lengths) must be exact;
- latency per component (first call, warm median and p90) and end-to-end RTFx.

For voice activity: the largest probability difference per form of the model and whether
the speech segments are identical, plus latency.

A bundle passes when every file meets the gate: transcripts token-exact or within
``max_cer``, and exact lengths; VAD probabilities within ``max_prob_diff`` with equal
segments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from speechport.environment import host_info, package_versions
from speechport.errors import GateError, SpeechportError
from speechport.manifest import read_manifest
from speechport.parity.latency import Recorder, measure, record
from speechport.parity.reference import ReferenceCache
from speechport.parity.report import PARITY_FILE, Latency, ParityReport
from speechport.progress import Progress
from speechport.runtime import load_bundle, make_backend
from speechport.runtime.base import LoadedBundle
from speechport.tasks import DEFAULT_LIMITS, GateLimits, get_task, task_for

REFERENCE = "torch"
_VERSIONS = ("numpy", "onnxruntime", "coremltools", "torch", "onnx")


@dataclass
class VerifyRun:
    """What a task's checks work with for one ``verify`` run: the reference, every
    candidate backend, the limits, the report being filled and the time each backend spent
    end to end (for RTFx)."""

    reference: LoadedBundle
    candidates: dict[str, LoadedBundle]
    limits: GateLimits
    report: ParityReport
    run_seconds: dict[str, float] = field(default_factory=dict)
    audio_seconds: float = 0.0  # audio heard or spoken, for RTFx
    keywords: str | None = None  # keyword spotting: what to search for (None: the task's)


def verify_bundle(
    bundle: Path,
    audio_files: list[Path],
    *,
    backends: list[str],
    checkpoint: Path | None = None,
    limits: GateLimits = DEFAULT_LIMITS,
    latency_runs: int = 20,
    label: str | None = None,
    time_reference: bool = True,
    texts: list[str] | None = None,
    reference: ReferenceCache | None = None,
    stop_at_failure: bool = False,
    latency_from_run: bool = False,
    keywords: str | None = None,
) -> ParityReport:
    """Run ``audio_files`` through the torch reference and through each backend
    (``time_reference=False``: latency of the backends only). What is compared and gated is
    the bundle's task's (``speechport.tasks``); ``texts`` are for tasks verified on text
    (speech synthesis), which have default texts of their own.

    ``reference``: the reference's outputs kept across runs on the same inputs (the torch
    reference of the same checkpoint; it is not timed). ``stop_at_failure``: stop as soon as
    the gate cannot be met any more (``report.stopped`` says where). Keyword spotting:
    ``limits.min_agreement`` is the share of files whose detections must equal the
    reference's, ``keywords`` what is searched for (a file or phrases, as ``spot`` takes
    them; default: pairs of tokens from the reference's own transcript of each file)."""
    if not backends:
        raise SpeechportError("no backend to verify", hint="pass --backends onnx")
    if REFERENCE in backends:
        raise SpeechportError(
            "the torch backend is the reference; it cannot be verified against itself",
            hint="pass --backends onnx,coreml",
        )
    manifest = read_manifest(bundle)
    task = task_for(manifest, bundle)
    inputs = task.verify_inputs(audio_files, list(texts or []), manifest.sample_rate)
    if reference is None:
        reference_bundle = load_bundle(bundle, make_backend(REFERENCE, checkpoint=checkpoint))
    else:
        reference_bundle, time_reference = reference.load(), False
    loaded = {name: load_bundle(bundle, name) for name in backends}
    recorders = {REFERENCE: record(reference_bundle)} if time_reference else {}
    recorders.update({name: record(b) for name, b in loaded.items()})
    report = ParityReport(
        bundle=label or str(bundle),
        task=task.name,
        reference_engine=reference_bundle.engine,
        engines={name: b.engine for name, b in loaded.items()},
        gates=task.gates(limits),
        host=host_info(),
        versions=package_versions(_VERSIONS),
    )
    run = VerifyRun(
        reference_bundle, loaded, limits, report, dict.fromkeys(loaded, 0.0), keywords=keywords
    )
    total = len(audio_files) or len(texts or []) or None  # None: the task's own inputs
    what = "file" if audio_files else "input"
    for number, item in enumerate(inputs, start=1):
        run.audio_seconds += item.seconds
        task.verify_file(run, item.data, item.label)
        if stop_at_failure and report.cannot_pass(total) and (total is None or number < total):
            report.stopped = f"gate failed at {what} {number}" + (f"/{total}" if total else "")
            break
    report.rtfx = {
        name: run.audio_seconds / seconds
        for name, seconds in run.run_seconds.items()
        if seconds > 0
    }
    report.latency = _latency(recorders, latency_runs, from_run=latency_from_run)
    return report


def _latency(
    recorders: dict[str, dict[str, Recorder]], runs: int, *, from_run: bool = False
) -> dict[str, dict[str, Latency]]:
    out: dict[str, dict[str, Latency]] = {}
    for backend, per_role in recorders.items():
        for recorder in per_role.values():
            figures = measure(recorder, runs=runs, from_run=from_run)
            if figures is not None:
                out.setdefault(backend, {})[recorder.spec.name] = figures
    return out


def write_report(report: ParityReport, bundle: Path, *, plots: bool = True) -> Path:
    """Store the report as ``verify/parity.json`` in the bundle with its plots (``plots``),
    and refresh the model card's fidelity and latency sections. Returns the report's path."""
    from speechport.export.card import render_card
    from speechport.fsutil import atomic_write_text

    drawn = draw_plots(report, bundle) if plots else []
    report.plots = [p.relative_to(bundle).as_posix() for p in drawn]
    target = report.save(bundle / PARITY_FILE)
    atomic_write_text(bundle / "README.md", render_card(read_manifest(bundle), bundle))
    return target


def draw_plots(report: ParityReport, bundle: Path) -> list[Path]:
    """The task's plots and the latency bars, into the bundle's ``verify/`` folder (none
    without matplotlib)."""
    from speechport.parity import plots

    if not plots.available():
        return []
    out = bundle / PARITY_FILE.parent
    written = get_task(report.task).draw_plots(report, out)
    if report.latency:
        figures = {
            backend: {
                name: {"median_ms": f.median_ms, "p90_ms": f.p90_ms} for name, f in per.items()
            }
            for backend, per in report.latency.items()
        }
        written.append(
            plots.latency_bars(
                figures,
                out / "latency.png",
                title="Latency per component (warm median; reference: torch)",
            )
        )
    return written


@dataclass(frozen=True)
class Gate:
    """What ``convert --verify`` checks a new bundle on, and how strictly."""

    audio: list[Path]
    backends: list[str]
    limits: GateLimits = DEFAULT_LIMITS
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
            inputs = f"{len(gate.audio)} file(s)" if gate.audio else "its built-in inputs"
            progress.start(f"verify on {inputs}: {', '.join(gate.backends)}")
        report = verify_bundle(
            tmp,
            gate.audio,
            backends=gate.backends,
            limits=gate.limits,
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
