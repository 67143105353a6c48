"""speechport against other runtimes of the same ONNX files: onnx-asr and sherpa-onnx.

Every engine gets the same decoded samples (file decoding is not timed), the same thread
count, and is warmed up on the first seconds of the first file. Then each round times every
engine over all the files in turn, so that a change in the machine's load falls on all of
them alike; the figure per engine is the median of the rounds. Each engine's turn starts
once the threads of the one before have gone idle (`settle`): ONNX Runtime's pools spin
after a call returns by default (sherpa-onnx's burn some 60-90 ms of CPU in the 50 ms after
a 4 s clip, onnx-asr's 30-40 ms), and the engine timed next would pay for it. Peers that are not
installed, or that cannot run the bundle, are listed with the reason instead of a figure.
speechport's time is split into its front end, encoder and decode loop (timed per window),
and the machine's load average is recorded before and after.

onnx-asr loads the bundle directory as it is, by the ``model_type`` its ``config.json`` names
(the bundles write one for onnx-asr). sherpa-onnx loads the bundle's own files as a NeMo
transducer when the encoder file carries its metadata (Parakeet bundles do); otherwise it
loads the layout ``speechport export sherpa-onnx`` derives from them (GigaAM transducers and
CTC models), written to a temporary directory before the timing.
"""

from __future__ import annotations

import dataclasses
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


# Audio longer than this goes to the peers in consecutive pieces of this length, texts joined:
# they encode a clip in one pass, and one pass of 10 min would hold GBs of attention scores
# (GigaAM v3: 16 heads x 15,000^2 frames). speechport cuts long audio into its own windows.
PEER_PIECE_SECONDS = 60.0
# The warm-up call of every engine: the first clip's first seconds.
WARMUP_SECONDS = 4.0
# `settle`: this process is idle when its threads use less than this share of a core over
# a poll of ``SETTLE_POLL_SECONDS``; it waits at most ``SETTLE_LIMIT_SECONDS``.
SETTLE_IDLE_SHARE = 0.1
SETTLE_POLL_SECONDS = 0.01
SETTLE_LIMIT_SECONDS = 2.0
# The parts of speechport's time reported, in the order of a row (the rest: planning,
# seams, text).
PARTS = ("front end", "encoder", "decode loop")


def bench_compare(
    bundle: Path,
    audio: list[Path],
    *,
    threads: int | None = None,
    runs: int = 3,
    onnx_asr_model: str | None = None,
    peer_piece_seconds: float = PEER_PIECE_SECONDS,
) -> dict[str, Any]:
    """Time speechport, onnx-asr and sherpa-onnx on ``audio`` with ``bundle``'s ONNX files."""
    from speechport.audio import collect_audio, load_audio

    manifest = read_manifest(bundle)
    files = collect_audio(audio)
    samples = [load_audio(f, sample_rate=manifest.sample_rate).samples for f in files]
    return compare_samples(
        bundle,
        [str(f) for f in files],
        samples,
        threads=threads,
        runs=runs,
        onnx_asr_model=onnx_asr_model,
        peer_piece_seconds=peer_piece_seconds,
    )


def compare_samples(
    bundle: Path,
    names: list[str],
    samples: list[np.ndarray],
    *,
    threads: int | None = None,
    runs: int = 3,
    onnx_asr_model: str | None = None,
    peer_piece_seconds: float = PEER_PIECE_SECONDS,
) -> dict[str, Any]:
    """`bench_compare` on decoded clips (``names`` for the report) at the bundle's rate."""
    threads = threads or os.cpu_count() or 1
    manifest = read_manifest(bundle)
    rate = manifest.sample_rate
    seconds = sum(s.size for s in samples) / rate
    ours = SpeechportEngine(bundle, threads)
    piece = max(1, round(peer_piece_seconds * rate))
    with tempfile.TemporaryDirectory(prefix="speechport-compare-") as scratch:
        engines: dict[str, Recognize | str] = {
            "speechport": ours,
            "onnx-asr": _in_pieces(_onnx_asr(bundle, manifest, threads, onnx_asr_model), piece),
            "sherpa-onnx": _in_pieces(_sherpa(bundle, manifest, threads, Path(scratch)), piece),
        }
        load_before = os.getloadavg()[0]
        results = _time(engines, samples, runs, warmup=round(WARMUP_SECONDS * rate))
        load_after = os.getloadavg()[0]
    mine = results["speechport"]
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
            if r is not mine and mine.seconds is not None:
                # > 1: speechport takes longer than the peer
                row["speechport_time_ratio"] = round(mine.seconds / r.seconds, 3)
                agree = sum(a == b for a, b in zip(mine.texts, r.texts, strict=True))
                row["transcripts_agree"] = f"{agree}/{len(names)}"
                row["differing_files"] = [
                    n for n, a, b in zip(names, mine.texts, r.texts, strict=True) if a != b
                ]
        rows.append(row)
    total = sum(mine.rounds)
    return {
        "bundle": str(bundle),
        "model": f"{manifest.family} {manifest.variant}",
        "files": len(names),
        "audio_seconds": round(seconds, 3),
        "threads": threads,
        "runs": max(runs, 1),
        "engines": rows,
        # speechport's time by part, over all its timed rounds
        "speechport_split": {
            part: round(ours.split[part] / total, 3) if total > 0 else None for part in PARTS
        },
        "tokens_per_second": round(ours.tokens / max(runs, 1) / seconds, 1) if seconds else None,
        "load_average": [round(load_before, 1), round(load_after, 1)],
    }


class _Part:
    """A callable (a component, the front end) whose calls add their time to ``split[part]``;
    other attributes are the wrapped object's."""

    def __init__(self, inner: Any, split: dict[str, float], part: str) -> None:
        self._inner, self._split, self._part = inner, split, part

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __call__(self, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._inner(*args)
        finally:
            self._split[self._part] += time.perf_counter() - start


class SpeechportEngine:
    """speechport's transcriber on the bundle's ONNX files as a samples -> text callable,
    timing its front end, encoder and decode loop (``split``, seconds since ``reset``; one
    wrapper call per window, so the cost is nil) and counting the tokens it emits."""

    def __init__(self, bundle: Path, threads: int) -> None:
        from speechport.pipelines.transcriber import Transcriber
        from speechport.runtime import load_bundle, make_backend

        loaded = load_bundle(bundle, make_backend("onnx", threads=threads))
        self.split = dict.fromkeys(PARTS, 0.0)
        components = {
            role: _Part(c, self.split, "encoder") if c.spec.kind == "encoder" else c
            for role, c in loaded.components.items()
        }
        self.transcriber = Transcriber(dataclasses.replace(loaded, components=components))
        self.transcriber.frontend = _Part(self.transcriber.frontend, self.split, "front end")  # type: ignore[assignment]
        decode = _Part(self.transcriber.decode_encoded, self.split, "decode loop")
        setattr(self.transcriber, "decode_encoded", decode)  # noqa: B010 - the instance's own
        self.tokens = 0

    def reset(self) -> None:
        self.split.update(dict.fromkeys(PARTS, 0.0))
        self.tokens = 0

    def __call__(self, samples: np.ndarray) -> str:
        transcript = self.transcriber.transcribe(samples)
        self.tokens += len(transcript.token_ids)
        return str(transcript.text)


def _in_pieces(engine: Recognize | str, piece: int) -> Recognize | str:
    """``engine`` fed consecutive pieces of at most ``piece`` samples, texts joined."""
    if isinstance(engine, str):
        return engine

    def recognize(samples: np.ndarray) -> str:
        if samples.size <= piece:
            return engine(samples)
        return " ".join(engine(samples[i : i + piece]) for i in range(0, samples.size, piece))

    return recognize


def _time(
    engines: dict[str, Recognize | str], samples: list[np.ndarray], runs: int, *, warmup: int
) -> dict[str, EngineResult]:
    """Warm every engine up on the first ``warmup`` samples of the first clip, then time them
    in turns, ``runs`` rounds."""
    results = {name: EngineResult(name) for name in engines}
    runnable: dict[str, Recognize] = {}
    for name, engine in engines.items():
        if isinstance(engine, str):
            results[name].skipped = engine
            continue
        try:
            engine(samples[0][:warmup])
        except Exception as exc:  # a peer that cannot run this bundle: say why, go on
            results[name].skipped = f"failed: {str(exc).splitlines()[0] if str(exc) else exc!r}"
            continue
        runnable[name] = engine
    for engine in runnable.values():
        if isinstance(engine, SpeechportEngine):
            engine.reset()
    for _ in range(max(runs, 1)):
        for name, engine in runnable.items():
            settle()
            start = time.perf_counter()
            texts = [engine(x) for x in samples]
            results[name].rounds.append(time.perf_counter() - start)
            results[name].texts = [" ".join(t.split()) for t in texts]
    return results


def settle(limit: float = SETTLE_LIMIT_SECONDS) -> float:
    """Wait until this process's threads are idle (a thread pool that spins after its last
    task has stopped), at most ``limit`` seconds; the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        cpu = time.process_time()
        time.sleep(SETTLE_POLL_SECONDS)
        if time.process_time() - cpu < SETTLE_IDLE_SHARE * SETTLE_POLL_SECONDS:
            break
    return time.perf_counter() - start


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
    lines.append(f"speechport's time: {split_text(result['speechport_split'])}")
    lines.append(
        f"speechport emitted {result['tokens_per_second']} tokens per second of audio; load "
        f"average {result['load_average'][0]} -> {result['load_average'][1]}"
    )
    return lines


def split_text(split: dict[str, float | None]) -> str:
    """``front end 2 %, encoder 70 %, decode loop 26 %``."""
    return ", ".join(
        f"{part} {'-' if share is None else f'{100 * share:.0f} %'}"
        for part, share in split.items()
    )


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
    from speechport.export.sherpa import TOKENS, TRANSDUCER, TRANSDUCER_ROLES, SherpaLayout

    paths = {}
    for kind, role in TRANSDUCER_ROLES.items():
        spec = next((c for c in manifest.components.values() if c.kind == kind), None)
        if spec is None or "onnx" not in spec.files:
            return f"no ONNX {kind}"
        paths[role] = bundle / spec.files["onnx"].path
    paths["tokens"] = bundle / TOKENS
    if not paths["tokens"].is_file():
        return f"no {TOKENS}"
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
