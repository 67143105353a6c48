"""The generated model card (``README.md``) of a bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from speechport.decoding import decoding_algorithm
from speechport.errors import BundleError
from speechport.fsutil import human_size, path_size
from speechport.manifest import (
    MANIFEST_NAME,
    ComponentSpec,
    DecodingSpec,
    Manifest,
    TensorSpec,
    TokenizerSpec,
    VadSpec,
)
from speechport.parity.report import PARITY_FILE, ParityReport
from speechport.tasks import Task, get_task

FORMAT_TITLES = {"coreml": "Core ML", "onnx": "ONNX"}


def render_card(manifest: Manifest, bundle: Path) -> str:
    """Markdown for the bundle at ``bundle`` (sizes are read from the files on disk)."""
    m = manifest
    lines: list[str] = [
        f"# {m.variant} ({m.family}) — {', '.join(FORMAT_TITLES[f] for f in m.formats)}",
        "",
        str(m.extras.get("description", "")),
        "",
        f"Task: `{m.task}`. {_shape_summary(m)} Made by speechport "
        f"{m.provenance.get('converters', {}).get('speechport', '?')}; the manifest "
        f"`{MANIFEST_NAME}` describes everything below in machine-readable form.",
        "",
        "## Files",
        "",
        "| file | size | role |",
        "|---|---|---|",
    ]
    for name, role in _file_roles(m, bundle):
        lines.append(f"| `{name}` | {human_size(path_size(bundle / name))} | {role} |")
    lines += ["", "## I/O contracts", ""]
    for comp in m.components.values():
        lines += _component_section(comp)
    if m.tts is not None:
        lines += ["## Text and voices", "", _tts_text(m), ""]
    elif m.frontend.get("kind") == "waveform":
        lines += [
            "## Front end",
            "",
            "None on the host: the components take raw 16 kHz samples "
            "in [-1, 1] (the model computes its own STFT).",
            "",
        ]
    else:
        lines += [
            "## Front end",
            "",
            "Computed on the host (numpy in speechport's runtime); every parameter:",
            "",
            "```json",
            json.dumps(m.frontend, indent=2),
            "```",
            "",
        ]
    if m.decoding is not None and m.tokenizer is not None:
        lines += ["## Decoding", "", _decoding_text(m.decoding, m.tokenizer), ""]
    if m.vad is not None:
        lines += ["## Voice activity", "", _vad_text(m.vad, m.sample_rate), ""]
    task = get_task(m.task)
    lines += ["## Usage", "", "```sh", "pip install speechport", task.usage, "```", ""]
    for fmt, script in (("coreml", "example_infer.py"), ("onnx", "example_infer_onnx.py")):
        if fmt in m.formats:
            deps = "coremltools, numpy" if fmt == "coreml" else "onnxruntime, numpy"
            lines.append(
                f"Without speechport: `python {script} {task.example_args}` (needs only "
                f"{deps}; {task.example_input})."
            )
    if "onnx" in m.formats and m.extras.get("onnx_compatibility"):
        lines += ["", str(m.extras["onnx_compatibility"])]
    lines += ["", *task.card_sections(bundle), *_fidelity_section(bundle, task)]
    lines += ["", "## Provenance", ""]
    prov = m.provenance
    lines += [
        f"- source: `{prov.get('source_checkpoint')}` (sha256 `{prov.get('checkpoint_sha256')}`)",
        f"- converters: {', '.join(f'{k} {v}' for k, v in prov.get('converters', {}).items())}",
        f"- precision: {prov.get('precision')}; compression: "
        f"{_compression_text(prov.get('compression'))}",
        f"- created: {prov.get('created')}",
    ]
    for note in prov.get("notes", []):
        lines.append(f"- note: {note}")
    upstream = m.extras.get("upstream")
    if upstream:
        lines += ["", f"Upstream model and license: {upstream}."]
    return "\n".join(lines) + "\n"


def _compression_text(compression: Any) -> str:
    """The provenance's compression record in one line (``None``: plain weights)."""
    if not compression:
        return "none"
    parts = [f"{role} {c['name']}" for role, c in compression["recipe"]["components"].items()]
    target = compression.get("needs")
    text = f"`{compression['recipe']['name']}` ({', '.join(parts) or 'none'}"
    text += f"; weight threshold {compression['weight_threshold']}"
    text += f"; needs {target})" if target else ")"
    return text + f" by speechport quantize with {compression['tool']}"


def _file_roles(m: Manifest, bundle: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for comp in m.components.values():
        for fmt, file in comp.files.items():
            how = file.precision + (f", weights {file.compression}" if file.compression else "")
            rows.append((file.path, f"{comp.name} ({FORMAT_TITLES[fmt]}, {how})"))
    known = {name for name, _ in rows}
    described = {
        MANIFEST_NAME: "manifest: front end, components, decoding, provenance",
        "README.md": "this model card",
        "example_infer.py": "standalone Core ML example (coremltools + numpy)",
        "example_infer_onnx.py": "standalone ONNX example (onnxruntime + numpy)",
        "config.json": "ONNX runtime config (onnx-asr layout)",
    }
    if m.tts is not None:
        described["voices"] = "voice style packs (`.npy`, [rows, style_dim])"
    if m.tokenizer is not None:
        described[m.tokenizer.tokens_file] = "token pieces in id order (blank excluded)"
        if m.tokenizer.model_file:
            described[m.tokenizer.model_file] = "original SentencePiece model"
    for path in sorted(bundle.iterdir()):
        name = path.name
        if name in known or name.startswith("."):
            continue
        role = described.get(name)
        if role is None and name.endswith("_vocab.txt"):
            role = "vocabulary for ONNX runtimes (`<blk>` last)"
        if role is None and name.endswith(".yaml"):
            role = "upstream model config"
        if role is None:
            role = "verification results" if name == "verify" else ""
        rows.append((name, role))
    return rows


def _shape(t: TensorSpec) -> str:
    """``float32 [1, 64, 499|999|2999]``: dynamic axes by name, bucketed ones by sizes."""
    dims = [
        t.dynamic_axes.get(i, "|".join(str(n) for n in t.buckets.get(i, (d,))))
        for i, d in enumerate(t.shape)
    ]
    return f"{t.dtype} [{', '.join(str(d) for d in dims)}]"


def _named(t: TensorSpec) -> str:
    note = f" ({t.description})" if t.description else ""
    return f"`{t.name}` {_shape(t)}{note}"


def _component_section(comp: ComponentSpec) -> list[str]:
    lines = [f"**{comp.name}** ({comp.role}): {comp.description}", ""]
    lines.append("| | name | tensor | note |")
    lines.append("|---|---|---|---|")
    for kind, specs in (("in", comp.inputs), ("out", comp.outputs)):
        for t in specs:
            lines.append(f"| {kind} | `{t.name}` | {_shape(t)} | {t.description} |")
    if comp.state:
        pairs = ", ".join(f"`{s.input}` → `{s.output}` ({s.init})" for s in comp.state)
        lines += ["", f"State: {pairs}."]
    for fmt, file in comp.files.items():
        if (file.inputs, file.outputs) != (comp.inputs, comp.outputs):
            ins = ", ".join(_named(t) for t in file.inputs)
            outs = ", ".join(_named(t) for t in file.outputs)
            lines += ["", f"{FORMAT_TITLES[fmt]} file `{file.path}`: {ins} → {outs}."]
    return [*lines, ""]


def _shape_summary(m: Manifest) -> str:
    if m.window is not None:
        return (
            f"Fixed window: {m.window.seconds(m.sample_rate):g} s ({m.window.samples} samples at "
            f"{m.sample_rate} Hz, {m.window.feature_frames} feature frames, "
            f"{m.window.encoder_frames} encoder frames)."
        )
    if m.vad is not None:
        ms = 1000 * m.vad.chunk_samples / m.sample_rate
        return (
            f"Fixed input: {m.vad.window_samples} samples ({m.vad.context_samples} of context + "
            f"{m.vad.chunk_samples} new = {ms:g} ms of new audio per call at {m.sample_rate} Hz)."
        )
    return ""


def _decoding_text(d: DecodingSpec, tokenizer: TokenizerSpec) -> str:
    algorithm = decoding_algorithm(d.algorithm)
    numbers = f" Blank id {d.blank_id}; at most {d.max_symbols_per_frame} symbols per frame"
    if d.durations:
        numbers += f"; durations {list(d.durations)}"
    text = algorithm.description + numbers + "."
    timing = (
        f"Timestamps: encoder frame t starts at t × {d.frame_duration:g} s"
        if d.timestamps == "nominal"
        else "Timestamps (as upstream computes them): frame t starts at t × window duration / "
        f"encoded_len (≈ t × {d.frame_duration:g} s)"
    )
    return (
        f"{text} {d.vocab_size} tokens in "
        f"`{tokenizer.tokens_file}` ({tokenizer.kind}). {timing}, plus the window offset."
    )


def _tts_text(m: Manifest) -> str:
    from speechport.tasks.tts_spec import TtsSpec

    t = TtsSpec.from_manifest(m)
    spf = t.samples_per_frame
    seconds = " and ".join(f"{f} ({f * spf / m.sample_rate:g} s)" for f in t.frame_buckets)
    g2p = t.g2p
    return (
        f"Text becomes phonemes through {g2p['engine']} {g2p['version']} ({g2p['language']}), "
        f"mapped to the model's {len(t.vocab)}-symbol phoneme vocabulary (`tts.vocab`). The text "
        f"stage runs at {' or '.join(str(n) for n in t.token_buckets)} tokens (phoneme ids "
        "between two 0 boundary tokens, zero-padded) and returns durations in frames; the host "
        "rounds them (half to even, at least 1), repeats each token's features for its frames "
        f"and runs the acoustic stage at {seconds} frames of {spf} samples, with normal noise "
        f"drawn for the true length and zero-padded ({', '.join(t.noise_inputs)}). Voice "
        f"styles: {', '.join(f'`{v}`' for v in t.voices)} (default `{t.default_voice}`), "
        "`[rows, style_dim]` each; the row is the number of phonemes − 1. Long text is split "
        f"at sentences, phrases, then words (at most {t.max_phonemes} phonemes per chunk)."
    )


def _vad_text(v: VadSpec, sample_rate: int) -> str:
    long_ms = 1000 * v.chunk_samples * v.sub_chunks / sample_rate
    defaults = ", ".join(f"{k} {val:g}" for k, val in v.defaults.items())
    return (
        f"Feed {v.chunk_samples} new samples per call with the last {v.context_samples} samples "
        "of the previous call in front (zeros at the start) and the state returned by the "
        "previous call (zeros at the start); the output is the probability that the new "
        f"samples hold speech. The long component does {v.sub_chunks} such steps per call "
        f"({long_ms:g} ms) and returns their noisy-OR and the {v.sub_chunks} probabilities. "
        "Segments follow Silero's get_speech_timestamps rules with these defaults: "
        f"{defaults}."
    )


def _fidelity_section(bundle: Path, task: Task) -> list[str]:
    parity = bundle / PARITY_FILE
    title = ["## Fidelity", ""]
    if not parity.is_file():
        return [
            *title,
            f"Not measured yet: {task.verify_usage} compares this bundle with its torch "
            "reference and writes the results here.",
        ]
    try:
        report = ParityReport.load(parity)
    except BundleError as exc:
        return [
            *title,
            f"The stored report could not be read ({exc.message}): run `speechport verify` again.",
        ]
    engines = "; ".join(f"{k}: {v}" for k, v in report.engines.items())
    lines = [
        *title,
        f"`speechport verify` against the torch reference ({report.reference_engine}); "
        f"engines: {engines}. Verdict: **{'passed' if report.passed else 'FAILED'}**.",
        "",
        *get_task(report.task).card_fidelity(report),
    ]
    return [*lines, *_latency_section(report)]


def _latency_section(report: ParityReport) -> list[str]:
    lines: list[str] = []
    if report.latency:
        host = report.host
        lines += [
            "",
            "## Latency",
            "",
            f"Measured by `speechport verify` on {host.get('system', '?')} "
            f"{host.get('machine', '')} ({host.get('cpus', '?')} CPUs), on the inputs the "
            "components received for the first file; milliseconds per call.",
            "",
            "| component | backend | engine | first call | warm median | p90 |",
            "|---|---|---|---|---|---|",
        ]
        engines = {"torch": report.reference_engine, **report.engines}
        for backend, per in report.latency.items():
            for comp, f in per.items():
                lines.append(
                    f"| {comp} | {backend} | {engines.get(backend, '')} | {f.first_ms:.2f} | "
                    f"{f.median_ms:.2f} | {f.p90_ms:.2f} |"
                )
        if report.rtfx:
            lines += [
                "",
                "End to end, audio seconds per second of compute (RTFx): "
                + ", ".join(f"{k} {v:.1f}" for k, v in report.rtfx.items())
                + ".",
            ]
    if report.plots:
        lines += ["", *[f"![{Path(p).stem}]({p})" for p in report.plots]]
    return lines
