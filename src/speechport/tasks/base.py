"""What a task plug-in provides.

A task (speech recognition, voice activity, ...) owns everything that differs from one task
to another: the runtime object a bundle of that task opens as, the manifest sections it
needs, what ``verify`` checks and gates on, how its report reads (CLI lines, model card,
plots), how ``quantize`` scores a variant, and the standalone example script. Nothing
outside ``speechport.tasks`` compares task names: callers look the task up in the registry
(``speechport.tasks.get_task``) and call it.

The runtime side (``open``) needs only numpy and an engine. The tool side (verify, plots,
quantize scoring) imports its helpers inside the methods, so opening a bundle never loads
them.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from speechport.manifest import Manifest, require_sections
from speechport.parity.report import FileResult, ParityReport

if TYPE_CHECKING:
    from speechport.compression.results import VariantResult
    from speechport.parity.run import VerifyRun
    from speechport.runtime.base import LoadedBundle


@dataclass(frozen=True)
class GateLimits:
    """How strict ``verify`` is; each task reads the limits that concern it."""

    max_cer: float = 0.0  # speech recognition: largest CER allowed when tokens differ
    max_prob_diff: float = 1e-3  # voice activity: largest speech-probability difference
    max_spectral_convergence: float = 0.05  # speech synthesis: of the audio, per text
    max_f0_diff: float = 1e-3  # speech synthesis: |ΔF0|, |Δenergy| / the reference's peak
    # keyword spotting: the share of utterances whose detections must equal the reference's
    min_agreement: float = 1.0

    @classmethod
    def of(cls, source: Any) -> GateLimits:
        """The limits ``source`` holds as attributes of the same names (the CLI's parsed
        arguments, ``VerifyOptions``, ``QuantizeOptions``)."""
        return cls(**{f.name: getattr(source, f.name) for f in dataclasses.fields(cls)})


DEFAULT_LIMITS = GateLimits()


@dataclass(frozen=True)
class VerifyInput:
    """One input of ``verify``: the data a task's ``verify_file`` takes, its label in the
    report (a path, a text), and the seconds of audio it holds (0: the task counts them)."""

    data: Any
    label: str
    seconds: float


class Task(ABC):
    """One task plug-in (see the module's docstring)."""

    name: ClassVar[str]
    title: ClassVar[str]  # "speech recognition": for messages
    sections: ClassVar[tuple[str, ...]]  # manifest sections a bundle of this task must have
    file_result: ClassVar[type[FileResult]]  # its per-file verify result
    example_template: ClassVar[str]  # file in speechport/export/templates
    usage: ClassVar[str]  # the CLI line the model card shows (run inside the bundle)
    example_args: ClassVar[str] = "audio.wav"  # the example script's arguments on the card
    example_input: ClassVar[str] = "reads 16-bit PCM WAV at the bundle's sample rate"
    verify_usage: ClassVar[str] = "`speechport verify . --audio FILES` (on real audio)"
    quality_label: ClassVar[str]  # the end-to-end figure quantize ranks by
    verifies_by_default: ClassVar[bool] = False  # verify has inputs of its own (no --audio)

    def check_manifest(self, manifest: Manifest) -> None:
        """Refuse a manifest that lacks what this task needs."""
        require_sections(manifest, self.sections, self.name)

    # --- runtime -------------------------------------------------------------------------

    @abstractmethod
    def open(self, bundle: LoadedBundle, **options: Any) -> Any:
        """The runtime object for a loaded bundle of this task (a transcriber, a detector)."""

    # --- verify --------------------------------------------------------------------------

    def verify_inputs(
        self, audio: list[Path], texts: list[str], sample_rate: int
    ) -> Iterator[VerifyInput]:
        """What ``verify`` feeds ``verify_file``: by default each audio file, read at the
        bundle's rate when its turn comes (a task that is verified on something else
        overrides this). Wrong or missing inputs are refused at the call, before any is read."""
        from speechport.errors import SpeechportError

        if texts:
            raise SpeechportError(
                f"{self.title} is verified on audio, not text", hint="pass --audio FILES"
            )
        if not audio:
            raise SpeechportError("no audio to verify on", hint="pass --audio FILES or a directory")
        return (_audio_input(path, sample_rate) for path in audio)

    @abstractmethod
    def gates(self, limits: GateLimits) -> dict[str, float]:
        """The limits this task gates on, by name, for the report."""

    @abstractmethod
    def verify_file(self, run: VerifyRun, audio: Any, path: str) -> None:
        """Compare every backend of ``run`` with its reference on one input (an audio file's
        samples, or what ``verify_inputs`` gives); add the results to ``run.report``."""

    @abstractmethod
    def file_line(self, result: FileResult) -> str:
        """One line of the CLI's report for one file and backend."""

    @abstractmethod
    def card_fidelity(self, report: ParityReport) -> list[str]:
        """The model card's fidelity table (Markdown lines)."""

    def card_sections(self, bundle: Path) -> list[str]:
        """Task-specific model-card sections (Markdown lines) from results stored in the
        bundle, such as a task-quality evaluation; none by default."""
        return []

    @abstractmethod
    def draw_plots(self, report: ParityReport, out: Path) -> list[Path]:
        """Plots of the report into ``out``; returns the files written."""

    # --- quantize ------------------------------------------------------------------------

    @abstractmethod
    def score_variant(self, variant: VariantResult, report: ParityReport) -> None:
        """Fill a quantized variant's end-to-end figures from its verify report."""

    @abstractmethod
    def ranking_columns(self) -> str:
        """The header of this task's end-to-end columns in the quantize ranking."""

    @abstractmethod
    def ranking_cells(self, variant: VariantResult) -> str:
        """A variant's end-to-end cells under ``ranking_columns``."""

    @abstractmethod
    def variant_text(self, variant: VariantResult) -> str:
        """A variant's end-to-end figures in a few words (progress lines)."""


def _audio_input(path: Path, sample_rate: int) -> VerifyInput:
    from speechport.audio import load_audio

    samples = load_audio(path, sample_rate=sample_rate).samples
    return VerifyInput(samples, str(path), samples.size / sample_rate)
