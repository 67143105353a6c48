"""The Python API: ``load`` a bundle as its task's runtime object; ``convert``, ``verify``
and ``quantize`` as the CLI does them, with options as frozen dataclasses.

Library calls print nothing unless asked (``verbose=True``, or a ``progress`` callback
that receives each progress line).

>>> import speechport
>>> speechport.load("bundles/parakeet").transcribe("talk.wav").text
>>> speechport.load("bundles/silero-vad").segments("talk.wav")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechport.errors import SpeechportError
from speechport.manifest import read_manifest
from speechport.progress import Progress
from speechport.tasks import GateLimits, task_for

if TYPE_CHECKING:
    from speechport.compression.results import QuantizeSummary
    from speechport.manifest import Manifest
    from speechport.parity.report import ParityReport

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class ConvertOptions:
    """How ``convert`` builds a bundle.

    ``formats``: ``coreml`` and/or ``onnx``; ``precision``: the Core ML compute precision
    (``fp16`` or ``fp32``; ONNX is fp32); ``window_seconds``: the ASR encoder window
    (default: the family's); ``tokenizer``: a SentencePiece model where the checkpoint has
    none (GigaAM e2e variants); ``overwrite``: replace an existing bundle. With
    ``verify_audio`` (or a ``gate`` alone: speech synthesis, on its built-in sentences), the
    new bundle is verified with ``gate`` before it is kept (a bundle that fails is not
    written). ``lookaheads``: the attention lookaheads a
    streaming bundle exports (default: the model's first).
    """

    formats: tuple[str, ...] = ("coreml", "onnx")
    precision: str = "fp16"
    window_seconds: float | None = None
    tokenizer: Path | None = None
    overwrite: bool = False
    verify_audio: tuple[Path, ...] = ()
    gate: VerifyOptions | None = None
    lookaheads: tuple[int, ...] | None = None  # streaming bundles: which to export


@dataclass(frozen=True)
class VerifyOptions:
    """What ``verify`` compares and how strictly.

    ``backends``: engines to check against the torch reference (``onnx``, ``coreml``);
    ``reference``: the source checkpoint (default: the one the bundle's provenance names);
    ``max_cer``: speech recognition passes when tokens are exact or the CER is at most this;
    ``max_prob_diff``: voice activity passes within this speech-probability difference;
    ``max_spectral_convergence``, ``max_f0_diff``: speech synthesis passes with exact durations,
    its audio's spectral convergence and its F0 and energy (|Δ| / the reference's peak)
    within these; keyword spotting passes when at least ``min_agreement`` of the
    utterances give the reference's detections exactly, searching for ``keywords`` (a file
    or comma-separated phrases; default: pairs of tokens the reference hears in each
    utterance); ``texts``: what a speech-synthesis bundle is verified on
    (``phonemes:...`` for phonemes; default: built-in phoneme strings); ``latency_runs``:
    warm calls timed per component; ``write``: store the report, plots
    and model-card tables in the bundle.
    """

    backends: tuple[str, ...] = ("onnx",)
    reference: Path | None = None
    max_cer: float = 0.0
    max_prob_diff: float = 1e-3
    max_spectral_convergence: float = 0.05
    max_f0_diff: float = 1e-3
    min_agreement: float = 1.0
    keywords: str | None = None
    texts: tuple[str, ...] = ()
    latency_runs: int = 20
    write: bool = True


@dataclass(frozen=True)
class QuantizeOptions:
    """What ``quantize`` sweeps and how it scores.

    ``strategies``: names from the catalogue, presets or inline recipes such as
    ``encoder=pal6-kmeans+joint=int8-channel`` (default: every catalogue strategy and
    preset); ``components``: restrict plain strategies to these components (role or name);
    ``emit``: copy that variant to ``OUT/NAME`` as a bundle if it passes the gate; ``jobs``:
    worker processes that score variants side by side (default: the usable cores); the
    rest as in ``VerifyOptions`` (scoring runs the Core ML engine).
    """

    strategies: tuple[str, ...] | None = None
    components: tuple[str, ...] | None = None
    reference: Path | None = None
    weight_threshold: int | None = None  # None: coremltools' default (2048 elements)
    max_cer: float = 0.0
    max_prob_diff: float = 1e-3
    max_spectral_convergence: float = 0.05
    max_f0_diff: float = 1e-3
    min_agreement: float = 1.0
    keywords: str | None = None
    texts: tuple[str, ...] = ()
    latency_runs: int = 5
    emit: str | None = None
    overwrite: bool = False
    jobs: int | None = None  # worker processes scoring variants (None: the usable cores)


def load(
    bundle: str | Path,
    backend: str = "onnx",
    *,
    checkpoint: str | Path | None = None,
    threads: int | None = None,
    steps: str | None = None,
    graph_optimization: str | None = None,
    memory_arena: bool | None = None,
    **options: Any,
) -> Any:
    """Open a bundle as the runtime object of its task.

    Args:
        bundle: a bundle directory (written by ``convert``).
        backend: ``onnx`` (ONNX Runtime), ``coreml`` (the Core ML framework on macOS,
            speechport's Core ML program interpreter elsewhere) or ``torch`` (the fp32
            reference; needs the source checkpoint).
        checkpoint: the source checkpoint for ``torch`` (default: the provenance's).
        threads: ONNX Runtime threads for the encoder and front end (default: every CPU;
            the per-step decoder and joint run on one); ``onnx`` only.
        steps: how the per-step decoder and joint run (``auto``: numpy kernels read from
            their ONNX files where the graph is recognised and a step with them, timed at
            load, beats ONNX Runtime's; else ONNX Runtime;
            ``numpy``; ``onnx``: always ONNX Runtime); ``onnx`` only.
        graph_optimization: how far ONNX Runtime optimises each graph at load
            (``disable``, ``basic``, ``extended``, ``all``: the default); ``onnx`` only.
        memory_arena: whether ONNX Runtime serves tensors from its CPU memory arena
            (default ``True``); ``onnx`` only.
        options: the task's options: for speech recognition ``overlap``,
            ``window_seconds``, ``vad`` (a VAD bundle's path or detector); for voice
            activity the segmentation parameters (``threshold``, ``min_silence_ms``, ...).

    Returns:
        A ``Transcriber`` for speech recognition (``.transcribe(path_or_array)``), a
        ``VoiceActivityDetector`` for voice activity (``.segments(...)``, ``.stream()``), a
        ``Speaker`` for speech synthesis (``.speak(text, voice=, speed=)``, ``.voices``).

    Example:
        >>> speechport.load("bundles/v3_e2e_rnnt").transcribe("talk.wav").text
    """
    from speechport.runtime import load_bundle, make_backend

    task = task_for(read_manifest(bundle), bundle)
    reference = None if checkpoint is None else Path(checkpoint)
    engine: dict[str, Any] = {}  # the ONNX Runtime settings given
    onnx_only = {
        "threads": threads,
        "steps": steps,
        "graph_optimization": graph_optimization,
        "memory_arena": memory_arena,
    }
    for name, value in onnx_only.items():
        if value is None:
            continue
        if backend != "onnx":
            raise SpeechportError(
                f"{name} is an ONNX Runtime setting; the {backend} backend takes none"
            )
        engine[name] = value
    own = {} if reference is None else {"checkpoint": reference}
    loaded = load_bundle(bundle, make_backend(backend, **own, **engine))
    model = task.open(loaded, **options)
    from speechport.pipelines.batch import LoadRecipe, ManyFiles

    if isinstance(model, ManyFiles) and not _holds_models(options):
        model.recipe = LoadRecipe(load, Path(bundle), backend, reference, engine, dict(options))
    return model


def convert(
    family: str,
    out: str | Path,
    checkpoint: str | Path | None = None,
    options: ConvertOptions = ConvertOptions(),
    *,
    verbose: bool = False,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Convert an upstream checkpoint into a bundle at ``out``; returns its manifest.

    Args:
        family: ``gigaam``, ``parakeet`` or ``silero-vad`` (``speechport.families``).
        out: the bundle directory to write (assembled aside, renamed into place at the end).
        checkpoint: the upstream checkpoint (``None``: the family's default source, e.g. the
            installed ``silero-vad`` package's weights).
        options: see ``ConvertOptions``.
        verbose, progress: print progress to stderr, or pass each line to ``progress``.

    Example:
        >>> speechport.convert("silero-vad", "bundles/silero-vad")
    """
    from speechport.conversion import convert as run_convert
    from speechport.parity.run import Gate

    gate = None
    if options.verify_audio or options.gate is not None:
        from speechport.audio import collect_audio

        g = options.gate or VerifyOptions()
        gate = Gate(
            collect_audio(list(options.verify_audio)) if options.verify_audio else [],
            list(g.backends),
            limits=GateLimits.of(g),
            latency_runs=g.latency_runs,
        )
    return run_convert(
        family,
        None if checkpoint is None else Path(checkpoint),
        Path(out),
        tokenizer=options.tokenizer,
        formats=options.formats,
        precision=options.precision,
        window_seconds=options.window_seconds,
        overwrite=options.overwrite,
        gate=gate,
        progress=_progress(verbose, progress),
        plan_options={"lookaheads": options.lookaheads} if options.lookaheads else None,
    )


def verify(
    bundle: str | Path,
    audio: Sequence[str | Path] = (),
    options: VerifyOptions = VerifyOptions(),
) -> ParityReport:
    """Compare a bundle with its torch reference on real audio; returns the typed report
    (``report.passed``, ``report.files``, ``report.components``, ``report.latency``).

    Args:
        bundle: the bundle directory.
        audio: audio files or directories of them (none for speech synthesis: it is
            verified on ``options.texts``).
        options: see ``VerifyOptions``.

    Example:
        >>> report = speechport.verify("bundles/v3_e2e_rnnt", ["clips/"])
        >>> report.passed, [f.cer for f in report.files]
    """
    from speechport.audio import collect_audio
    from speechport.parity.run import verify_bundle, write_report

    report = verify_bundle(
        Path(bundle),
        collect_audio([Path(a) for a in audio]) if audio else [],
        backends=list(options.backends),
        checkpoint=options.reference,
        limits=GateLimits.of(options),
        keywords=options.keywords,
        latency_runs=options.latency_runs,
        texts=list(options.texts),
    )
    if options.write:
        write_report(report, Path(bundle))
    return report


def quantize(
    bundle: str | Path,
    out: str | Path,
    audio: Sequence[str | Path] = (),
    options: QuantizeOptions = QuantizeOptions(),
    *,
    verbose: bool = False,
    progress: ProgressCallback | None = None,
) -> QuantizeSummary:
    """Compress a bundle's Core ML components with every strategy and score each variant
    against the fp32 reference on ``audio``; returns the summary (also written to
    ``out/quantization_summary.json`` with its plots).

    Example:
        >>> summary = speechport.quantize("bundles/v3_e2e_rnnt", "sweep", ["clips/"],
        ...     speechport.QuantizeOptions(strategies=("int8-channel", "pal6-kmeans")))
        >>> summary.ranking[0]
    """
    from speechport.audio import collect_audio
    from speechport.compression.strategies import DEFAULT_WEIGHT_THRESHOLD
    from speechport.compression.sweep import quantize_sweep

    threshold = options.weight_threshold

    return quantize_sweep(
        Path(bundle),
        Path(out),
        strategies=",".join(options.strategies) if options.strategies else None,
        components=list(options.components) if options.components else None,
        audio=collect_audio([Path(a) for a in audio]) if audio else None,
        reference=options.reference,
        weight_threshold=DEFAULT_WEIGHT_THRESHOLD if threshold is None else threshold,
        limits=GateLimits.of(options),
        keywords=options.keywords,
        texts=list(options.texts),
        latency_runs=options.latency_runs,
        emit=options.emit,
        overwrite=options.overwrite,
        jobs=options.jobs,
        progress=_progress(verbose, progress),
    )


def _progress(verbose: bool, callback: ProgressCallback | None) -> Progress:
    return Progress(0, quiet=not (verbose or callback), on_line=callback)


def _holds_models(options: dict[str, Any]) -> bool:
    """Whether a task option is more than a plain value (a loaded VAD detector), which the
    jobs of ``transcribe_many`` would share: each job opens its own models from a recipe of
    plain values (a bundle path, numbers, flags, settings such as ``VadParams``)."""
    import dataclasses

    def plain(value: Any) -> bool:
        if isinstance(value, (str, Path, int, float, bool, type(None))):
            return True
        return dataclasses.is_dataclass(value) and not isinstance(value, type)

    return not all(plain(value) for value in options.values())
