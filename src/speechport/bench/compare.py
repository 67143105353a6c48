"""speechport against other runtimes of the same ONNX files: onnx-asr and sherpa-onnx.

Every engine gets the same decoded samples (file decoding is not timed), the same thread
count, and is warmed up on the first file. Then each round times every engine over all the
files in turn, so that a change in the machine's load falls on all of them alike; the
figure per engine is the median of the rounds. Peers that are not installed, or that cannot
run the bundle, are listed with the reason instead of a figure.

onnx-asr loads the bundle directory as it is, by the ``model_type`` its ``config.json`` names
(the bundles write one for onnx-asr). sherpa-onnx loads the bundle's own files as a NeMo
transducer when the encoder file carries its metadata (Parakeet bundles do); otherwise it
loads the layout ``speechport export sherpa-onnx`` derives from them (GigaAM transducers and
CTC models), written to a temporary directory before the timing.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from speechport.manifest import Manifest, read_manifest

if TYPE_CHECKING:
    from speechport.export.sherpa import SherpaLayout

Recognize = Callable[[np.ndarray], str]


@dataclass
class EngineResult:
    """One engine's figures: seconds per round (median), RTFx and its transcripts."""

    name: str
    seconds: float | None = None
    rtfx: float | None = None
    texts: list[str] = field(default_factory=list)
    skipped: str | None = None
    rounds: list[float] = field(default_factory=list)


def bench_compare(
    bundle: Path,
    audio: list[Path],
    *,
    threads: int | None = None,
    runs: int = 3,
    onnx_asr_model: str | None = None,
) -> dict[str, Any]:
    """Time speechport, onnx-asr and sherpa-onnx on ``audio`` with ``bundle``'s ONNX files."""
    import speechport
    from speechport.audio import collect_audio, load_audio

    threads = threads or os.cpu_count() or 1
    manifest = read_manifest(bundle)
    files = collect_audio(audio)
    samples = [load_audio(f, sample_rate=manifest.sample_rate).samples for f in files]
    seconds = sum(s.size for s in samples) / manifest.sample_rate
    transcriber = speechport.load(bundle, threads=threads)
    with tempfile.TemporaryDirectory(prefix="speechport-compare-") as scratch:
        engines: dict[str, Recognize | str] = {
            "speechport": lambda x: str(transcriber.transcribe(x).text),
            "onnx-asr": _onnx_asr(bundle, manifest, threads, onnx_asr_model),
            "sherpa-onnx": _sherpa(bundle, manifest, threads, Path(scratch)),
        }
        results = _time(engines, samples, runs)
    ours = results["speechport"]
    for r in results.values():
        if r.rounds:
            r.seconds = statistics.median(r.rounds)
            r.rtfx = seconds / r.seconds if r.seconds > 0 else None
    rows = []
    for r in results.values():
        row: dict[str, Any] = {"engine": r.name}
        if r.seconds is None:
            row["skipped"] = r.skipped
        else:
            row["seconds"] = round(r.seconds, 4)
            row["rtfx"] = None if r.rtfx is None else round(r.rtfx, 1)
            if r is not ours and ours.seconds is not None:
                # > 1: speechport takes longer than the peer
                row["speechport_time_ratio"] = round(ours.seconds / r.seconds, 3)
                agree = sum(a == b for a, b in zip(ours.texts, r.texts, strict=True))
                row["transcripts_agree"] = f"{agree}/{len(files)}"
                row["differing_files"] = [
                    str(f) for f, a, b in zip(files, ours.texts, r.texts, strict=True) if a != b
                ]
        rows.append(row)
    return {
        "bundle": str(bundle),
        "model": f"{manifest.family} {manifest.variant}",
        "files": len(files),
        "audio_seconds": round(seconds, 3),
        "threads": threads,
        "runs": max(runs, 1),
        "engines": rows,
    }


def _time(
    engines: dict[str, Recognize | str], samples: list[np.ndarray], runs: int
) -> dict[str, EngineResult]:
    """Warm every engine up on the first file, then time them in turns, ``runs`` rounds."""
    results = {name: EngineResult(name) for name in engines}
    runnable: dict[str, Recognize] = {}
    for name, engine in engines.items():
        if isinstance(engine, str):
            results[name].skipped = engine
            continue
        try:
            engine(samples[0])  # warm-up
        except Exception as exc:  # a peer that cannot run this bundle: say why, go on
            results[name].skipped = f"failed: {str(exc).splitlines()[0] if str(exc) else exc!r}"
            continue
        runnable[name] = engine
    for _ in range(max(runs, 1)):
        for name, engine in runnable.items():
            start = time.perf_counter()
            texts = [engine(x) for x in samples]
            results[name].rounds.append(time.perf_counter() - start)
            results[name].texts = [" ".join(t.split()) for t in texts]
    return results


def table(result: dict[str, Any]) -> list[str]:
    """The result as lines for a terminal."""
    lines = [
        f"{result['model']}: {result['files']} files, {result['audio_seconds']:g} s of audio, "
        f"{result['threads']} threads, median of {result['runs']} rounds",
        f"{'engine':<12} {'seconds':>9} {'RTFx':>8}  speechport vs it      transcripts",
    ]
    for row in result["engines"]:
        if "seconds" not in row:
            lines.append(f"{row['engine']:<12} {'-':>9} {'-':>8}  {row['skipped']}")
            continue
        ratio = row.get("speechport_time_ratio")
        if ratio is None:
            versus, agree = "", ""
        else:
            versus = f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"
            agree = f"{row['transcripts_agree']} agree"
        rtfx = "-" if row["rtfx"] is None else f"{row['rtfx']:.1f}"
        line = f"{row['engine']:<12} {row['seconds']:>9.3f} {rtfx:>8}  {versus:<20} {agree}"
        lines.append(line.rstrip())
    return lines


def _onnx_asr(bundle: Path, manifest: Manifest, threads: int, model: str | None) -> Recognize | str:
    try:
        import onnx_asr
        import onnxruntime as ort
    except ImportError:
        return "not installed (pip install onnx-asr)"
    if model is None:
        model = _onnx_asr_model(bundle)
    if model is None:
        return "no onnx-asr model type for this bundle (pass --onnx-asr-model)"
    if manifest.sample_rate != 16000:
        return f"runs at {manifest.sample_rate} Hz; this comparison feeds 16 kHz"
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        asr = onnx_asr.load_model(model, bundle, sess_options=options)
    except Exception as exc:
        return f"cannot load the bundle ({str(exc).splitlines()[0] if str(exc) else exc!r})"

    def recognize(samples: np.ndarray) -> str:
        waveform: npt.NDArray[np.float32] = np.asarray(samples, dtype=np.float32)
        return str(asr.recognize(waveform, sample_rate=16000))

    return recognize


def _onnx_asr_model(bundle: Path) -> str | None:
    """onnx-asr's model type for the bundle: the one its config.json names."""
    config = bundle / "config.json"
    if not config.is_file():
        return None
    model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    return model_type if isinstance(model_type, str) else None


def _sherpa(bundle: Path, manifest: Manifest, threads: int, scratch: Path) -> Recognize | str:
    """sherpa-onnx on the bundle's own files when they carry its layout (Parakeet), else on
    the layout ``speechport export sherpa-onnx`` writes (GigaAM), in ``scratch``."""
    try:
        import sherpa_onnx  # noqa: F401
    except ImportError:
        return "not installed (pip install sherpa-onnx)"
    from speechport.errors import SpeechportError
    from speechport.export.sherpa import write_sherpa_layout

    layout = _own_sherpa_layout(bundle, manifest)
    if isinstance(layout, str):
        try:
            layout = write_sherpa_layout(bundle, scratch / "sherpa-onnx")
        except SpeechportError as exc:
            return f"{layout}; no sherpa-onnx layout either ({exc.message})"
    return sherpa_recognizer(layout, threads)


def _own_sherpa_layout(bundle: Path, manifest: Manifest) -> SherpaLayout | str:
    """The bundle's own transducer files as sherpa-onnx's NeMo layout, or why they are not."""
    from speechport.export.sherpa import TRANSDUCER, SherpaLayout

    paths = {}
    for kind, role in (("encoder", "encoder"), ("decoder_step", "decoder"), ("joint", "joiner")):
        spec = next((c for c in manifest.components.values() if c.kind == kind), None)
        if spec is None or "onnx" not in spec.files:
            return f"no ONNX {kind}"
        paths[role] = bundle / spec.files["onnx"].path
    paths["tokens"] = bundle / "tokens.txt"
    if not paths["tokens"].is_file():
        return "no tokens.txt"
    if "vocab_size" not in _metadata(paths["encoder"]):
        return "the encoder file carries no sherpa-onnx metadata"
    feature_dim = manifest.frontend.get("n_mels")
    if not isinstance(feature_dim, int):
        return "no mel feature size in the manifest"
    return SherpaLayout(bundle, TRANSDUCER, paths, feature_dim, manifest.sample_rate)


def sherpa_recognizer(layout: SherpaLayout, threads: int) -> Recognize:
    """sherpa-onnx's offline recognizer on ``layout``'s files, as a samples -> text callable.
    (sherpa-onnx aborts the process, raising nothing, on some bad models: the layout's
    checks keep it to the files it knows.)"""
    import sherpa_onnx

    from speechport.export.sherpa import CTC

    files = {role: str(path) for role, path in layout.files.items()}
    common: dict[str, Any] = {
        "num_threads": threads,
        "sample_rate": layout.sample_rate,
        "feature_dim": layout.feature_dim,
    }
    if layout.model_type == CTC:
        recognizer = sherpa_onnx.OfflineRecognizer.from_nemo_ctc(
            files["model"], files["tokens"], **common
        )
    else:
        recognizer = sherpa_onnx.OfflineRecognizer.from_transducer(
            files["encoder"],
            files["decoder"],
            files["joiner"],
            files["tokens"],
            model_type=layout.model_type,
            **common,
        )
    rate = layout.sample_rate

    def recognize(samples: np.ndarray) -> str:
        stream = recognizer.create_stream()
        stream.accept_waveform(rate, np.asarray(samples, dtype=np.float32))
        recognizer.decode_stream(stream)
        return str(stream.result.text)

    return recognize


def _metadata(path: Path) -> dict[str, str]:
    """An ONNX file's metadata properties."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta: dict[str, str] = session.get_modelmeta().custom_metadata_map
    return meta
