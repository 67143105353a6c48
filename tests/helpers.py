"""Helpers shared by several test modules (fixtures live in conftest.py).

- the GigaAM reference data under tests/data/gigaam: clips, upstream tensors, transcripts;
- the float32 tolerance of the front-end comparisons (explained in tests/test_features.py);
- long recordings laid out of clips with pauses, and the word-for-word check against the
  clips transcribed one by one;
- small Core ML programs and packages for the MIL interpreter tests;
- ``BundleCache``: fixture bundles converted once per test run, shared by xdist workers.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from speechport.coreml import Interpreter
from speechport.coreml.program import Arg, Block, Function, Op, Program, Var
from speechport.coreml.values import BY_NAME, TensorType

if TYPE_CHECKING:
    from speechport.features import LogMelSpec
    from speechport.manifest import ComponentFile
    from speechport.pipelines.transcriber import Transcriber, Transcript

DATA = Path(__file__).parent / "data"
GIGAAM = DATA / "gigaam"
VARIANTS = ("v3_e2e_rnnt", "v3_rnnt", "v3_e2e_ctc", "v3_ctc")
CLIPS = (0, 1, 2, 3)
SR = 16000
EPS32 = float(np.finfo(np.float32).eps)


# --- GigaAM reference data ---------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """One upstream reference: the audio, upstream's tensors and its transcript."""

    variant: str
    index: int
    audio: np.ndarray
    npz: dict[str, np.ndarray]
    expected: dict[str, Any]


def gigaam_index() -> dict[str, Any]:
    index: dict[str, Any] = json.loads((GIGAAM / "index.json").read_text(encoding="utf-8"))
    return index


def gigaam_clip(variant: str, index: int) -> Clip:
    entry = gigaam_index()["variants"][variant]["clips"][index]
    audio, rate = sf.read(GIGAAM / entry["audio"], dtype="float32")
    assert rate == SR
    with np.load(GIGAAM / entry["reference_npz"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Clip(variant, index, audio, arrays, entry)


def checkpoint(variant: str) -> Path:
    return GIGAAM / f"{variant}.ckpt"


def tokenizer_for(variant: str) -> Path | None:
    return GIGAAM / "tokenizer.model" if "e2e" in variant else None


# --- front-end tolerance -------------------------------------------------------------------


def feature_tolerance(spec: LogMelSpec, samples: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per-element tolerance ``[n_mels, valid]`` of log-mel features against a float32
    reference (the derivation is in the docstring of tests/test_features.py)."""
    from speechport.features import LogMelFrontend

    plain = dataclasses.replace(spec, normalize=None, pad_value=None)
    valid = spec.num_frames(samples.shape[0])
    log_mel = LogMelFrontend(plain)(samples).astype(np.float64)[:, :valid]
    guard = spec.log_guard if spec.log == "add" else 0.0
    mel = np.clip(np.exp(log_mel) - guard, 0.0, None)
    frame_total = mel.sum(axis=0, keepdims=True)
    stft_noise = 2.0 * EPS32 * np.sqrt(frame_total * mel) / (mel + guard)
    projection = spec.n_freqs * EPS32
    scale = 1.0
    if spec.normalize == "per_feature":
        scale = log_mel.std(axis=1, ddof=1, keepdims=True) + spec.normalize_eps
    rounding = 2.0 * EPS32 * np.abs(expected[:, :valid])
    result: np.ndarray = (stft_noise + projection) / scale + rounding
    return result


def assert_within(actual: np.ndarray, expected: np.ndarray, tolerance: np.ndarray) -> None:
    valid = tolerance.shape[1]
    difference = np.abs(actual[:, :valid].astype(np.float64) - expected[:, :valid])
    excess = difference - tolerance
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    assert excess[worst] <= 0.0, (
        f"|difference| {difference[worst]:.3g} > tolerance {tolerance[worst]:.3g} at "
        f"(mel {worst[0]}, frame {worst[1]}); largest difference {difference.max():.3g}"
    )


def assert_package_declares(package: Path, file: ComponentFile) -> None:
    """A Core ML package declares the I/O its manifest entry lists: names, shapes, dtypes
    and enumerated sizes (buckets); an output whose size follows the buckets (a dynamic
    axis) declares no shape."""
    from speechport.export.coreml import package_io

    inputs, outputs = package_io(package)
    assert [(t.name, t.shape, t.dtype, t.buckets) for t in inputs] == [
        (t.name, t.shape, t.dtype, t.buckets) for t in file.inputs
    ]
    assert [(t.name, t.shape, t.dtype) for t in outputs] == [
        (t.name, () if t.dynamic_axes else t.shape, t.dtype) for t in file.outputs
    ]


def length_path_types(package: Path, output: str) -> dict[str, str]:
    """The dtype of every op between a Core ML program's inputs and ``output``: fp16 cannot
    hold every integer above 2048, so an fp16 op here makes a 30 s window's length off by
    one."""
    import coremltools as ct
    from coremltools.proto import MIL_pb2

    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    producers = {out.name: op for op in block.operations for out in op.outputs}
    found: dict[str, str] = {}
    pending = [name for name in block.outputs if name.startswith(output)]
    while pending:
        name = pending.pop()
        op = producers.get(name)
        if op is None or name in found:
            continue
        dtype = op.outputs[0].type.tensorType.dataType
        found[f"{op.type} {name}"] = MIL_pb2.DataType.Name(dtype).lower()
        for argument in op.inputs.values():
            pending += [a.name for a in argument.arguments if a.HasField("name")]
    return found


# --- long recordings -------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """Clips laid end to end with pauses: ``order[k]`` is the clip placed at
    ``spans[k] = (first, stop)`` samples (the whole clip file, its own silence included)."""

    audio: np.ndarray
    order: list[int]
    spans: list[tuple[int, int]]
    speech: list[tuple[int, int]]  # the loud part of each placed clip

    def seconds(self) -> float:
        return self.audio.size / SR


def read_clips(paths: Sequence[Path]) -> list[np.ndarray]:
    out = []
    for path in paths:
        audio, rate = sf.read(path, dtype="float32")
        assert rate == SR and audio.ndim == 1
        out.append(audio)
    return out


def lay_out(
    clips: Sequence[np.ndarray],
    seconds: float,
    seed: int,
    pauses: tuple[float, float] = (0.05, 1.2),
) -> Recording:
    """Random clips separated by pauses drawn uniformly from ``pauses`` (seconds, any
    number of samples), until the recording is at least ``seconds`` long."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    order: list[int] = []
    spans: list[tuple[int, int]] = []
    speech: list[tuple[int, int]] = []
    position = 0
    while position < seconds * SR:
        pause = int(rng.uniform(*pauses) * SR)
        index = int(rng.integers(0, len(clips)))
        clip = clips[index]
        position += pause
        loud = np.flatnonzero(np.abs(clip) > 1e-3)
        spans.append((position, position + clip.size))
        speech.append((position + int(loud[0]), position + int(loud[-1]) + 1))
        parts += [np.zeros(pause, np.float32), clip]
        order.append(index)
        position += clip.size
    parts.append(np.zeros(SR // 2, np.float32))
    return Recording(np.concatenate(parts), order, spans, speech)


def words_once(
    transcript: Transcript, recording: Recording, alone: Sequence[Transcript]
) -> list[str]:
    """Everything wrong with ``transcript`` against the clips transcribed one by one: the
    words must be theirs, in order, and each must lie inside its own clip's span."""
    expected = [(w.text, k) for k, i in enumerate(recording.order) for w in alone[i].words]
    got = transcript.words
    problems = []
    if [w.text for w in got] != [text for text, _ in expected]:
        problems.append(_diff([t for t, _ in expected], [w.text for w in got]))
        return problems
    for word, (_, k) in zip(got, expected, strict=True):
        first, stop = recording.spans[k]
        if not (first / SR <= word.start <= word.end <= stop / SR):
            problems.append(
                f"{word.text!r} at {word.start:.2f}-{word.end:.2f} s is outside clip {k} "
                f"({first / SR:.2f}-{stop / SR:.2f} s)"
            )
    return problems


def _diff(expected: list[str], got: list[str]) -> str:
    ops = difflib.SequenceMatcher(a=expected, b=got, autojunk=False).get_opcodes()
    return "; ".join(
        f"{op} {expected[a:b]} -> {got[c:d]} (word {a})" for op, a, b, c, d in ops if op != "equal"
    )


def edges_in_speech(transcriber: Transcriber, recording: Recording) -> int:
    """How many window edges (ends, and starts but the first) fall inside a clip's speech."""
    edges = {w.end for w in transcriber.plan(recording.audio)[:-1]}
    edges |= {w.start for w in transcriber.plan(recording.audio)[1:]}
    return sum(any(a < e < b for a, b in recording.speech) for e in edges)


# --- Core ML programs for the interpreter tests ----------------------------------------------


def op_program(
    op_type: str, inputs: dict[str, Any], outputs: tuple[str, ...] = ("fp32",)
) -> Program:
    """A program of one op. Each input is an inline constant; a Python list is a variadic
    input (one binding per element). ``outputs`` are the declared dtypes (rank unknown)."""
    bound = {
        name: [Arg(value=v) for v in value] if isinstance(value, list) else [Arg(value=value)]
        for name, value in inputs.items()
    }
    out_vars = [Var(f"out{i}", TensorType(BY_NAME[d], None)) for i, d in enumerate(outputs)]
    op = Op(op_type, bound, {}, out_vars, [], "main op #0")
    block = Block([], [op], [v.name for v in out_vars])
    return Program(Path("<test>"), {"main": Function("main", "CoreML7", [], block)}, 8)


def run_op(
    op_type: str, inputs: dict[str, Any], outputs: tuple[str, ...] = ("fp32",)
) -> list[np.ndarray]:
    """Run one op (see ``op_program``) through the interpreter; its outputs in order."""
    result = Interpreter(op_program(op_type, inputs, outputs)).run({})
    return [result[f"out{i}"] for i in range(len(outputs))]


def i32(value: Any) -> np.ndarray:
    return np.array(value, dtype=np.int32)


def f32(value: Any) -> np.ndarray:
    return np.array(value, dtype=np.float32)


def flag(value: bool) -> np.ndarray:
    return np.array(value, dtype=bool)


def save_mil_program(program: Any, path: Path, *, target: Any = None, fp16: bool = False) -> Path:
    """Convert a ``mb.program`` to an ML Program package at ``path``."""
    from speechport.export.compat import quiet_coremltools

    quiet_coremltools()
    import coremltools as ct

    model = ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=target or ct.target.iOS17,
        compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
        skip_model_load=True,
    )
    model.save(str(path))
    return path


def save_torch_module(
    module: Any, example: tuple[Any, ...], names: list[str], path: Path, *, fp16: bool
) -> Path:
    """Trace a torch module and convert it as speechport's exporter does (iOS 17, fp32 I/O)."""
    import torch

    from speechport.coreml.quiet import quiet_coremltools
    from speechport.export.compat import coreml_conversion_patches
    from speechport.export.coreml import jit_trace

    quiet_coremltools()
    import coremltools as ct

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and converter notes, as in export/coreml.py
        traced = jit_trace(module.eval(), example)
    inputs = [
        ct.TensorType(name=n, shape=tuple(x.shape), dtype=x.numpy().dtype)
        for n, x in zip(names, example, strict=True)
    ]
    with coreml_conversion_patches(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert(
            traced,
            inputs=inputs,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
            skip_model_load=True,
        )
    model.save(str(path))
    return path


# --- fixture bundles, converted once per test run --------------------------------------------

_DEFAULTS: dict[str, Any] = {"formats": ("coreml", "onnx"), "precision": "fp16"}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(bundle: Path) -> dict[str, str]:
    """Every file under ``bundle`` with the sha256 of its content: a test that writes into
    the bundle (a report, a card, a removed file) changes it. (Not modification times:
    coremltools rewrites a package's Manifest.json, unchanged and by an atomic rename,
    whenever it opens the package.)"""
    return {
        p.relative_to(bundle).as_posix(): file_sha256(p)
        for p in sorted(bundle.rglob("*"))
        if p.is_file()
    }


class BundleCache:
    """Bundles converted once per test run and shared by every xdist worker.

    A bundle is keyed by its family, the sha256 of its checkpoint and tokenizer, the
    conversion options and the speechport version; the first worker that asks converts it
    under a file lock, the others wait for the lock and reuse the directory. The bundles
    are shared: a test that writes into one works on a copy (``copy_bundle``).
    ``changed()`` names the bundles some test modified anyway."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._used: dict[Path, Path] = {}  # bundle -> its record of the converted files

    def key(
        self, family: str, checkpoint: Path | None, tokenizer: Path | None, options: dict[str, Any]
    ) -> str:
        import speechport

        options = {**_DEFAULTS, **options}
        formats = options["formats"]
        if isinstance(formats, str):
            formats = formats.split(",")
        options["formats"] = sorted(formats)
        if checkpoint is None:  # the family's default source: the installed package
            from importlib.metadata import version

            source = f"{family} package {version(family)}"
        else:
            source = file_sha256(checkpoint)
        described = {
            "family": family,
            "checkpoint": source,
            "tokenizer": None if tokenizer is None else file_sha256(tokenizer),
            "options": options,
            "speechport": speechport.__version__,
        }
        text = json.dumps(described, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def get(
        self,
        family: str,
        checkpoint: Path | None,
        name: str,
        *,
        tokenizer: Path | None = None,
        **options: Any,
    ) -> Path:
        """The bundle of ``checkpoint`` converted with ``options`` (as for ``convert``), in a
        directory called ``name``; converted now if no worker did yet."""
        from filelock import FileLock

        from speechport.conversion import convert

        key = self.key(family, checkpoint, tokenizer, options)
        folder = self.root / key
        bundle = folder / name
        record = folder / f"{name}.files.json"
        with FileLock(str(self.root / f"{key}.lock")):
            if not record.is_file():
                if bundle.exists():  # left by a worker that died while converting
                    shutil.rmtree(bundle)
                folder.mkdir(exist_ok=True)
                convert(family, checkpoint, bundle, tokenizer=tokenizer, quiet=True, **options)
                record.write_text(json.dumps(_fingerprint(bundle)), encoding="utf-8")
        self._used[bundle] = record
        return bundle

    def changed(self) -> list[str]:
        """The shared bundles whose files differ from what the conversion wrote."""
        return [
            str(bundle)
            for bundle, record in self._used.items()
            if _fingerprint(bundle) != json.loads(record.read_text(encoding="utf-8"))
        ]


def copy_bundle(bundle: Path, target: Path) -> Path:
    """A private copy of a shared bundle, for a test that modifies it."""
    shutil.copytree(bundle, target)
    return target
