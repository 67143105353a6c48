"""The bundle manifest (``speechport.json``): the contract between conversion and runtime.

Conversion writes it, the runtime reads only it. It says which front end to compute, which
components exist (their files per format, inputs, outputs and state), how to decode, how to
detokenize, and where everything came from. Everything here is plain data: no torch, no
converter, so a device host (Swift, C++) can read the same JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from speechport.decoding.registry import DECODERS
from speechport.errors import BundleError

SCHEMA_VERSION = 1
# The longest encoder window a manifest may declare (the models here use 30 s or less).
MAX_WINDOW_SECONDS = 600
# Sample rates a bundle may declare (as audio files may).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
# A tensor dimension (fixed shapes: anything larger is a corrupt manifest).
MAX_DIMENSION = 1 << 31
NP_DTYPES: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "float16": np.float16,
    "int32": np.int32,
    "int64": np.int64,
}
MANIFEST_NAME = "speechport.json"

DTYPES = tuple(NP_DTYPES)
FORMATS = ("coreml", "onnx")

# What a component does, whatever its family calls it: pipelines, verify and quantize select
# components by kind, never by a family's role names.
COMPONENT_KINDS: dict[str, str] = {
    "frontend": "audio -> features (a Preprocessor, an STFT stage); its weights stay exact",
    "frontend_encoder": "audio -> encodings in one graph (front end and encoder fused)",
    "encoder": "features -> encodings (or CTC log-probabilities) and their valid length",
    "decoder_step": "one prediction-network step: previous token and state -> output, state",
    "joint": "one (encoder frame, decoder output) pair -> logits",
    "joint_decision": "the joint over a whole window with its argmax decisions",
    "joint_decision_frame": "the joint on one frame with its argmax decision",
    "decoder_joint": "decoder step and joint fused in one call",
    "vad": "one audio chunk (with context) and state -> speech probability",
    "vad_batch": "several audio chunks per call -> one speech probability each",
    "vad_encoder": "a VAD's encoder stage: features and state -> state",
    "vad_decoder": "a VAD's decoder stage: state -> speech probability",
    "streaming_encoder": "one chunk of features and every cache -> encodings and new caches",
    "decoder_context": "stateless prediction network: the last few tokens -> output",
    "tts_text": "phoneme ids at a token bucket -> durations and per-token features",
    "tts_acoustic": "frame-aligned features at a frame bucket and noise -> audio, F0, energy",
}
# Manifests written before components declared a kind: the kind of each role they used
# (the other roles of those manifests were named as their kind).
_LEGACY_KINDS = {
    "preprocessor": "frontend",
    "mel_encoder": "frontend_encoder",
    "decoder": "decoder_step",
    "vad_long": "vad_batch",
    "vad_stft": "frontend",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, fixed shape and dtype.

    ``dynamic_axes``: axes a file takes at any size (name of each). ``buckets``: axes a
    file takes at a few sizes only (a Core ML input with enumerated shapes), each with its
    sizes in ascending order, the largest being ``shape``'s; a runtime feeds the smallest
    size that holds its data. Both are written only when set.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    description: str = ""
    dynamic_axes: dict[int, str] = field(default_factory=dict)
    buckets: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.description:
            out["description"] = self.description
        if self.dynamic_axes:
            out["dynamic_axes"] = {str(k): v for k, v in self.dynamic_axes.items()}
        if self.buckets:
            out["buckets"] = {str(k): list(v) for k, v in self.buckets.items()}
        return out

    def bucket_shapes(self) -> list[tuple[int, ...]]:
        """Every shape the tensor may take on its bucketed axes (``[shape]`` without)."""
        shapes = [self.shape]
        for axis, sizes in self.buckets.items():
            shapes = [
                tuple(size if i == axis else d for i, d in enumerate(shape))
                for shape in shapes
                for size in sizes
            ]
        return shapes

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> TensorSpec:
        _require(data, ("name", "shape", "dtype"), where)
        if data["dtype"] not in DTYPES:
            raise BundleError(f"{where}: unknown dtype {data['dtype']!r}; expected one of {DTYPES}")
        shape = data["shape"]
        if not isinstance(shape, list) or not all(
            _is_int(d) and 0 <= d < MAX_DIMENSION for d in shape
        ):
            raise BundleError(f"{where}: shape must be a list of sizes >= 0, got {shape!r}")
        return cls(
            name=str(data["name"]),
            shape=tuple(int(d) for d in shape),
            dtype=str(data["dtype"]),
            description=str(data.get("description", "")),
            dynamic_axes={int(k): str(v) for k, v in data.get("dynamic_axes", {}).items()},
            buckets=_buckets_from_dict(data.get("buckets", {}), shape, where),
        )


def valid_buckets(sizes: Any, size: int) -> bool:
    """Whether ``sizes`` are shape buckets of an axis of ``size``: a list of integers > 0,
    ascending without repeats, the last ``size``."""
    return (
        isinstance(sizes, (list, tuple))
        and bool(sizes)
        and all(_is_int(n) and n > 0 for n in sizes)
        and list(sizes) == sorted(set(sizes))
        and sizes[-1] == size
    )


def _buckets_from_dict(data: Any, shape: list[int], where: str) -> dict[int, tuple[int, ...]]:
    """``{"axis": [sizes]}``: ascending sizes > 0 on an axis of ``shape``, the largest its
    size."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: buckets must be a mapping of axis -> sizes, got {data!r}")
    out: dict[int, tuple[int, ...]] = {}
    for key, sizes in data.items():
        axis = int(key) if str(key).isdigit() else -1
        if not (0 <= axis < len(shape) and isinstance(sizes, list)) or not valid_buckets(
            sizes, shape[axis]
        ):
            raise BundleError(
                f"{where}: buckets on axis {key!r} must be ascending sizes > 0 ending at the "
                f"shape's size, got {sizes!r} for shape {shape}"
            )
        out[axis] = tuple(sizes)
    return out


@dataclass(frozen=True)
class StatePair:
    """A recurrent state: fed through ``input``, returned as ``output``, starting at ``init``."""

    input: str
    output: str
    init: str = "zeros"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ConstantInput:
    """A file input with no canonical counterpart, always fed the same value (e.g. the
    ``sr`` input that Silero's own ONNX files take and ignore at 16 kHz, or the
    ``target_length`` ``[1]`` that NeMo's exported decoders take: a list is fed as a 1-D
    array)."""

    name: str
    dtype: str
    value: int | float | list[int] | list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ComponentFile:
    """A component's file in one format, with that file's own tensor names and shapes.

    ``inputs``/``outputs`` correspond one to one, in order, with the component's canonical
    ones (same element count); a runtime casts and reshapes between the two. They differ
    where a format keeps the layout that other runtimes expect (e.g. GigaAM's ONNX names).
    ``constants`` are extra file inputs fed a fixed value. ``compression`` names the weight
    compression applied to the file (``speechport quantize``), ``None`` for plain weights.
    """

    path: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    constants: tuple[ConstantInput, ...] = ()
    compression: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "precision": self.precision,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }
        if self.constants:
            out["constants"] = [c.to_dict() for c in self.constants]
        if self.compression is not None:
            out["compression"] = self.compression
        return out


@dataclass(frozen=True)
class ComponentSpec:
    """A unit of the model run by an engine: the encoder, one decoder step, one joint step.

    ``role`` is its key in the bundle (unique, the family's name for it); ``kind`` says
    what it does (one of ``COMPONENT_KINDS``), and is what pipelines and tools select by.
    """

    name: str
    role: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    state: tuple[StatePair, ...] = ()
    files: dict[str, ComponentFile] = field(default_factory=dict)
    kind: str = ""

    def __post_init__(self) -> None:
        kind = self.kind or _LEGACY_KINDS.get(self.role, self.role)
        if kind not in COMPONENT_KINDS:
            raise BundleError(
                f"component {self.name!r}: unknown kind {kind!r}; known: "
                f"{', '.join(COMPONENT_KINDS)}"
            )
        object.__setattr__(self, "kind", kind)

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, f"component {self.name} input")

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, f"component {self.name} output")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "kind": self.kind,
            "description": self.description,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "state": [s.to_dict() for s in self.state],
            "files": {fmt: f.to_dict() for fmt, f in self.files.items()},
        }


@dataclass(frozen=True)
class WindowSpec:
    """The fixed audio window the encoder is exported for.

    ``overlap_seconds`` is how long audio is transcribed by default: ``None`` or 0, in
    windows cut at pauses; a positive value, in windows that overlap by that much, merged
    at the seams (`speechport.pipelines.seams`). Manifests without the field read as
    ``None``, and it is written only when set.
    """

    samples: int
    feature_frames: int
    encoder_frames: int
    overlap_seconds: float | None = None

    def seconds(self, sample_rate: int) -> float:
        return self.samples / sample_rate

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.overlap_seconds is None:
            del out["overlap_seconds"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowSpec:
        _require(data, ("samples", "feature_frames", "encoder_frames"), "window")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise BundleError(f"window: unknown field(s) {', '.join(unknown)}")
        overlap = data.get("overlap_seconds")
        if overlap is not None and (
            isinstance(overlap, bool)
            or not isinstance(overlap, (int, float))
            or not 0 <= overlap < math.inf
        ):
            raise BundleError(
                f"window: overlap_seconds must be a number of seconds >= 0, got {overlap!r}"
            )
        for key in ("samples", "feature_frames", "encoder_frames"):
            value = data[key]
            if not _is_int(value) or value <= 0:
                raise BundleError(f"window: {key} must be a positive integer, got {value!r}")
        return cls(
            samples=int(data["samples"]),
            feature_frames=int(data["feature_frames"]),
            encoder_frames=int(data["encoder_frames"]),
            overlap_seconds=None if overlap is None else float(overlap),
        )


@dataclass(frozen=True)
class DecodingSpec:
    """How to turn encoder output into tokens and tokens into times."""

    algorithm: str
    blank_id: int
    vocab_size: int
    max_symbols_per_frame: int = 10
    durations: tuple[int, ...] = ()
    context_size: int = 1
    subsampling_factor: int = 4
    frame_duration: float = 0.04
    # "nominal": a frame starts at frame * frame_duration. "stretch": frames evenly divide
    # the window's true duration (seconds = frame * duration / encoded_len), which is how
    # GigaAM's own word timestamps are computed.
    timestamps: str = "nominal"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["durations"] = list(self.durations)
        return out


@dataclass(frozen=True)
class TokenizerSpec:
    """Token ids to text: ``tokens.json`` (pieces, blank excluded) and the original model."""

    kind: str  # "sentencepiece" | "chars"
    tokens_file: str
    model_file: str | None
    vocab_size: int
    word_boundary: str  # "\u2581" prefix (SentencePiece) or " " (a space token)


@dataclass(frozen=True)
class VadSpec:
    """How a voice-activity bundle is fed and read.

    Each call of the ``vad`` component sees ``context_samples`` of the previous audio and
    ``chunk_samples`` new ones, and returns the speech probability of the new ones. The
    ``vad_long`` component does ``sub_chunks`` of those at once. ``defaults`` are the
    segmentation parameters (threshold, minimum speech and silence, padding).
    """

    chunk_samples: int
    context_samples: int
    sub_chunks: int
    defaults: dict[str, float] = field(default_factory=dict)

    @property
    def window_samples(self) -> int:
        return self.context_samples + self.chunk_samples


@dataclass(frozen=True)
class ChunkingSpec:
    """How a streaming encoder at one lookahead is fed: its component (``encoder``, a
    role), the first chunk's and every later chunk's mel frames, the mel history placed
    before each later chunk, the component's fixed window (``history + step``) and the
    encoder frames one chunk yields."""

    lookahead: int
    encoder: str
    first_frames: int
    step_frames: int
    history_frames: int
    window_frames: int
    frames_per_chunk: int

    def chunk_end(self, pos: int) -> int:
        """Where the chunk that starts at mel frame ``pos`` ends (before the stream's end)."""
        return pos + (self.first_frames if pos == 0 else self.step_frames)

    def window(self, pos: int, end: int) -> tuple[int, int]:
        """The mel frames ``[start, end)`` fed for the chunk ``[pos, end)`` and how many
        frames of padding come before them in the component's fixed window: the history
        (``history_frames`` before the chunk, fewer at the start of a stream), or, for the
        first chunk, the room a steady chunk's history and first-chunk shortfall take."""
        if pos == 0:
            return 0, self.window_frames - self.first_frames
        start = max(pos - self.history_frames, 0)
        return start, self.history_frames - (pos - start)


@dataclass(frozen=True)
class StreamingSpec:
    """A cache-aware streaming bundle: one chunking per exported lookahead (the first is the
    default), the attention's left context in encoder frames, the language prompts (name ->
    index into a one-hot of ``num_prompts``; empty without), and the end-of-utterance and
    end-of-backchannel token ids where the model emits them."""

    chunkings: tuple[ChunkingSpec, ...]
    left_context: int
    num_prompts: int = 0
    prompts: dict[str, int] = field(default_factory=dict)
    end_of_utterance: int | None = None
    end_of_backchannel: int | None = None

    def chunking(self, lookahead: int | None) -> ChunkingSpec:
        """The chunking at ``lookahead`` (``None``: the default); a clear error listing the
        exported ones otherwise."""
        if lookahead is None:
            return self.chunkings[0]
        for c in self.chunkings:
            if c.lookahead == lookahead:
                return c
        raise BundleError(
            f"this bundle has no lookahead {lookahead}; it has: "
            f"{', '.join(str(c.lookahead) for c in self.chunkings)}",
            hint="pick one of those (--lookahead), or convert with that lookahead",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunkings": [asdict(c) for c in self.chunkings],
            "left_context": self.left_context,
            "num_prompts": self.num_prompts,
            "prompts": dict(self.prompts),
            "end_of_utterance": self.end_of_utterance,
            "end_of_backchannel": self.end_of_backchannel,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamingSpec:
        _require(data, ("chunkings", "left_context"), "streaming")
        if not isinstance(data["chunkings"], list) or not data["chunkings"]:
            raise BundleError("streaming: chunkings must be a non-empty list")
        return cls(
            chunkings=tuple(ChunkingSpec(**c) for c in data["chunkings"]),
            left_context=int(data["left_context"]),
            num_prompts=int(data.get("num_prompts", 0)),
            prompts={str(k): int(v) for k, v in dict(data.get("prompts", {})).items()},
            end_of_utterance=_optional_int(data.get("end_of_utterance")),
            end_of_backchannel=_optional_int(data.get("end_of_backchannel")),
        )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass
class Manifest:
    family: str
    variant: str
    task: str
    sample_rate: int
    frontend: dict[str, Any]
    components: dict[str, ComponentSpec]
    provenance: dict[str, Any]
    window: WindowSpec | None = None
    decoding: DecodingSpec | None = None
    tokenizer: TokenizerSpec | None = None
    vad: VadSpec | None = None
    streaming: StreamingSpec | None = None
    tts: dict[str, Any] | None = None  # checked by speechport.tasks.tts.TtsSpec
    extras: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def require_asr(
        self, path: str | Path | None = None
    ) -> tuple[WindowSpec, DecodingSpec, TokenizerSpec]:
        """The window, decoding and tokenizer of a speech-recognition bundle (an error
        naming ``path`` otherwise)."""
        if self.window is None or self.decoding is None or self.tokenizer is None:
            raise self.wrong_task("speech recognition", path)
        return self.window, self.decoding, self.tokenizer

    def require_vad(self, path: str | Path | None = None) -> VadSpec:
        """The voice-activity section (an error naming ``path`` otherwise)."""
        if self.vad is None:
            raise self.wrong_task("voice activity detection", path)
        return self.vad

    def wrong_task(self, wanted: str, path: str | Path | None) -> BundleError:
        """The error for a bundle used where a bundle of another task was needed."""
        return BundleError(
            f"this bundle ({self.family} {self.variant}) does {self.task!r}, not {wanted}",
            path=path,
            hint=f"pass a {wanted} bundle (see `speechport info`)",
        )

    @property
    def formats(self) -> list[str]:
        found = {fmt for c in self.components.values() for fmt in c.files}
        return [fmt for fmt in FORMATS if fmt in found]

    def component(self, role: str) -> ComponentSpec:
        try:
            return self.components[role]
        except KeyError:
            raise BundleError(
                f"the manifest has no {role!r} component (it has {sorted(self.components)})"
            ) from None

    def roles_of(self, kind: str) -> list[str]:
        """The roles of every component of ``kind``, in manifest order."""
        return [role for role, c in self.components.items() if c.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "family": self.family,
            "variant": self.variant,
            "task": self.task,
            "sample_rate": self.sample_rate,
            "frontend": self.frontend,
        }
        if self.window is not None:
            out["window"] = self.window.to_dict()
        out["components"] = {role: c.to_dict() for role, c in self.components.items()}
        if self.decoding is not None:
            out["decoding"] = self.decoding.to_dict()
        if self.tokenizer is not None:
            out["tokenizer"] = asdict(self.tokenizer)
        if self.vad is not None:
            out["vad"] = asdict(self.vad)
        if self.streaming is not None:
            out["streaming"] = self.streaming.to_dict()
        if self.tts is not None:
            out["tts"] = self.tts
        out["provenance"] = self.provenance
        out["extras"] = self.extras
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        required = ("schema_version", "family", "variant", "task", "sample_rate", "frontend")
        _require(data, (*required, "components", "provenance"), "manifest")
        _check_sections(data)
        version = data["schema_version"]
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise BundleError(
                f"manifest schema version {version!r} is newer than this speechport reads "
                f"({SCHEMA_VERSION})",
                hint="upgrade speechport",
            )
        task = data["task"]
        if not isinstance(task, str) or not task:
            raise BundleError(f"task must be a task name, got {task!r}")
        decoding = None
        if "decoding" in data:
            decoding = dict(data["decoding"])
            if decoding.get("algorithm") not in DECODERS:
                raise BundleError(
                    f"unknown decoding algorithm {decoding.get('algorithm')!r}; "
                    f"expected one of {tuple(DECODERS)}"
                )
            decoding["durations"] = tuple(decoding.get("durations", ()))
        manifest = cls(
            schema_version=version,
            family=str(data["family"]),
            variant=str(data["variant"]),
            task=str(task),
            sample_rate=int(data["sample_rate"]),
            frontend=dict(data["frontend"]),
            window=WindowSpec.from_dict(data["window"]) if "window" in data else None,
            components={
                role: _component_from_dict(c, f"component {role!r}")
                for role, c in data["components"].items()
            },
            decoding=DecodingSpec(**decoding) if decoding is not None else None,
            tokenizer=_tokenizer_from_dict(data["tokenizer"]) if "tokenizer" in data else None,
            vad=VadSpec(**data["vad"]) if "vad" in data else None,
            streaming=StreamingSpec.from_dict(data["streaming"]) if "streaming" in data else None,
            tts=dict(data["tts"]) if "tts" in data else None,
            provenance=dict(data["provenance"]),
            extras=dict(data.get("extras", {})),
        )
        _check_consistency(manifest)
        return manifest


def require_sections(manifest: Manifest, sections: tuple[str, ...], task: str) -> None:
    """Refuse a manifest that lacks a section its task needs (``window``, ``vad``...)."""
    missing = [s for s in sections if getattr(manifest, s) is None]
    if missing:
        raise BundleError(f"{task} manifest: missing field(s) {', '.join(missing)}")


def is_length(name: str) -> bool:
    """Whether a tensor named ``name`` holds a valid length (``length``, ``encoded_len``,
    ``audio_length``...): the naming rule every family's components follow."""
    return name.endswith("_len") or name.endswith("length")


def read_manifest(bundle: str | Path) -> Manifest:
    """Read and validate ``<bundle>/speechport.json``; errors name the bundle and the field."""
    bundle = Path(bundle)
    path = bundle / MANIFEST_NAME
    if not bundle.exists():
        raise BundleError("bundle directory not found", path=bundle)
    if not path.is_file():
        raise BundleError(
            f"no {MANIFEST_NAME} in this directory",
            path=bundle,
            hint="pass a directory written by `speechport convert`",
        )
    from speechport.limits import read_json

    data = read_json(path, what="the manifest", error=BundleError)
    try:
        return Manifest.from_dict(data)
    except BundleError as exc:
        raise BundleError(exc.message, path=path, hint=exc.hint) from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise BundleError(f"the manifest is malformed ({exc})", path=path) from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _mapping(data: dict[str, Any], key: str, what: str) -> None:
    if key in data and not isinstance(data[key], dict):
        raise BundleError(f"{key} must be a mapping ({what}), got {type(data[key]).__name__}")


def _list(data: dict[str, Any], key: str, where: str) -> None:
    if key in data and not isinstance(data[key], list):
        raise BundleError(f"{where}: {key} must be a list, got {type(data[key]).__name__}")


def _check_sections(data: dict[str, Any]) -> None:
    """The types of the top-level sections, before anything is built from them."""
    _mapping(data, "components", "role -> component")
    for key in (
        "frontend",
        "provenance",
        "extras",
        "window",
        "decoding",
        "tokenizer",
        "vad",
        "tts",
    ):
        _mapping(data, key, "an object")
    rate = data["sample_rate"]
    if not _is_int(rate) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise BundleError(
            f"sample_rate must be an integer in {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz, "
            f"got {rate!r}"
        )
    decoding = data.get("decoding")
    if decoding is not None:
        for key in ("blank_id", "vocab_size", "max_symbols_per_frame", "context_size"):
            if key in decoding and (not _is_int(decoding[key]) or decoding[key] < 0):
                raise BundleError(f"decoding: {key} must be an integer >= 0, got {decoding[key]!r}")
        duration = decoding.get("frame_duration", 0.04)
        if (
            isinstance(duration, bool)
            or not isinstance(duration, (int, float))
            or not 0 < duration < math.inf
        ):
            raise BundleError(f"decoding: frame_duration must be > 0 seconds, got {duration!r}")
    vad = data.get("vad")
    if vad is not None:
        for key in ("chunk_samples", "context_samples", "sub_chunks"):
            least = 0 if key == "context_samples" else 1
            if key in vad and (not _is_int(vad[key]) or vad[key] < least):
                raise BundleError(f"vad: {key} must be an integer >= {least}, got {vad[key]!r}")
        _mapping(vad, "defaults", "parameter -> value")


def _check_consistency(manifest: Manifest) -> None:
    """What the sections say about each other: the window fits the limit, the blank id is a
    token id."""
    window, decoding = manifest.window, manifest.decoding
    if window is not None and window.samples > MAX_WINDOW_SECONDS * manifest.sample_rate:
        raise BundleError(
            f"window: samples {window.samples} is more than {MAX_WINDOW_SECONDS} s at "
            f"{manifest.sample_rate} Hz"
        )
    if decoding is not None and not 0 <= decoding.blank_id <= decoding.vocab_size:
        raise BundleError(
            f"decoding: blank_id {decoding.blank_id} is outside the vocabulary "
            f"(0 to {decoding.vocab_size})"
        )


def _component_from_dict(data: dict[str, Any], where: str) -> ComponentSpec:
    _require(data, ("name", "role", "inputs", "outputs"), where)
    _list(data, "inputs", where)
    _list(data, "outputs", where)
    _list(data, "state", where)
    if not isinstance(data.get("files", {}), dict):
        raise BundleError(
            f"{where}: files must be a mapping of format -> file, "
            f"got {type(data['files']).__name__}"
        )
    files = {}
    for fmt, f in data.get("files", {}).items():
        if fmt not in FORMATS:
            raise BundleError(f"{where}: unknown format {fmt!r}; expected one of {FORMATS}")
        _require(f, ("path", "precision", "inputs", "outputs"), f"{where} file {fmt!r}")
        _list(f, "inputs", f"{where} file {fmt!r}")
        _list(f, "outputs", f"{where} file {fmt!r}")
        files[fmt] = ComponentFile(
            path=bundle_path(f["path"], f"{where} {fmt} file"),
            precision=str(f["precision"]),
            inputs=tuple(TensorSpec.from_dict(t, f"{where} {fmt} input") for t in f["inputs"]),
            outputs=tuple(TensorSpec.from_dict(t, f"{where} {fmt} output") for t in f["outputs"]),
            constants=tuple(
                _constant_from_dict(c, f"{where} {fmt}") for c in f.get("constants", [])
            ),
            compression=None if f.get("compression") is None else str(f["compression"]),
        )
    return ComponentSpec(
        name=str(data["name"]),
        role=str(data["role"]),
        description=str(data.get("description", "")),
        inputs=tuple(TensorSpec.from_dict(t, f"{where} input") for t in data["inputs"]),
        outputs=tuple(TensorSpec.from_dict(t, f"{where} output") for t in data["outputs"]),
        state=tuple(_state_from_dict(s, where) for s in data.get("state", [])),
        files=files,
        kind=str(data.get("kind", "")),
    )


def _state_from_dict(data: Any, where: str) -> StatePair:
    _require(data, ("input", "output"), f"{where} state")
    return StatePair(str(data["input"]), str(data["output"]), str(data.get("init", "zeros")))


def bundle_path(value: Any, where: str) -> str:
    """A file name inside the bundle: relative, without ``..``; anything else is refused so
    that a manifest cannot point a runtime at files outside its bundle."""
    text = str(value)
    parts = Path(text).parts
    if not text or Path(text).is_absolute() or ".." in parts or "\\" in text:
        raise BundleError(f"{where}: path {text!r} leaves the bundle (must be relative, no '..')")
    return text


def _constant_from_dict(data: dict[str, Any], where: str) -> ConstantInput:
    _require(data, ("name", "dtype", "value"), f"{where} constant")
    if data["dtype"] not in DTYPES:
        raise BundleError(f"{where} constant: unknown dtype {data['dtype']!r}")
    value = data["value"]
    if isinstance(value, list):
        value = list(value)
    elif not isinstance(value, (int, float)) or isinstance(value, bool):
        raise BundleError(f"{where} constant: value {value!r} is not a number or a list")
    return ConstantInput(str(data["name"]), str(data["dtype"]), value)


def _tokenizer_from_dict(data: dict[str, Any]) -> TokenizerSpec:
    spec = TokenizerSpec(**data)
    bundle_path(spec.tokens_file, "tokenizer tokens_file")
    if spec.model_file is not None:
        bundle_path(spec.model_file, "tokenizer model_file")
    return spec


def _require(data: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected an object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise BundleError(f"{where}: missing field(s) {', '.join(missing)}")


def _by_name(specs: tuple[TensorSpec, ...], name: str, what: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise BundleError(f"{what} {name!r} not found (have {[s.name for s in specs]})")
