"""An ASR bundle's ONNX files in the layout sherpa-onnx's NeMo loaders read, unchanged.

sherpa-onnx (``OfflineTransducerNeMoModel``, ``OfflineNemoEncDecCtcModel``) calls its ONNX
files by position, never by tensor name, and reads the model's facts from the metadata of the
encoder (or CTC model) file:

- encoder: ``features [B, F, T] float, lengths [B] int64 -> encoded [B, D, T'], lengths
  [B] int32 or int64``; metadata ``vocab_size`` (tokens without the blank), ``subsampling_factor``,
  ``normalize_type``, ``pred_rnn_layers``, ``pred_hidden``, ``feat_dim``, ``is_giga_am``;
- decoder: ``targets [B, 1] int32, target_length [B] int32, state_1, state_2 ->
  outputs [B, H, 1], lengths (discarded), state_1', state_2'``;
- joiner: ``encoder_out [B, D, 1], decoder_out [B, H, 1] -> logits [..., V + 1]`` (it takes
  the argmax, then a log-softmax: log-probabilities serve as well as logits);
- CTC model: the encoder's inputs ``-> log_probs [B, T', V + 1]`` (it divides the input
  lengths by ``subsampling_factor`` itself); ``vocab_size`` counts the blank;
- ``tokens.txt``: ``<piece> <id>`` lines, ``▁`` for a word boundary, ``<blk>`` last.

``write_sherpa_layout`` derives that layout from a bundle whose own files keep another
runtime's layout (GigaAM's: an ``int64`` token and ``[B, 1, H]`` from the decoder). It rewrites
the graphs, not the torch modules: the encoder, joint and CTC files are the bundle's with the
metadata added, and the decoder gets a cast of the token, a pass-through length and a
transpose around the bundle's own graph. So it works on any bundle, quantized ones included,
without the checkpoint; the bundle itself is not touched. Every rewritten decoder is run
against the bundle's before the directory is kept.

The layout is chosen by the component kinds in the manifest (``encoder``, ``decoder_step``,
``joint``: a transducer; an ``encoder`` alone: CTC). sherpa-onnx computes the features itself
with one of two front ends; only GigaAM's (64 HTK mel bins, no normalisation, 16 kHz) is
matched here, since NeMo bundles already carry sherpa-onnx's layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speechport.errors import BundleError, ExportError
from speechport.features.spec import LogMelSpec
from speechport.fsutil import atomic_directory
from speechport.manifest import Manifest, read_manifest

if TYPE_CHECKING:
    import onnx

TOKENS = "tokens.txt"
# The transducer's files sherpa-onnx reads, by the component kind each comes from.
TRANSDUCER_ROLES = {"encoder": "encoder", "decoder_step": "decoder", "joint": "joiner"}
BLANK = "<blk>"
WORD_BOUNDARY = "\u2581"  # sherpa-onnx turns a leading one into a space
# sherpa-onnx's model_type for OfflineRecognizer.from_transducer; CTC files go to from_nemo_ctc
TRANSDUCER = "nemo_transducer"
CTC = "nemo_ctc"


@dataclass(frozen=True)
class SherpaLayout:
    """A directory sherpa-onnx loads: ``model_type`` (``nemo_transducer`` or ``nemo_ctc``),
    its files by role (``encoder``, ``decoder``, ``joiner`` or ``model``; ``tokens``), and
    the feature size and sample rate to pass to the recognizer."""

    directory: Path
    model_type: str
    files: dict[str, Path]
    feature_dim: int
    sample_rate: int


def write_sherpa_layout(bundle: Path, out: Path, *, overwrite: bool = False) -> SherpaLayout:
    """Write ``bundle``'s ONNX files in sherpa-onnx's NeMo layout into the directory ``out``
    (``encoder.onnx``, ``decoder.onnx``, ``joiner.onnx`` or ``model.onnx``; ``tokens.txt``).
    ``overwrite`` replaces an ``out`` written before (one that holds a ``tokens.txt``)."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    _, decoding, _ = manifest.require_asr(bundle)
    model_type, writer = _layout(manifest, bundle)
    metadata = {
        **_frontend_metadata(manifest, bundle),
        "subsampling_factor": str(decoding.subsampling_factor),
        "model_author": f"speechport bundle ({manifest.family} {manifest.variant})",
        "comment": "ONNX files of a speechport bundle in sherpa-onnx's NeMo layout",
    }
    if decoding.blank_id != decoding.vocab_size:
        raise ExportError(
            f"sherpa-onnx needs the blank last (id {decoding.vocab_size}); this bundle's "
            f"blank is {decoding.blank_id}",
            path=bundle,
            hint="this bundle cannot be laid out for sherpa-onnx",
        )
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite, marker=TOKENS) as tmp:
        names = writer(manifest, bundle, tmp, metadata)
        (tmp / TOKENS).write_text(_tokens_txt(manifest, bundle), encoding="utf-8")
    files = {role: out / name for role, name in names.items()}
    files["tokens"] = out / TOKENS
    n_mels = LogMelSpec.from_dict(manifest.frontend).n_mels
    return SherpaLayout(out, model_type, files, n_mels, manifest.sample_rate)


Writer = Callable[[Manifest, Path, Path, dict[str, str]], dict[str, str]]


def _layout(manifest: Manifest, bundle: Path) -> tuple[str, Writer]:
    """sherpa-onnx's model type and the writer for the bundle's component kinds (the first
    layout whose kinds it has)."""
    for kinds, model_type, writer in _LAYOUTS:
        if all(manifest.roles_of(kind) for kind in kinds):
            return model_type, writer
    raise ExportError(
        f"sherpa-onnx's NeMo loaders run an ONNX encoder with a CTC head or a transducer; "
        f"this bundle has {sorted({c.kind for c in manifest.components.values()})}",
        path=bundle,
        hint="lay out a speech-recognition bundle with ONNX files",
    )


def _write_transducer(
    manifest: Manifest, bundle: Path, out: Path, metadata: dict[str, str]
) -> dict[str, str]:
    import onnx

    encoder_path = _onnx_file(manifest, bundle, "encoder")
    decoder_path = _onnx_file(manifest, bundle, "decoder_step")
    joint_path = _onnx_file(manifest, bundle, "joint")
    decoder = onnx.load(str(decoder_path))
    layers, hidden = _decoder_state_size(decoder, decoder_path)
    joint = onnx.load(str(joint_path))
    _check_joint(joint, joint_path, manifest, hidden)
    encoder = _load_encoder(encoder_path)
    decoding = manifest.decoding
    assert decoding is not None
    _add_metadata(
        encoder,
        {
            **metadata,
            "vocab_size": str(decoding.vocab_size),  # without the blank (sherpa adds it)
            "pred_rnn_layers": str(layers),
            "pred_hidden": str(hidden),
            "model_type": "EncDecRNNTBPEModel",
        },
    )
    from speechport.export.onnx import save_onnx_model

    save_onnx_model(encoder, out / "encoder.onnx")
    rewritten = nemo_decoder(decoder, decoder_path, hidden)
    save_onnx_model(rewritten, out / "decoder.onnx")
    check_same_decoder(decoder_path, out / "decoder.onnx", decoding.blank_id)
    save_onnx_model(joint, out / "joiner.onnx")
    return {role: f"{role}.onnx" for role in TRANSDUCER_ROLES.values()}


def _write_ctc(
    manifest: Manifest, bundle: Path, out: Path, metadata: dict[str, str]
) -> dict[str, str]:
    path = _onnx_file(manifest, bundle, "encoder")
    model = _load_encoder(path)
    decoding = manifest.decoding
    assert decoding is not None
    classes = _static_dim(model.graph.output[0], -1)
    if len(model.graph.output[0].type.tensor_type.shape.dim) != 3 or (
        classes is not None and classes != decoding.vocab_size + 1
    ):
        raise ExportError(
            f"the CTC encoder's first output is not log-probabilities [B, T, "
            f"{decoding.vocab_size + 1}]",
            path=path,
            component="encoder",
            hint="this bundle's CTC file has a layout sherpa-onnx does not read",
        )
    _add_metadata(
        model,
        {
            **metadata,
            "vocab_size": str(decoding.vocab_size + 1),  # with the blank
            "model_type": "EncDecCTCModel",
        },
    )
    from speechport.export.onnx import save_onnx_model

    save_onnx_model(model, out / "model.onnx")
    return {"model": "model.onnx"}


_LAYOUTS: tuple[tuple[tuple[str, ...], str, Writer], ...] = (
    (("encoder", "decoder_step", "joint"), TRANSDUCER, _write_transducer),
    (("encoder",), CTC, _write_ctc),
)


def _frontend_metadata(manifest: Manifest, bundle: Path) -> dict[str, str]:
    """sherpa-onnx's front end for the bundle's features: GigaAM's (``is_giga_am``)."""
    spec = LogMelSpec.from_dict(manifest.frontend)
    gigaam = (spec.sample_rate, spec.n_mels, spec.mel_scale, spec.normalize) == (
        16000,
        64,
        "htk",
        None,
    )
    if not gigaam:
        raise ExportError(
            f"sherpa-onnx computes GigaAM's features (16 kHz, 64 HTK mel bins, no "
            f"normalisation) or NeMo's; this bundle's front end is {spec.sample_rate} Hz, "
            f"{spec.n_mels} {spec.mel_scale} mel bins, normalisation {spec.normalize}",
            path=bundle,
            hint="NeMo bundles (parakeet) load in sherpa-onnx as they are",
        )
    return {"normalize_type": "", "is_giga_am": "1", "feat_dim": str(spec.n_mels)}


def _onnx_file(manifest: Manifest, bundle: Path, kind: str) -> Path:
    role = manifest.roles_of(kind)[0]
    spec = manifest.components[role]
    if "onnx" not in spec.files:
        raise BundleError(
            "the bundle has no ONNX file for this component",
            path=bundle,
            component=role,
            hint="convert with --format onnx",
        )
    path = bundle / spec.files["onnx"].path
    if not path.is_file():
        raise BundleError("the component's ONNX file is missing", path=path, component=role)
    return path


def _load_encoder(path: Path) -> onnx.ModelProto:
    """The encoder (or CTC) file, checked to take ``[B, F, T] float, [B] int64`` and to give
    two outputs, and not to carry sherpa-onnx's metadata already."""
    import onnx

    model = onnx.load(str(path))
    types = [_elem_type(v) for v in model.graph.input]
    ranks = [_rank(v) for v in model.graph.input]
    if types != [onnx.TensorProto.FLOAT, onnx.TensorProto.INT64] or ranks != [3, 1]:
        raise ExportError(
            "sherpa-onnx feeds the encoder features [B, F, T] float32 and lengths [B] int64; "
            "this file takes something else",
            path=path,
            component="encoder",
            hint="this bundle's encoder has a layout sherpa-onnx does not read",
        )
    if any(p.key == "vocab_size" for p in model.metadata_props):
        raise ExportError(
            "the encoder already carries sherpa-onnx's metadata",
            path=path,
            component="encoder",
            hint="load the bundle's own ONNX files in sherpa-onnx",
        )
    return model


def _decoder_state_size(model: onnx.ModelProto, path: Path) -> tuple[int, int]:
    """``(layers, hidden)`` of a decoder ``token [B, 1], h [L, B, H], c [L, B, H] -> dec, h',
    c'``."""
    graph = model.graph
    if len(graph.input) != 3 or len(graph.output) != 3:
        raise ExportError(
            f"expected a decoder step 'token, h, c -> dec, h, c'; the graph has "
            f"{len(graph.input)} inputs and {len(graph.output)} outputs",
            path=path,
            component="decoder_step",
            hint="this bundle's decoder has a layout sherpa-onnx does not read",
        )
    layers, hidden = _static_dim(graph.input[1], 0), _static_dim(graph.input[1], 2)
    if layers is None or hidden is None or _rank(graph.input[1]) != 3:
        raise ExportError(
            "the decoder's state has no static [layers, batch, hidden] shape",
            path=path,
            component="decoder_step",
        )
    return layers, hidden


def _check_joint(model: onnx.ModelProto, path: Path, manifest: Manifest, hidden: int) -> None:
    decoding = manifest.decoding
    assert decoding is not None
    graph = model.graph
    ok = (
        len(graph.input) == 2
        and all(_rank(v) == 3 and _static_dim(v, 2) == 1 for v in graph.input)
        and _static_dim(graph.input[1], 1) == hidden
        and _static_dim(graph.output[0], -1) == decoding.vocab_size + 1
    )
    if not ok:
        raise ExportError(
            f"sherpa-onnx calls the joint with encoder [B, D, 1] and decoder [B, {hidden}, 1] "
            f"frames for [..., {decoding.vocab_size + 1}] scores; this file differs",
            path=path,
            component="joint",
            hint="this bundle's joint has a layout sherpa-onnx does not read",
        )


def nemo_decoder(model: onnx.ModelProto, path: Path, hidden: int) -> onnx.ModelProto:
    """The decoder step ``token [B, 1] (int32/int64), h, c -> dec [B, 1, H] or [B, H, 1], h',
    c'`` wrapped as NeMo exports it: ``targets [B, 1] int32, target_length [B] int32, h, c
    -> outputs [B, H, 1], prednet_lengths [B] int32, h', c'`` (the length passes through)."""
    import onnx
    from onnx import helper

    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    graph = rewritten.graph
    token, h_in, c_in = graph.input
    dec, h_out, c_out = graph.output
    if _rank(token) != 2 or _elem_type(token) not in (
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT64,
    ):
        raise ExportError(
            "the decoder's token input is not an integer [B, 1]",
            path=path,
            component="decoder_step",
        )
    if _rank(dec) != 3 or hidden not in (_static_dim(dec, 1), _static_dim(dec, 2)):
        raise ExportError(
            f"the decoder's first output is not [B, 1, {hidden}] or [B, {hidden}, 1]",
            path=path,
            component="decoder_step",
        )
    taken = _value_names(graph)
    targets, target_length = _fresh("targets", taken), _fresh("target_length", taken)
    outputs, lengths = _fresh("outputs", taken), _fresh("prednet_lengths", taken)
    batch = _dim(token, 0)
    nodes = [
        helper.make_node("Cast", [targets], [token.name], to=_elem_type(token)),
        *graph.node,
        helper.make_node("Identity", [target_length], [lengths]),
        helper.make_node(
            "Transpose",
            [dec.name],
            [outputs],
            perm=[0, 2, 1] if _static_dim(dec, 2) == hidden else [0, 1, 2],
        ),
    ]
    del graph.node[:]
    graph.node.extend(nodes)
    new_inputs = [
        helper.make_tensor_value_info(targets, onnx.TensorProto.INT32, [batch, 1]),
        helper.make_tensor_value_info(target_length, onnx.TensorProto.INT32, [batch]),
    ]
    states_in = [_copy(h_in), _copy(c_in)]
    del graph.input[:]
    graph.input.extend([*new_inputs, *states_in])
    new_outputs = [
        helper.make_tensor_value_info(outputs, onnx.TensorProto.FLOAT, [batch, hidden, 1]),
        helper.make_tensor_value_info(lengths, onnx.TensorProto.INT32, [batch]),
    ]
    states_out = [_copy(h_out), _copy(c_out)]
    del graph.output[:]
    graph.output.extend([*new_outputs, *states_out])
    onnx.checker.check_model(rewritten)
    return rewritten


def check_same_decoder(original: Path, rewritten: Path, token: int) -> None:
    """Run both decoder files on one token and random states: the rewritten one must give
    the original's output (transposed) and states exactly."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    a = ort.InferenceSession(str(original), options, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(rewritten), options, providers=["CPUExecutionProvider"])
    tok, h, _ = a.get_inputs()
    shape = [d if isinstance(d, int) else 1 for d in h.shape]
    rng = np.random.default_rng(0)
    h0, c0 = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    dtype = np.int64 if tok.type == "tensor(int64)" else np.int32
    dec, h1, c1 = a.run(
        None, {tok.name: np.array([[token]], dtype), h.name: h0, a.get_inputs()[2].name: c0}
    )
    names = [i.name for i in b.get_inputs()]
    out, length, h2, c2 = b.run(
        None,
        dict(
            zip(
                names, [np.array([[token]], np.int32), np.array([1], np.int32), h0, c0], strict=True
            )
        ),
    )
    same = (
        np.array_equal(out.reshape(-1), dec.reshape(-1))
        and out.shape[1] == dec.reshape(-1).size
        and np.array_equal(h1, h2)
        and np.array_equal(c1, c2)
        and length.tolist() == [1]
    )
    if not same:
        raise ExportError(
            "the rewritten decoder does not give the bundle decoder's outputs",
            path=rewritten,
            component="decoder_step",
            hint="report this bundle: its decoder graph is not the expected step",
        )


def _tokens_txt(manifest: Manifest, bundle: Path) -> str:
    """``tokens.txt``: the bundle's pieces (a space as ``▁``) and ``<blk>`` last."""
    from speechport.tokenizer import Tokenizer

    _, _, spec = manifest.require_asr(bundle)
    pieces = Tokenizer.from_bundle(bundle, spec).pieces
    if BLANK in pieces:
        raise ExportError(
            f"a token is spelt {BLANK!r}, the name sherpa-onnx gives the blank",
            path=bundle / spec.tokens_file,
        )
    vocab = [p.replace(" ", WORD_BOUNDARY) for p in pieces] + [BLANK]
    return "".join(f"{piece} {i}\n" for i, piece in enumerate(vocab))


def _add_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _value_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in (*graph.input, *graph.output, *graph.initializer)}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _fresh(name: str, taken: set[str]) -> str:
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _copy(value: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    import onnx

    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value)
    return copy


def _elem_type(value: onnx.ValueInfoProto) -> int:
    return int(value.type.tensor_type.elem_type)


def _rank(value: onnx.ValueInfoProto) -> int:
    return len(value.type.tensor_type.shape.dim)


def _dim(value: onnx.ValueInfoProto, axis: int) -> str | int | None:
    dim = value.type.tensor_type.shape.dim[axis]
    if dim.HasField("dim_value"):
        return int(dim.dim_value)
    return dim.dim_param or None


def _static_dim(value: onnx.ValueInfoProto, axis: int) -> int | None:
    dims = value.type.tensor_type.shape.dim
    if not dims:
        return None
    dim = dims[axis]
    return int(dim.dim_value) if dim.HasField("dim_value") else None


__all__ = ["CTC", "TRANSDUCER", "SherpaLayout", "nemo_decoder", "write_sherpa_layout"]
