"""The verify report as types: what ``verify`` measured, saved as ``verify/parity.json``.

Plain data (dataclasses, no engine, no plotting), read by attribute everywhere: the CLI,
the quantize sweep, the model card, the plots and the tests. Each task has its own
per-file result type (``AsrFileResult``, ``VadFileResult``; ``FILE_RESULTS``), chosen by
the report's task when it is loaded. ``load(save(report)) == report``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from speechport.errors import BundleError
from speechport.parity.stats import TensorStats

REPORT_SCHEMA_VERSION = 1
PARITY_FILE = Path("verify") / "parity.json"
TOP_K = 5  # the joint's (CTC: per frame) top-k agreement is measured over this many classes
# A gate naming the share of files (per backend) that must pass; without it, all must.
MIN_AGREEMENT = "min_agreement"
_SHARE_EPS = 1e-9


@dataclass
class Latency:
    """Milliseconds: the first call (it includes any lazy set-up), warm median and p90."""

    first_ms: float
    median_ms: float
    p90_ms: float
    runs: int


@dataclass
class ComponentResult:
    """One component of one backend against the reference, over one audio file."""

    component: str
    role: str
    kind: str
    calls: int
    outputs: dict[str, TensorStats]
    failures: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds, per compared frame or pair
    top1: list[bool] = field(default_factory=list)
    topk: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def top1_agreement(self) -> float | None:
        """Share of calls whose argmax equals the reference's (None: not measured)."""
        return sum(self.top1) / len(self.top1) if self.top1 else None

    @property
    def main_output(self) -> TensorStats | None:
        """The first float output (the component's result; lengths and decisions are
        integer)."""
        return next((s for s in self.outputs.values() if not s.integer), None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComponentResult:
        values = dict(data)
        values["outputs"] = {k: TensorStats.from_dict(v) for k, v in data["outputs"].items()}
        return cls(**values)


@dataclass
class FileComponents:
    """The per-component results of one file on one backend."""

    audio: str
    backend: str
    components: list[ComponentResult]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileComponents:
        return cls(
            data["audio"],
            data["backend"],
            [ComponentResult.from_dict(c) for c in data["components"]],
        )


@dataclass
class FileResult:
    """One audio file on one backend: what failed (empty when it passed). Each task adds
    its own end-to-end figures in a subclass."""

    audio: str
    backend: str
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileResult:
        return cls(**data)


@dataclass
class Divergence:
    """Where a transcript first departs from the reference."""

    index: int
    seconds: float
    expected: str | None
    got: str | None


@dataclass
class AsrFileResult(FileResult):
    """Speech recognition, end to end."""

    token_exact: bool
    token_agreement: float
    tokens: int
    cer: float
    reference_text: str
    text: str
    first_divergence: Divergence | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AsrFileResult:
        values = dict(data)
        if values.get("first_divergence") is not None:
            values["first_divergence"] = Divergence(**values["first_divergence"])
        return cls(**values)


@dataclass
class VadFormResult:
    """One form of a VAD model (one chunk per call, several, the stages chained)."""

    max_abs_prob_diff: float
    mean_abs_prob_diff: float
    worst_chunk_seconds: float
    segments_equal: bool
    abs_prob_diff: list[float]


@dataclass
class VadFileResult(FileResult):
    """Voice activity: probabilities of every form against the reference's."""

    chunks: int
    seconds_per_chunk: float
    max_abs_prob_diff: float
    segments_reference: int
    segments_equal: bool
    forms: dict[str, VadFormResult]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VadFileResult:
        values = dict(data)
        values["forms"] = {k: VadFormResult(**v) for k, v in data["forms"].items()}
        return cls(**values)


@dataclass
class KwsFileResult(FileResult):
    """Keyword spotting: the streaming encoder chunk by chunk (output and every cache), the
    decoder and joiner on the inputs the search visited, and the detections."""

    chunks: int
    encoder_max_abs: float
    state_max_abs: float
    worst_state: str
    decoder_max_abs: float
    joiner_max_abs: float
    joiner_top1: float
    joiner_pairs: int
    keywords: list[str]
    detections_reference: list[str]
    detections: list[str]
    detections_kept: float  # share of the reference's detections also found
    detections_added: int  # detections the reference does not have (false alarms)

    @property
    def detections_equal(self) -> bool:
        return self.detections == self.detections_reference


@dataclass
class TtsFileResult(FileResult):
    """Speech synthesis of one text (``audio`` holds the text): each stage against the
    reference's, chunk by chunk. Audio figures skip the first frame (``first_frame_max_abs``
    reports it): upstream's iSTFT may flip the first frame's phase between +π and −π."""

    phonemes: str
    chunks: int
    frames: int
    frame_buckets: list[int]
    durations_equal: bool  # frames per token exactly the reference's
    durations_max_abs: float  # the text stage's unrounded durations
    prosody_max_abs: float
    text_features_max_abs: float
    audio_max_abs: float
    audio_rel: float  # audio_max_abs / the reference's peak
    audio_p99_rel: float  # the 99th percentile of |Δaudio| / the reference's peak
    first_frame_max_abs: float
    f0_max_abs: float
    energy_max_abs: float
    mel_distance_db: float
    spectral_convergence: float
    bucket_max_abs: float  # the same chunk through the smallest and the largest frame bucket
    bucket_spectral_convergence: float
    seconds: float
    frames_reference: list[int] = field(default_factory=list)  # first chunk, per token
    frames_got: list[int] = field(default_factory=list)
    wave_diff_per_frame: list[float] = field(default_factory=list)  # first chunk, max |Δ|
    mel_diff_per_frame: list[float] = field(default_factory=list)  # first chunk, dB


# The per-file result type of each task's report (the task's plug-in names it too).
FILE_RESULTS: dict[str, type[FileResult]] = {
    "asr": AsrFileResult,
    "streaming-asr": AsrFileResult,
    "vad": VadFileResult,
    "kws": KwsFileResult,
    "tts": TtsFileResult,
}


@dataclass
class ParityReport:
    """Everything one ``verify`` run measured."""

    SCHEMA: ClassVar[int] = REPORT_SCHEMA_VERSION

    bundle: str
    task: str
    reference_engine: str
    engines: dict[str, str]
    files: list[FileResult] = field(default_factory=list)
    gates: dict[str, float] = field(default_factory=dict)
    components: list[FileComponents] = field(default_factory=list)
    latency: dict[str, dict[str, Latency]] = field(default_factory=dict)
    rtfx: dict[str, float] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the files after some were not scored (None: all were)

    @property
    def passed(self) -> bool:
        """Every backend passes on at least the gate's share of the files (all of them,
        unless the task gates on a ``MIN_AGREEMENT`` share)."""
        need = self.gates.get(MIN_AGREEMENT, 1.0)
        return all(
            passed >= need * total - _SHARE_EPS for passed, total in self._passed_per_backend()
        )

    def cannot_pass(self, total: int | None) -> bool:
        """Whether the files scored so far already fail the gate whatever the rest of the
        ``total`` files give (``None``: the total is unknown, so judge what was scored)."""
        if total is None:
            return not self.passed
        need = self.gates.get(MIN_AGREEMENT, 1.0)
        return any(
            scored - passed > (1.0 - need) * max(total, scored) + _SHARE_EPS
            for passed, scored in self._passed_per_backend()
        )

    def _passed_per_backend(self) -> list[tuple[int, int]]:
        counts: dict[str, list[int]] = {}
        for f in self.files:
            entry = counts.setdefault(f.backend, [0, 0])
            entry[0] += f.passed
            entry[1] += 1
        return [(passed, total) for passed, total in counts.values()]

    def failures(self) -> list[str]:
        """One line per failed file and backend, saying why."""
        return [
            f"{f.backend} {Path(f.audio).name}: {'; '.join(f.failures)}"
            for f in self.files
            if not f.passed
        ]

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out = json.loads(json.dumps(out, default=_plain))
        return {"schema_version": self.SCHEMA, **out, "passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "verify report") -> ParityReport:
        version = data.get("schema_version")
        if version != cls.SCHEMA:
            raise BundleError(
                f"{where}: report schema {version!r}, this speechport reads {cls.SCHEMA}",
                hint="run `speechport verify` again to rewrite it",
            )
        task = data.get("task")
        if task not in FILE_RESULTS:
            raise BundleError(
                f"{where}: no report type for task {task!r}; known: {', '.join(FILE_RESULTS)}"
            )
        file_type = FILE_RESULTS[task]
        values = {k: v for k, v in data.items() if k not in ("schema_version", "passed")}
        values["files"] = [file_type.from_dict(f) for f in data.get("files", [])]
        values["components"] = [FileComponents.from_dict(c) for c in data.get("components", [])]
        values["latency"] = {
            backend: {name: Latency(**f) for name, f in per.items()}
            for backend, per in data.get("latency", {}).items()
        }
        return cls(**values)

    def save(self, path: Path) -> Path:
        """Write the report as JSON at ``path`` (atomically); returns ``path``."""
        from speechport.fsutil import atomic_write_text

        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        atomic_write_text(path, text + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> ParityReport:
        """Read a report written by ``save``; errors name the file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"cannot read the verify report ({exc})", path=path) from exc
        if not isinstance(data, dict):
            raise BundleError("the verify report is not a JSON object", path=path)
        try:
            return cls.from_dict(data, where=str(path))
        except (TypeError, KeyError, ValueError) as exc:
            raise BundleError(
                f"the verify report is malformed ({exc})",
                path=path,
                hint="run `speechport verify` again to rewrite it",
            ) from exc


def _plain(value: Any) -> Any:
    """JSON form of the report's dataclasses."""
    if isinstance(value, TensorStats):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"cannot store {type(value).__name__} in a verify report")
