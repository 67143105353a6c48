"""The decoder step and joint in numpy, read from the bundle's ONNX files.

What is asserted: the ONNX reader reads what the ``onnx`` package reads; the fixtures'
LSTM step and joint are recognised and give ONNX Runtime's outputs; decoding with them (the
joint's encoder projection once per window) gives exactly ONNX Runtime's tokens and times,
and upstream's tokens, on every clip; ``steps="onnx"`` keeps ONNX Runtime, and a kernel
that does not agree with ONNX Runtime on its probes is not used; the LSTM step with the
joint's decoder projection fused into its products gives the projection of its outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from speechport.errors import BackendError
from speechport.manifest import read_manifest
from speechport.pipelines.transcriber import Transcriber, predictor_for
from speechport.runtime import load_bundle
from speechport.runtime.base import LoadedBundle, joint_projections
from speechport.runtime.blas import blas_threads, one_blas_thread
from speechport.runtime.numpy_steps import (
    NumpyJoint,
    NumpyLstmStep,
    ProjectedLstmStep,
    step_seconds,
)
from speechport.runtime.onnx_backend import OnnxBackend, OnnxComponent
from speechport.runtime.onnx_graph import read_graph
from tests.helpers import CLIPS, BundleCache, gigaam_clip

RNNT = ("v3_rnnt", "v3_e2e_rnnt")


def test_the_graph_reader_reads_what_onnx_reads(gigaam_onnx: Callable[[str], Path]) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    bundle = gigaam_onnx("v3_e2e_rnnt")
    for path in sorted(bundle.glob("*.onnx")):
        graph, model = read_graph(path), onnx.load(str(path))
        assert [(n.op_type, n.inputs, n.outputs) for n in graph.nodes] == [
            (n.op_type, list(n.input), list(n.output)) for n in model.graph.node
        ]
        assert graph.inputs == [i.name for i in model.graph.input]
        assert graph.outputs == [o.name for o in model.graph.output]
        assert set(graph.initializers) == {i.name for i in model.graph.initializer}
        for tensor in model.graph.initializer:
            want = numpy_helper.to_array(tensor)
            got = graph.initializers[tensor.name]
            assert got.dtype == want.dtype and np.array_equal(got, want), tensor.name
        for node, proto in zip(graph.nodes, model.graph.node, strict=True):
            for attribute in proto.attribute:
                value = onnx.helper.get_attribute_value(attribute)
                if isinstance(value, int):
                    assert node.ints[attribute.name] == [value]
                elif isinstance(value, list) and value and isinstance(value[0], int):
                    assert node.ints[attribute.name] == value


@pytest.mark.parametrize("variant", RNNT)
def test_the_step_components_run_in_numpy_with_onnx_runtime_outputs(
    gigaam_onnx: Callable[[str], Path], variant: str
) -> None:
    bundle = gigaam_onnx(variant)
    fast = load_bundle(bundle, OnnxBackend(steps="numpy"))
    slow = load_bundle(bundle, OnnxBackend(steps="onnx"))
    assert isinstance(fast.of_kind("decoder_step"), NumpyLstmStep)
    assert isinstance(fast.of_kind("joint"), NumpyJoint)
    assert isinstance(fast.of_kind("encoder"), OnnxComponent)
    assert all(isinstance(c, OnnxComponent) for c in slow.components.values())
    # A rollout of tokens through both decoders, each carrying its own state.
    predict_fast, state_fast = predictor_for(fast.of_kind("decoder_step"))
    predict_slow, state_slow = predictor_for(slow.of_kind("decoder_step"))
    rng = np.random.default_rng(0)
    vocabulary = read_manifest(bundle).decoding.blank_id  # type: ignore[union-attr]
    enc = rng.standard_normal((1, fast.of_kind("joint").spec.inputs[0].shape[-1]))
    # Within float32 reordering: the embedding folded into the input weights at load time,
    # numpy's exp and tanh against ONNX Runtime's, over a 30-step rollout (the cell state
    # grows past 3, where one float32 step is 2.4e-7).
    for token in [vocabulary, *rng.integers(0, vocabulary, size=30)]:
        dec_fast, state_fast = predict_fast(int(token), state_fast)
        dec_slow, state_slow = predict_slow(int(token), state_slow)
        np.testing.assert_allclose(dec_fast, dec_slow, rtol=1e-5, atol=1e-6)
        for a, b in zip(state_fast, state_slow, strict=True):
            np.testing.assert_allclose(a.reshape(-1), b.reshape(-1), rtol=1e-5, atol=1e-6)
        (log_probs_fast,) = fast.of_kind("joint")(enc.astype(np.float32), dec_fast[None, :])
        (log_probs_slow,) = slow.of_kind("joint")(enc.astype(np.float32), dec_slow[None, :])
        assert log_probs_fast.shape == log_probs_slow.shape
        np.testing.assert_allclose(log_probs_fast, log_probs_slow, rtol=1e-5, atol=1e-6)
    # In parts: the raw logits, a constant away from the log-probabilities.
    projections = joint_projections(fast.of_kind("joint"))
    assert projections is not None
    scores = projections.scores(
        projections.project_encoder(enc.astype(np.float32))[0],
        projections.project_decoder(dec_fast),
    )
    shift = scores - log_probs_fast.reshape(-1)
    assert np.ptp(shift) < 1e-4 and int(scores.argmax()) == int(log_probs_slow.argmax())


def _assert_fused_projection_matches(bundle: Path, *, exact_states: bool) -> None:
    """A 40-token rollout through the numpy predictor with the joint's decoder projection
    fused in, and through the plain predictor with the projection after: the same projected
    outputs within float32 reordering, and the same states (bit for bit with one layer; a
    top layer above another adds its input and recurrent products apart, one rounding
    more)."""
    loaded = load_bundle(bundle, OnnxBackend(steps="numpy"))
    decoder, projections = (
        loaded.of_kind("decoder_step"),
        joint_projections(loaded.of_kind("joint")),
    )
    assert isinstance(decoder, NumpyLstmStep) and projections is not None
    fused, state_fused = predictor_for(decoder, projections)
    assert isinstance(fused, ProjectedLstmStep)
    plain, state_plain = decoder.predictor()
    rng = np.random.default_rng(1)
    with one_blas_thread():
        for token in rng.integers(0, decoder.vocabulary, size=40):
            got, state_fused = fused(int(token), state_fused)
            dec, state_plain = plain(int(token), state_plain)
            want = projections.project_decoder(dec)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
            for a, b in zip(state_fused[:2], state_plain, strict=True):
                if exact_states:
                    np.testing.assert_array_equal(a, b)
                else:
                    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="does not fit a predictor"):
        decoder.predictor(output=(np.zeros((3, 4), np.float32), np.zeros(4, np.float32)))


@pytest.mark.parametrize("variant", RNNT)
def test_the_joint_projection_fused_into_the_lstm_step_gives_the_projected_outputs(
    gigaam_onnx: Callable[[str], Path], variant: str
) -> None:
    _assert_fused_projection_matches(gigaam_onnx(variant), exact_states=True)


def test_the_fused_projection_of_a_two_layer_predictor(bundle_cache: BundleCache) -> None:
    nemo = Path(__file__).parent / "data" / "nemo"
    bundle = bundle_cache.get("parakeet", nemo / "parakeet_tdt.nemo", "parakeet_tdt")
    assert load_bundle(bundle, OnnxBackend(steps="numpy")).of_kind("decoder_step").layers == 2  # type: ignore[attr-defined]
    _assert_fused_projection_matches(bundle, exact_states=False)


@pytest.mark.parametrize("variant", RNNT)
def test_numpy_steps_decode_onnx_runtimes_tokens_on_every_clip(
    gigaam_onnx: Callable[[str], Path], variant: str
) -> None:
    bundle = gigaam_onnx(variant)
    fast = Transcriber(load_bundle(bundle, OnnxBackend(steps="numpy")))
    slow = Transcriber(load_bundle(bundle, OnnxBackend(steps="onnx")))
    for index in CLIPS:
        clip = gigaam_clip(variant, index)
        want, got = slow.transcribe(clip.audio), fast.transcribe(clip.audio)
        assert got.token_ids == want.token_ids == clip.expected["token_ids"]
        assert [t.start for t in got.tokens] == [t.start for t in want.tokens]


def test_steps_onnx_and_kernels_that_disagree_stay_on_onnx_runtime(
    gigaam_onnx: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = gigaam_onnx("v3_e2e_rnnt")
    with pytest.raises(BackendError, match="steps must be one of auto, numpy, onnx"):
        OnnxBackend(steps="fast")
    # auto: a kernel timed faster than the ONNX Runtime call is used (timings injected: which
    # engine wins on a fixture this small depends on the machine's load)
    monkeypatch.setattr("speechport.runtime.numpy_steps.step_seconds", lambda k, c: (1.0, 2.0))
    faster = load_bundle(bundle, OnnxBackend(steps="auto"))
    assert isinstance(faster.of_kind("decoder_step"), NumpyLstmStep)
    assert isinstance(faster.of_kind("joint"), NumpyJoint)
    assert isinstance(faster.of_kind("encoder"), OnnxComponent)
    original = OnnxComponent.__call__

    def other_joint(self: OnnxComponent, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        outputs = original(self, *inputs)
        return (outputs[0] * 1.01,) if self.spec.kind == "joint" else outputs

    monkeypatch.setattr(OnnxComponent, "__call__", other_joint)
    loaded = load_bundle(bundle, OnnxBackend(steps="numpy"))
    assert isinstance(loaded.of_kind("joint"), OnnxComponent)  # its probe disagreed
    assert isinstance(loaded.of_kind("decoder_step"), NumpyLstmStep)
    # auto: a kernel timed slower than the ONNX Runtime call is not used
    monkeypatch.setattr("speechport.runtime.numpy_steps.step_seconds", lambda k, c: (2.0, 1.0))
    slower = load_bundle(bundle, OnnxBackend(steps="auto"))
    assert all(isinstance(c, OnnxComponent) for c in slower.components.values())


def test_a_step_is_timed_with_each_engine_on_the_work_the_loop_does(
    gigaam_onnx: Callable[[str], Path],
) -> None:
    bundle = gigaam_onnx("v3_e2e_rnnt")
    slow = load_bundle(bundle, OnnxBackend(steps="onnx"))
    fast = load_bundle(bundle, OnnxBackend(steps="numpy"))
    for kind in ("decoder_step", "joint"):
        kernel, component = fast.of_kind(kind), slow.of_kind(kind)
        assert isinstance(kernel, (NumpyLstmStep, NumpyJoint))
        numpy_seconds, onnx_seconds = step_seconds(kernel, component, calls=4, rounds=3)
        # both engines timed on a step of this size (which is faster is the benchmark's
        # business: on tiny weights it depends on the machine's load)
        assert 0 < numpy_seconds < 0.1 and 0 < onnx_seconds < 0.1, kind


def test_numpy_kernels_run_blas_on_one_thread_and_restore_it() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        with one_blas_thread():
            seen = blas_threads()
        after = blas_threads()
    assert before and set(before) == {2}
    assert set(seen) == {1} and after == before


@pytest.mark.parametrize("variant", ["parakeet_tdt", "parakeet_rnnt"])
def test_parakeet_steps_in_numpy_give_nemos_tokens_frames_and_durations(
    bundle_cache: BundleCache, variant: str
) -> None:
    nemo = Path(__file__).parent / "data" / "nemo"
    bundle = bundle_cache.get("parakeet", nemo / f"{variant}.nemo", variant)
    fast = load_bundle(bundle, OnnxBackend(steps="numpy"))
    assert isinstance(fast.of_kind("joint"), NumpyJoint)  # tokens + blank (+ durations)
    decoder = fast.of_kind("decoder_step")  # NeMo's layout: two LSTM layers, states sliced
    assert isinstance(decoder, NumpyLstmStep) and decoder.layers == 2
    slow = load_bundle(bundle, OnnxBackend(steps="onnx"))
    clips, expected = _nemo_clips(nemo, variant)
    _assert_same_transcripts(fast, slow, clips, expected)


def test_parakeet_tdt_of_one_lstm_layer_runs_both_steps_in_numpy(tmp_path: Path) -> None:
    """The 118M Parakeet-TDT architecture's graphs (one LSTM layer), shrunk, random weights
    with blank raised as in a real model: the same tokens, frames and durations either way."""
    from speechport.bench.compare_models import build_bundle
    from speechport.bench.decode_loop import synthetic_speech

    bundle = build_bundle("parakeet-tdt", "realistic", tmp_path, size="tiny")
    fast = load_bundle(bundle, OnnxBackend(steps="numpy"))
    assert isinstance(fast.of_kind("decoder_step"), NumpyLstmStep)
    assert isinstance(fast.of_kind("joint"), NumpyJoint)
    slow = load_bundle(bundle, OnnxBackend(steps="onnx"))
    clips = [synthetic_speech(s, seed=s) for s in (3, 20)]  # one window, then two
    tokens = _assert_same_transcripts(fast, slow, clips)
    assert tokens > 10


def _nemo_clips(nemo: Path, variant: str) -> tuple[list[np.ndarray], list[list[int]]]:
    """The fixture's clips and NeMo's token ids on each."""
    import json

    import soundfile as sf

    clips = json.loads((nemo / "index.json").read_text())["variants"][variant]["clips"]
    audio = [sf.read(nemo / entry["audio"], dtype="float32")[0] for entry in clips]
    return audio, [entry["token_ids"] for entry in clips]


def _assert_same_transcripts(
    fast: LoadedBundle,
    slow: LoadedBundle,
    clips: list[np.ndarray],
    expected: list[list[int]] | None = None,
) -> int:
    """Both bundles transcribe every clip to the same tokens (``expected`` when given),
    frames and durations; returns how many tokens there were."""
    numpy_run, onnx_run = Transcriber(fast), Transcriber(slow)
    tokens = 0
    for index, audio in enumerate(clips):
        got, want = numpy_run.transcribe(audio), onnx_run.transcribe(audio)
        assert got.token_ids == want.token_ids
        if expected is not None:
            assert got.token_ids == expected[index]
        assert [s.frames for s in got.segments] == [s.frames for s in want.segments]
        assert [s.durations for s in got.segments] == [s.durations for s in want.segments]
        tokens += len(got.token_ids)
    return tokens
