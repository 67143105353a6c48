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

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

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


class Task(ABC):
    """One task plug-in (see the module's docstring)."""

    name: ClassVar[str]
    title: ClassVar[str]  # "speech recognition": for messages
    sections: ClassVar[tuple[str, ...]]  # manifest sections a bundle of this task must have
    file_result: ClassVar[type[FileResult]]  # its per-file verify result
    example_template: ClassVar[str]  # file in speechport/export/templates
    usage: ClassVar[str]  # the CLI line the model card shows (run inside the bundle)
    quality_label: ClassVar[str]  # the end-to-end figure quantize ranks by

    def check_manifest(self, manifest: Manifest) -> None:
        """Refuse a manifest that lacks what this task needs."""
        require_sections(manifest, self.sections, self.name)

    # --- runtime -------------------------------------------------------------------------

    @abstractmethod
    def open(self, bundle: LoadedBundle, **options: Any) -> Any:
        """The runtime object for a loaded bundle of this task (a transcriber, a detector)."""

    # --- verify --------------------------------------------------------------------------

    @abstractmethod
    def gates(self, limits: GateLimits) -> dict[str, float]:
        """The limits this task gates on, by name, for the report."""

    @abstractmethod
    def verify_file(self, run: VerifyRun, audio: np.ndarray, path: str) -> None:
        """Compare every backend of ``run`` with its reference on one file; add the results
        to ``run.report``."""

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
