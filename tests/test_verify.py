"""``verify`` on ASR bundles: per-component figures, the gate, latency, plots, card, and
``convert --verify``."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from speechport.errors import AudioError
from speechport.parity.components import _joint_pairs, _normalized
from speechport.parity.report import AsrFileResult, ParityReport
from speechport.parity.stats import compare, merge, topk_agreement
from tests.helpers import GIGAAM, checkpoint, copy_bundle, gigaam_index, tokenizer_for

AUDIO = GIGAAM / "audio"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_compare_figures_on_known_values() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    got = ref.copy()
    got[1, 1] = 2.5
    s = compare(ref, got, frames=True)
    assert s.max_abs == pytest.approx(0.5)
    assert s.max_rel == pytest.approx(0.25)
    assert s.mean_abs == pytest.approx(0.5 / 6)
    assert s.cosine == pytest.approx(31.0 / np.sqrt(30.0 * 32.25))
    assert s.l2_per_frame == pytest.approx([0.0, 0.25, 0.0])
    assert s.worst_frame == 1 and not s.exact
    assert compare(np.array([3], np.int32), np.array([3], np.int32)).exact
    both = merge([s, compare(ref, ref, frames=True)])
    assert both.elements == 12 and both.max_abs == pytest.approx(0.5) and not both.exact
    assert both.l2_per_frame == pytest.approx([0.0, 0.25, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="shapes differ"):
        compare(ref, ref[:2])


def test_topk_agreement() -> None:
    ref = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    assert topk_agreement(ref, ref, 3) == (True, 1.0)
    swapped = np.array([4.0, 5.0, 0.0, 2.0, 1.0, 3.0])  # top-3 {1, 0, 5} vs {0, 1, 2}
    agree, share = topk_agreement(ref, swapped, 3)
    assert not agree and share == pytest.approx(2 / 3)


def test_joint_pairs_are_the_calls_of_greedy_decoding() -> None:
    # Two tokens on frame 1, one on frame 3, four frames: one call per emission plus the
    # blank that ends each frame.
    assert _joint_pairs([1, 1, 3], 4) == [(0, 0), (1, 0), (1, 1), (1, 2), (2, 2), (3, 2), (3, 3)]
    assert _joint_pairs([], 2) == [(0, 0), (1, 0)]


def test_normalized_joint_outputs_ignore_how_they_are_normalised() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=12)
    tokens, durations = logits[:7], logits[7:]
    as_log_probs = np.concatenate(
        [tokens - np.log(np.exp(tokens).sum()), durations - np.log(np.exp(durations).sum())]
    )
    assert _normalized(logits, 5) == pytest.approx(_normalized(as_log_probs, 5), abs=1e-12)
    assert _normalized(logits, 5) == pytest.approx(as_log_probs, abs=1e-12)
    # Without durations the whole vector is one distribution: not the same as two.
    assert not np.allclose(_normalized(logits, 0), as_log_probs)


@pytest.fixture(scope="module")
def rnnt_report(
    gigaam_bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ParityReport, str]:
    from speechport.cli import main

    bundle = copy_bundle(gigaam_bundles["v3_e2e_rnnt"], tmp_path_factory.mktemp("verify") / "rnnt")
    argv = ["verify", str(bundle), "--audio", str(AUDIO / "clip0.wav"), str(AUDIO / "clip3.wav")]
    code = main([*argv, "--latency-runs", "3"])
    assert code == 0
    report = ParityReport.load(bundle / "verify" / "parity.json")
    return bundle, report, (bundle / "README.md").read_text(encoding="utf-8")


def test_verify_reports_every_component(rnnt_report: tuple[Path, ParityReport, str]) -> None:
    _, report, _ = rnnt_report
    assert report.passed and report.task == "asr"
    assert [Path(f.audio).name for f in report.files] == ["clip0.wav", "clip3.wav"]
    index = gigaam_index()["variants"]["v3_e2e_rnnt"]["clips"]
    for entry, clip in zip(report.components, (index[0], index[3]), strict=True):
        encoder, decoder, joint = entry.components
        assert [c.role for c in entry.components] == ["encoder", "decoder", "joint"]
        assert [c.kind for c in entry.components] == ["encoder", "decoder_step", "joint"]
        # The length is exact; encodings within float32 reordering of upstream's figures.
        assert encoder.outputs["encoded_len"].exact
        assert encoder.outputs["encoded"].max_abs < 1e-4
        assert encoder.outputs["encoded"].cosine > 0.999999
        frames = len(encoder.times)
        assert len(encoder.outputs["encoded"].l2_per_frame) == frames
        # The decoder is rolled out along the reference's tokens: blank, then every token.
        tokens = len(clip["token_ids"])
        assert decoder.calls == tokens + 1
        assert set(decoder.outputs) == {"dec_out", "h_out", "c_out"}
        # The joint is called once per frame plus once per token, and agrees on every call.
        assert joint.calls == frames + tokens == len(joint.top1)
        assert joint.top1_agreement == 1.0
        assert joint.outputs["logits"].max_abs < 1e-4


def test_verify_reports_latency_host_versions_and_plots(
    rnnt_report: tuple[Path, ParityReport, str],
) -> None:
    bundle, report, card = rnnt_report
    for backend in ("torch", "onnx"):
        per = report.latency[backend]
        assert set(per) == {"Encoder", "DecoderStep", "JointStep"}
        for figures in per.values():
            assert figures.runs == 3
            assert 0 < figures.median_ms <= figures.p90_ms
    assert report.rtfx["onnx"] > 0
    assert report.host["cpus"] >= 1 and report.versions["onnxruntime"]
    assert report.plots == [
        "verify/encoder_l2.png",
        "verify/joint_topk.png",
        "verify/latency.png",
    ]
    for plot in report.plots:
        assert (bundle / plot).read_bytes()[:8] == PNG_MAGIC
        assert f"]({plot})" in card
    assert "| Encoder | `encoded_len` | onnx |" in card
    assert "## Latency" in card and "| JointStep | onnx |" in card


def test_ctc_bundle_compares_the_per_frame_distribution(
    gigaam_bundles: dict[str, Path], tmp_path: Path
) -> None:
    from speechport.parity.run import verify_bundle

    report = verify_bundle(
        gigaam_bundles["v3_ctc"], [AUDIO / "clip1.wav"], backends=["onnx"], latency_runs=1
    )
    assert report.passed
    (encoder,) = report.components[0].components
    assert encoder.top1_agreement == 1.0
    assert len(encoder.top1) == len(encoder.times) > 50
    assert encoder.outputs["log_probs"].max_abs < 1e-4


def test_a_wrong_length_fails_the_gate_even_with_equal_tokens(
    gigaam_bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An encoder whose length is one short still decodes the same tokens on a clip with
    trailing silence: verify fails it on the length, and names the window."""
    from speechport.parity.run import verify_bundle
    from speechport.runtime.onnx_backend import OnnxComponent

    original = OnnxComponent.__call__

    def short_length(self: OnnxComponent, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        outputs = original(self, *inputs)
        if self.spec.role == "encoder":
            return (outputs[0], outputs[1] - 1)
        return outputs

    monkeypatch.setattr(OnnxComponent, "__call__", short_length)
    report = verify_bundle(
        gigaam_bundles["v3_e2e_rnnt"], [AUDIO / "clip0.wav"], backends=["onnx"], latency_runs=1
    )
    assert not report.passed
    (result,) = report.files
    assert isinstance(result, AsrFileResult) and result.token_exact
    (failure,) = result.failures
    assert "Encoder encoded_len is" in failure and "window at 0.00 s" in failure


def test_a_cached_reference_gives_torch_figures_and_runs_torch_once(
    gigaam_onnx: Callable[[str], Path],
) -> None:
    """verify with a ``ReferenceCache`` reports what it reports with torch itself; a second
    run on the same audio (in a copy, as a worker process gets it) calls torch no more."""
    from speechport.parity.reference import ReferenceCache
    from speechport.parity.run import verify_bundle

    bundle = gigaam_onnx("v3_rnnt")
    audio = [AUDIO / "clip0.wav", AUDIO / "clip3.wav"]

    def run(**options: Any) -> dict[str, object]:
        report = verify_bundle(bundle, audio, backends=["onnx"], latency_runs=1, **options)
        figures = report.to_dict()
        for timed in ("latency", "rtfx", "reference_engine"):
            figures.pop(timed)
        return figures

    plain = run(time_reference=False)
    cache = ReferenceCache(bundle)
    assert run(reference=cache) == plain
    computed = cache.misses
    assert computed > 0 and set(cache.outputs) == {"encoder", "decoder", "joint"}
    copy = pickle.loads(pickle.dumps(cache))
    assert copy._reference is None  # the torch model does not travel
    assert run(reference=copy) == plain
    assert copy.misses == computed and copy._reference is None
    # every call of the second run was answered from memory
    assert copy.hits - cache.hits == cache.hits + cache.misses


def test_verify_can_stop_at_the_first_failing_file(
    gigaam_onnx: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from speechport.parity.run import verify_bundle
    from speechport.runtime.onnx_backend import OnnxComponent

    original = OnnxComponent.__call__

    def short_length(self: OnnxComponent, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        outputs = original(self, *inputs)
        return (outputs[0], outputs[1] - 1) if self.spec.role == "encoder" else outputs

    monkeypatch.setattr(OnnxComponent, "__call__", short_length)
    audio = [AUDIO / "clip0.wav", AUDIO / "clip1.wav", AUDIO / "clip3.wav"]
    bundle = gigaam_onnx("v3_rnnt")
    report = verify_bundle(bundle, audio, backends=["onnx"], latency_runs=1, stop_at_failure=True)
    assert report.stopped == "gate failed at file 1/3"
    assert [Path(f.audio).name for f in report.files] == ["clip0.wav"]
    assert not report.passed
    full = verify_bundle(bundle, audio, backends=["onnx"], latency_runs=1)
    assert full.stopped is None and len(full.files) == 3


@pytest.mark.slow
def test_convert_verify_keeps_nothing_when_the_gate_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from speechport.cli import main
    from speechport.runtime.onnx_backend import OnnxComponent

    original = OnnxComponent.__call__

    def noisy_joint(self: OnnxComponent, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
        outputs = original(self, *inputs)
        if self.spec.role == "joint":  # a joint that prefers token 5 everywhere
            logits = outputs[0].copy()
            logits[..., 5] += 100.0
            return (logits,)
        return outputs

    monkeypatch.setattr(OnnxComponent, "__call__", noisy_joint)
    out = tmp_path / "bundle"
    argv = [
        "convert", "gigaam", "--checkpoint", str(checkpoint("v3_e2e_rnnt")),
        "--tokenizer", str(tokenizer_for("v3_e2e_rnnt")), "--out", str(out), "--quiet",
        "--format", "onnx", "--verify", str(AUDIO / "clip0.wav"),
    ]  # fmt: skip
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "FAIL onnx" in captured.out and "tokens differ" in captured.out
    assert "failed its parity gate, so it was not written" in captured.err
    assert "CER" in captured.err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_convert_verify_writes_the_report_into_a_passing_bundle(tmp_path: Path) -> None:
    from speechport.cli import main

    out = tmp_path / "bundle"
    argv = [
        "convert", "gigaam", "--checkpoint", str(checkpoint("v3_ctc")), "--out", str(out),
        "--quiet", "--format", "onnx", "--verify", str(AUDIO / "clip2.wav"),
    ]  # fmt: skip
    assert main(argv) == 0
    report = ParityReport.load(out / "verify" / "parity.json")
    assert report.passed and report.bundle == str(out)
    assert "## Fidelity" in (out / "README.md").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_audio_directories_are_expanded(tmp_path: Path) -> None:
    from speechport.audio import collect_audio

    files = collect_audio([AUDIO])
    assert [p.name for p in files] == ["clip0.wav", "clip1.wav", "clip2.wav", "clip3.wav"]
    assert collect_audio([AUDIO / "clip1.wav", AUDIO])[0].name == "clip1.wav"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(AudioError, match="no audio files in this directory"):
        collect_audio([tmp_path])
    with pytest.raises(AudioError, match="no such audio file"):
        collect_audio([tmp_path / "missing.wav"])
