"""ONNX Runtime sessions: thread pools sized per component kind, no spin-waiting."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

import speechport
from speechport.errors import BackendError, SpeechportError
from speechport.runtime import load_bundle
from speechport.runtime.base import LoadedBundle, dynamic_axes
from speechport.runtime.onnx_backend import OnnxBackend, threads_for
from tests.helpers import GIGAAM, gigaam_clip


def test_step_components_run_on_one_thread_and_no_pool_spins(
    gigaam_onnx: Callable[[str], Path],
) -> None:
    loaded = load_bundle(gigaam_onnx("v3_e2e_rnnt"), OnnxBackend(threads=3, steps="onnx"))
    threads, blocks = {}, {}
    for component in loaded.components.values():
        options = component._session.get_session_options()  # type: ignore[attr-defined]
        threads[component.spec.kind] = options.intra_op_num_threads
        for pool in ("intra_op", "inter_op"):
            assert options.get_session_config_entry(f"session.{pool}.allow_spinning") == "0"
        with contextlib.suppress(RuntimeError):  # raised when not set: fixed shares
            blocks[component.spec.kind] = options.get_session_config_entry(
                "session.dynamic_block_base"
            )
    assert threads == {"encoder": 3, "decoder_step": 1, "joint": 1}
    # the encoder's pool hands out work in shrinking blocks, not one share per thread
    assert blocks == {"encoder": "4"}


def test_large_step_components_get_a_thread_per_8_mib_of_weights() -> None:
    """A per-step call streams its weights once: small ones stay on one thread, large
    ones (full-size Parakeet's 24-45 MiB predictor and joint) spread over the threads."""
    mib = 1 << 20
    assert threads_for("joint", 4, 3 * mib) == 1  # full-size GigaAM's joint
    assert threads_for("decoder_step", 4, 16 * mib) == 2
    assert threads_for("decoder_step", 4, 45 * mib) == 4
    assert threads_for("decoder_joint", 1, 70 * mib) == 1
    assert threads_for("encoder", 4, 0) == 4 and threads_for("frontend", 3, mib) == 3


def test_threads_default_to_the_cpu_count_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 5)
    assert OnnxBackend().threads == 5
    with pytest.raises(BackendError, match="at least 1"):
        OnnxBackend(threads=0)


def test_load_takes_threads_for_onnx_only(gigaam_onnx: Callable[[str], Path]) -> None:
    bundle = gigaam_onnx("v3_e2e_rnnt")
    ref = gigaam_clip("v3_e2e_rnnt", 0).expected
    text = speechport.load(bundle, threads=1).transcribe(GIGAAM / ref["audio"]).text
    assert text == ref["text"]
    with pytest.raises(SpeechportError, match="coreml backend takes none"):
        speechport.load(bundle, "coreml", threads=2)


def test_the_time_axis_is_dynamic_in_onnx_and_through_wrappers(
    gigaam_onnx: Callable[[str], Path],
) -> None:
    """The encoder's ONNX file takes its features at any length (batch and time axes);
    verify's recorder and the benchmark's timer declare what they wrap, so they are fed
    the shapes a user's run is fed."""
    from speechport.bench.decode_loop import _Timed, _Timer
    from speechport.parity.latency import Recorder

    loaded = load_bundle(gigaam_onnx("v3_e2e_rnnt"))
    encoder, joint = loaded.of_kind("encoder"), loaded.of_kind("joint")
    assert dynamic_axes(encoder) == {0, 2} and dynamic_axes(encoder, 1) == {0}
    assert dynamic_axes(joint) == frozenset()  # [1, d] fed as the file's [1, d, 1]
    for wrapper in (Recorder(encoder), _Timed(encoder, _Timer())):
        assert dynamic_axes(wrapper) == {0, 2}


def test_graph_optimization_and_memory_arena_reach_every_session(
    gigaam_onnx: Callable[[str], Path],
) -> None:
    import onnxruntime as ort

    bundle = gigaam_onnx("v3_e2e_rnnt")
    defaults = load_bundle(bundle, OnnxBackend(steps="onnx"))
    model = speechport.load(bundle, steps="onnx", graph_optimization="basic", memory_arena=False)
    chosen: LoadedBundle = model.bundle
    levels = ort.GraphOptimizationLevel
    for loaded, level, arena in (
        (defaults, levels.ORT_ENABLE_ALL, True),
        (chosen, levels.ORT_ENABLE_BASIC, False),
    ):
        for component in loaded.components.values():
            options = component._session.get_session_options()  # type: ignore[attr-defined]
            assert options.graph_optimization_level == level
            assert options.enable_cpu_mem_arena is arena
    disabled = OnnxBackend(graph_optimization="disable").session_options("encoder")
    assert disabled.graph_optimization_level == levels.ORT_DISABLE_ALL  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="one of disable, basic, extended, all"):
        OnnxBackend(graph_optimization="max")
    with pytest.raises(SpeechportError, match="memory_arena is an ONNX Runtime setting"):
        speechport.load(bundle, "coreml", memory_arena=False)


def test_the_cli_passes_the_session_options(
    gigaam_onnx: Callable[[str], Path], vad_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``transcribe`` and every command with ``--threads`` (here ``vad``) take them."""
    from speechport.cli import main

    seen: list[OnnxBackend] = []
    real = OnnxBackend.__init__

    def spy(self: OnnxBackend, *args: object, **kwargs: object) -> None:
        real(self, *args, **kwargs)  # type: ignore[arg-type]
        seen.append(self)

    monkeypatch.setattr(OnnxBackend, "__init__", spy)
    clip = GIGAAM / gigaam_clip("v3_e2e_rnnt", 0).expected["audio"]
    bundle = gigaam_onnx("v3_e2e_rnnt")
    assert main(["transcribe", str(bundle), str(clip), "--ort-graph-opt", "extended"]) == 0
    assert main(["transcribe", str(bundle), str(clip), "--no-ort-arena"]) == 0
    assert main(["vad", str(vad_bundle), str(clip), "--ort-graph-opt", "disable"]) == 0
    assert [(b.graph_optimization, b.memory_arena) for b in seen] == [
        ("extended", True),
        ("all", False),
        ("disable", True),
    ]
