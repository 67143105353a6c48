"""A speech-synthesis bundle on disk whose two stages are small ONNX graphs computing what
the numpy stand-ins of ``tests/tts_fakes.py`` compute: for testing ``speechport.load``,
``speechport speak``, verify inputs and the example script end to end, without a model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from speechport.export.bundle import EXAMPLE_SCRIPTS, example_script
from speechport.manifest import MANIFEST_NAME, ComponentFile, ComponentSpec, Manifest
from tests.tts_fakes import CP, CT, SPF, FakeAcoustic, FakeText, H, fake_bundle

OPSET = 17


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def _io(spec: ComponentSpec) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    types = {"float32": TensorProto.FLOAT, "int32": TensorProto.INT32}
    ins = [helper.make_tensor_value_info(t.name, types[t.dtype], t.shape) for t in spec.inputs]
    outs = [helper.make_tensor_value_info(t.name, types[t.dtype], t.shape) for t in spec.outputs]
    return ins, outs


def text_graph(bucket: int) -> onnx.ModelProto:
    spec = FakeText(bucket).spec
    e0 = np.zeros((1, 1, CP), np.float32)
    e0[..., 0] = 1
    e1 = np.zeros((1, 1, CP), np.float32)
    e1[..., 1] = 1
    t0 = np.zeros((1, CT, 1), np.float32)
    t0[:, 0] = 1
    inits = [
        _const("positions", np.arange(bucket, dtype=np.int32)),
        _const("seven", np.array(7, np.int32)),
        _const("half", np.array(0.5, np.float32)),
        _const("thousand", np.array(1000.0, np.float32)),
        _const("e0", e0),
        _const("e1", e1),
        _const("t0", t0),
        _const("axis2", np.array([2], np.int64)),
        _const("axis1", np.array([1], np.int64)),
        _const("s0", np.array([0], np.int64)),
        _const("s1", np.array([1], np.int64)),
    ]
    n = helper.make_node
    nodes = [
        n("Mod", ["input_ids", "seven"], ["mod"]),
        n("Cast", ["mod"], ["mod_f"], to=TensorProto.FLOAT),
        n("Mul", ["mod_f", "half"], ["m1"]),
        n("Add", ["m1", "half"], ["m2"]),
        n("Div", ["m2", "speed"], ["dur"]),
        n("Less", ["positions", "input_length"], ["valid"]),
        n("Cast", ["valid"], ["mask"], to=TensorProto.FLOAT),
        n("Mul", ["dur", "mask"], ["durations"]),
        n("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
        n("Mul", ["ids_f", "mask"], ["ids_m"]),
        n("Unsqueeze", ["ids_m", "axis2"], ["ids_3"]),
        n("Mul", ["ids_3", "e0"], ["p0"]),
        n("Slice", ["style", "s0", "s1", "axis1"], ["style00"]),
        n("Unsqueeze", ["style00", "axis2"], ["style_3"]),
        n("Mul", ["style_3", "e1"], ["p1"]),
        n("Add", ["p0", "p1"], ["prosody"]),
        n("Add", ["ids_f", "thousand"], ["ids_k"]),
        n("Mul", ["ids_k", "mask"], ["ids_km"]),
        n("Unsqueeze", ["ids_km", "axis1"], ["ids_k3"]),
        n("Mul", ["ids_k3", "t0"], ["text_features"]),
    ]
    ins, outs = _io(spec)
    graph = helper.make_graph(nodes, f"text_{bucket}", ins, outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def acoustic_graph(bucket: int, random_inputs: tuple[str, ...]) -> onnx.ModelProto:
    spec = FakeAcoustic(bucket, random_inputs).spec
    inits = [
        _const("sample_pos", np.arange(SPF * bucket, dtype=np.int32)),
        _const("f0_pos", np.arange(2 * bucket, dtype=np.int32)),
        _const("spf", np.array(SPF, np.int32)),
        _const("two", np.array(2, np.int32)),
        _const("milli", np.array(1e-3, np.float32)),
        _const("halff", np.array(0.5, np.float32)),
        _const("s0", np.array([0], np.int64)),
        _const("s1", np.array([1], np.int64)),
        _const("s2", np.array([2], np.int64)),
        _const("axis1", np.array([1], np.int64)),
        _const("axis2", np.array([2], np.int64)),
        _const("col", np.array([bucket, 1], np.int64)),
        _const("wide", np.array([bucket, SPF], np.int64)),
        _const("wide2", np.array([bucket, 2], np.int64)),
        _const("flat", np.array([1, SPF * bucket], np.int64)),
        _const("flat2", np.array([1, 2 * bucket], np.int64)),
    ]
    n = helper.make_node
    nodes = [
        n("Slice", ["prosody_aligned", "s0", "s1", "axis1"], ["p0"]),
        n("Reshape", ["p0", "col"], ["p0c"]),
        n("Expand", ["p0c", "wide"], ["p0w"]),
        n("Reshape", ["p0w", "flat"], ["base"]),
        n("Mul", ["frames", "spf"], ["valid_samples"]),
        n("Less", ["sample_pos", "valid_samples"], ["valid"]),
        n("Cast", ["valid"], ["mask"], to=TensorProto.FLOAT),
    ]
    total = "base"
    if "noise" in random_inputs:
        nodes += [
            n("Slice", ["noise", "s0", "s1", "axis2"], ["n0"]),
            n("Reshape", ["n0", "flat"], ["n0f"]),
            n("Mul", ["n0f", "milli"], ["n0s"]),
            n("Add", [total, "n0s"], ["with_noise"]),
        ]
        total = "with_noise"
    if "phase" in random_inputs:
        nodes += [
            n("Slice", ["phase", "s1", "s2", "axis1"], ["ph1"]),
            n("Add", [total, "ph1"], ["with_phase"]),
        ]
        total = "with_phase"
    nodes += [
        n("Mul", [total, "mask"], ["audio"]),
        n("Slice", ["text_aligned", "s0", "s1", "axis1"], ["t0"]),
        n("Reshape", ["t0", "col"], ["t0c"]),
        n("Expand", ["t0c", "wide2"], ["t0w"]),
        n("Reshape", ["t0w", "flat2"], ["t0f"]),
        n("Mul", ["frames", "two"], ["valid_f0"]),
        n("Less", ["f0_pos", "valid_f0"], ["valid2"]),
        n("Cast", ["valid2"], ["mask2"], to=TensorProto.FLOAT),
        n("Mul", ["t0f", "mask2"], ["f0"]),
        n("Mul", ["f0", "halff"], ["energy"]),
    ]
    ins, outs = _io(spec)
    graph = helper.make_graph(nodes, f"acoustic_{bucket}", ins, outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def write_onnx_tts_bundle(
    path: Path,
    *,
    token_buckets: tuple[int, ...] = (16, 64),
    frame_buckets: tuple[int, ...] = (40, 120),
    random_inputs: tuple[str, ...] = ("noise", "phase"),
) -> Path:
    """The bundle at ``path``: manifest, two ONNX stages per bucket list, voices, example."""
    loaded, spec = fake_bundle(
        path, token_buckets=token_buckets, frame_buckets=frame_buckets, random_inputs=random_inputs
    )
    (path / "voices").mkdir(exist_ok=True)
    voices = {}
    for name, voice_file in spec.voices.items():
        shutil.move(path / voice_file, path / "voices" / voice_file)
        voices[name] = f"voices/{voice_file}"
    components = {}
    for role, component in loaded.components.items():
        c = component.spec
        model = (
            text_graph(c.inputs[0].shape[1])
            if c.kind == "tts_text"
            else acoustic_graph(c.inputs[0].shape[2], random_inputs)
        )
        onnx.save(model, path / f"{c.name}.onnx")
        file = ComponentFile(f"{c.name}.onnx", "fp32", c.inputs, c.outputs)
        components[role] = ComponentSpec(
            c.name, c.role, c.description, c.inputs, c.outputs, files={"onnx": file}, kind=c.kind
        )
    manifest = Manifest(
        family="fake",
        variant="onnx-stand-in",
        task="tts",
        sample_rate=spec.sample_rate,
        frontend={},
        components=components,
        provenance={},
        tts={**spec.to_dict(), "voices": voices},
    )
    (path / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    (path / EXAMPLE_SCRIPTS["onnx"]).write_text(example_script("onnx", "tts"), encoding="utf-8")
    return path


__all__ = ["H", "write_onnx_tts_bundle"]
