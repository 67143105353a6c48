"""Silero VAD converted from the installed package, against the package's own TorchScript
model: probabilities, segments (get_speech_timestamps), streaming events (VADIterator), the
256 ms noisy-OR, the three-stage split, and Silero's ONNX layout."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from speechport.conversion import convert
from speechport.errors import AudioError, CheckpointError
from speechport.export.coreml import package_io
from speechport.manifest import read_manifest
from speechport.parity.report import ParityReport, VadFileResult
from speechport.pipelines.vad import VadParams, VoiceActivityDetector, speech_segments
from speechport.runtime import load_bundle
from speechport.runtime.torch_backend import TorchBackend
from tests.helpers import copy_bundle

silero_vad = pytest.importorskip("silero_vad")

DATA = Path(__file__).parent / "data" / "vad"
SAMPLE = Path(__file__).parent.parent / "samples" / "speech_with_pauses.wav"
SR = 16000
CHUNK = 512
# Probability tolerance against the TorchScript model: the same float32 operations in a
# different order (an explicit LSTM cell, the STFT magnitude scaled by 2^-5). The largest
# difference seen was 2.8e-5 on these signals and 6.5e-5 over 500 random ones (speech,
# noise, tones), so 1e-4 keeps a margin of 1.5x over the worst case observed.
PROB_ATOL = 1e-4


def _read(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == SR
    return np.asarray(audio)


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    return {
        "words": _read(DATA / "words.wav"),
        "noisy": _read(DATA / "noisy.wav"),
        "sample": _read(SAMPLE),
        "silence": np.zeros(2 * SR, dtype=np.float32),
        "loud_noise": np.clip(rng.standard_normal(t.size), -1, 1).astype(np.float32),
        "square": np.sign(np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "short": _read(DATA / "words.wav")[SR : SR + 300],
    }


@pytest.fixture(scope="module")
def upstream() -> Any:
    return silero_vad.load_silero_vad()


def _upstream_probs(model: Any, audio: np.ndarray) -> np.ndarray:
    model.reset_states()
    out = []
    for start in range(0, audio.size, CHUNK):
        chunk = torch.from_numpy(audio[start : start + CHUNK])
        if chunk.numel() < CHUNK:
            chunk = torch.nn.functional.pad(chunk, (0, CHUNK - chunk.numel()))
        out.append(float(model(chunk, SR)))
    return np.array(out, dtype=np.float32)


@pytest.fixture(scope="module")
def detectors(vad_bundle: Path) -> dict[str, VoiceActivityDetector]:
    return {
        "onnx": VoiceActivityDetector(load_bundle(vad_bundle, "onnx")),
        "torch": VoiceActivityDetector(load_bundle(vad_bundle, TorchBackend())),
    }


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_probabilities_equal_the_torchscript_model(
    detectors: dict[str, VoiceActivityDetector], upstream: Any, backend: str
) -> None:
    for name, audio in _signals().items():
        want = _upstream_probs(upstream, audio)
        assert detectors[backend].paths == ["vad", "vad_long", "stages"]
        for path in detectors[backend].paths:
            got = detectors[backend].probabilities(audio, path=path)
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got, want, atol=PROB_ATOL, rtol=0, err_msg=name)
    assert _upstream_probs(upstream, _signals()["words"]).max() > 0.99  # real speech found


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_segments_equal_get_speech_timestamps(
    detectors: dict[str, VoiceActivityDetector], upstream: Any, backend: str
) -> None:
    for name, audio in _signals().items():
        want = silero_vad.get_speech_timestamps(torch.from_numpy(audio), upstream)
        got = detectors[backend].segments(audio)
        assert [(s.start, s.end) for s in got] == [(d["start"], d["end"]) for d in want], name
    words = json.loads((DATA / "words.json").read_text())["words"]
    found = detectors[backend].segments(_signals()["words"])
    assert len(found) == 6  # one per sentence of the synthesised recording
    assert len({w["sentence"] for w in words}) == 6


@settings(max_examples=300, deadline=None)
@given(
    probs=st.lists(st.floats(0.0, 1.0), min_size=0, max_size=300),
    threshold=st.floats(0.02, 0.95),
    neg_threshold=st.one_of(st.none(), st.floats(0.0, 0.9)),
    min_silence_at_max_ms=st.sampled_from([0, 98, 200]),
    min_speech_ms=st.sampled_from([0, 64, 250]),
    min_silence_ms=st.sampled_from([0, 50, 100, 300]),
    speech_pad_ms=st.sampled_from([0, 30, 100]),
    max_speech_s=st.sampled_from([math.inf, 0.5, 1.2, 3.0]),
    use_max_possible=st.booleans(),
    tail=st.integers(0, CHUNK - 1),
)
def test_segmentation_rules_equal_upstreams(
    probs: list[float],
    threshold: float,
    neg_threshold: float | None,
    min_silence_at_max_ms: int,
    min_speech_ms: int,
    min_silence_ms: int,
    speech_pad_ms: int,
    max_speech_s: float,
    use_max_possible: bool,
    tail: int,
) -> None:
    """Any probability sequence and parameters give upstream's segments exactly."""
    num_samples = max(0, len(probs) * CHUNK - tail)
    want = silero_vad.utils_vad.get_speech_timestamps_from_probs(
        list(probs),
        sampling_rate=SR,
        threshold=threshold,
        min_speech_duration_ms=min_speech_ms,
        max_speech_duration_s=max_speech_s,
        min_silence_duration_ms=min_silence_ms,
        speech_pad_ms=speech_pad_ms,
        use_max_poss_sil_at_max_speech=use_max_possible,
        audio_length_samples=num_samples,
        neg_threshold=neg_threshold,
        min_silence_at_max_speech=min_silence_at_max_ms,
    )
    params = VadParams(
        threshold=threshold,
        min_speech_ms=min_speech_ms,
        min_silence_ms=min_silence_ms,
        speech_pad_ms=speech_pad_ms,
        max_speech_s=max_speech_s,
        use_max_possible_silence_at_max_speech=use_max_possible,
        neg_threshold=neg_threshold,
        min_silence_at_max_speech_ms=min_silence_at_max_ms,
    )
    got = speech_segments(
        probs, num_samples=num_samples, chunk_samples=CHUNK, sample_rate=SR, params=params
    )
    assert [(s.start, s.end) for s in got] == [(d["start"], d["end"]) for d in want]


def test_256ms_model_is_the_noisy_or_of_upstreams_chunks(
    detectors: dict[str, VoiceActivityDetector], upstream: Any
) -> None:
    audio = _signals()["noisy"]
    want = _upstream_probs(upstream, audio)
    component = detectors["onnx"].bundle.component("vad_long")
    state = np.zeros((2, 1, 128), dtype=np.float32)
    padded = np.concatenate([np.zeros(64, np.float32), audio])
    for k in range(audio.size // 4096):
        prob, probs, state = component(padded[k * 4096 : k * 4096 + 4160][None], state)
        chunk = want[8 * k : 8 * k + 8]
        np.testing.assert_allclose(probs[0], chunk, atol=PROB_ATOL, rtol=0)
        assert prob[0, 0] == pytest.approx(1 - np.prod(1 - chunk), abs=PROB_ATOL)


def test_three_stages_equal_the_unified_model(detectors: dict[str, VoiceActivityDetector]) -> None:
    bundle = detectors["onnx"].bundle
    stft, enc, dec = (bundle.component(r) for r in ("vad_stft", "vad_encoder", "vad_decoder"))
    unified = bundle.component("vad")
    audio = _signals()["words"][: 40 * CHUNK]
    padded = np.concatenate([np.zeros(64, np.float32), audio])
    state_a = state_b = np.zeros((2, 1, 128), dtype=np.float32)
    for k in range(40):
        window = padded[k * CHUNK : k * CHUNK + 576][None]
        (magnitude,) = stft(window)
        (features,) = enc(magnitude)
        prob_a, state_a = dec(features, state_a)
        prob_b, state_b = unified(window, state_b)
        np.testing.assert_allclose(prob_a, prob_b, atol=1e-6)
        np.testing.assert_allclose(state_a, state_b, atol=1e-5)


@pytest.mark.parametrize(
    ("threshold", "min_silence_ms", "speech_pad_ms"),
    [(0.5, 100, 30), (0.3, 250, 0), (0.12, 50, 80)],
)
def test_stream_events_equal_vaditerator(
    detectors: dict[str, VoiceActivityDetector],
    upstream: Any,
    threshold: float,
    min_silence_ms: int,
    speech_pad_ms: int,
) -> None:
    params = detectors["onnx"].params(
        threshold=threshold, min_silence_ms=min_silence_ms, speech_pad_ms=speech_pad_ms
    )
    for name in ("words", "noisy", "sample"):
        audio = _signals()[name]
        iterator = silero_vad.VADIterator(
            upstream,
            threshold=threshold,
            sampling_rate=SR,
            min_silence_duration_ms=min_silence_ms,
            speech_pad_ms=speech_pad_ms,
        )
        want = []
        for start in range(0, audio.size - CHUNK + 1, CHUNK):
            event = iterator(torch.from_numpy(audio[start : start + CHUNK]))
            if event:
                ((kind, sample),) = event.items()
                want.append((kind, sample))
        stream = detectors["onnx"].stream(params)
        got = []
        rng = np.random.default_rng(1)
        position, whole = 0, audio.size // CHUNK * CHUNK
        while position < whole:  # pieces of random size, as a capture callback delivers them
            size = min(int(rng.integers(1, 3000)), whole - position)
            got += [(e.kind, e.sample) for e in stream.feed(audio[position : position + size])]
            position += size
        assert got == want, name
        # at threshold 0.12 the exit threshold is -0.03 (no floor, as in VADIterator): one
        # start, never an end; otherwise the sentences come and go
        assert len(want) == 1 if threshold < 0.15 else len(want) >= 4


def test_stream_flush_closes_at_the_true_end(detectors: dict[str, VoiceActivityDetector]) -> None:
    """A stream that ends in speech: flush closes the segment at the last sample fed, a
    partial last chunk counts with its real length, and the stream then starts afresh."""
    detector = detectors["onnx"]
    audio = _signals()["words"]
    first_word_end = json.loads((DATA / "words.json").read_text())["words"][0]["end"]
    cut = first_word_end - 1000 - 300  # inside the first word, not on a chunk boundary
    stream = detector.stream()
    events = stream.feed(audio[:cut]) + stream.flush()
    assert [e.kind for e in events] == ["start", "end"]
    assert events[-1].sample == cut
    whole = [(e.kind, e.sample) for e in stream.feed(audio[: 4 * SR])]
    again = detector.stream()
    assert whole == [(e.kind, e.sample) for e in again.feed(audio[: 4 * SR])]
    with pytest.raises(AudioError, match="mono"):
        stream.feed(np.zeros((1000, 2), dtype=np.float32))


def test_onnx_file_keeps_silero_layout(vad_bundle: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(vad_bundle / "silero_vad.onnx"))
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("input", "tensor(float)"),
        ("state", "tensor(float)"),
        ("sr", "tensor(int64)"),
    ]
    assert [o.name for o in session.get_outputs()] == ["output", "stateN"]
    onnx_asr = pytest.importorskip("onnx_asr")
    ours = onnx_asr.load_vad("silero", vad_bundle)
    theirs = onnx_asr.load_vad("silero", Path(silero_vad.__file__).parent / "data")
    audio = _signals()["noisy"]
    lengths = np.array([audio.size])

    def segments(vad: Any) -> list[tuple[int, int]]:
        (result,) = vad.segment_batch(audio[None], lengths, SR)
        return list(result)

    assert segments(ours) == segments(theirs)
    assert len(segments(ours)) >= 5


def test_core_ml_packages_match_manifest(vad_bundle: Path) -> None:
    manifest = read_manifest(vad_bundle)
    assert manifest.task == "vad" and manifest.vad is not None
    assert (manifest.vad.chunk_samples, manifest.vad.context_samples) == (512, 64)
    assert sorted(manifest.components) == [
        "vad",
        "vad_decoder",
        "vad_encoder",
        "vad_long",
        "vad_stft",
    ]
    for comp in manifest.components.values():
        inputs, outputs = package_io(vad_bundle / comp.files["coreml"].path)
        assert [(t.name, t.shape, t.dtype) for t in inputs] == [
            (t.name, t.shape, t.dtype) for t in comp.inputs
        ]
        assert [(t.name, t.shape, t.dtype) for t in outputs] == [
            (t.name, t.shape, t.dtype) for t in comp.outputs
        ]
    assert manifest.component("vad").input("audio").shape == (1, 576)
    assert manifest.component("vad_long").input("audio").shape == (1, 4160)


def test_weights_are_read_without_running_torchscript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("TorchScript code must not be loaded")

    monkeypatch.setattr(torch.jit, "load", refuse)
    manifest = convert("silero-vad", None, tmp_path / "b", formats="onnx", quiet=True)
    assert manifest.provenance["source_checkpoint"] == "silero_vad.jit"
    notes = " ".join(manifest.provenance["notes"])
    assert "silero_vad_16k.safetensors" in notes


def test_safetensors_source_and_bad_files(tmp_path: Path) -> None:
    data = Path(silero_vad.__file__).parent / "data"
    from speechport.families.silero_vad import SileroVadFamily

    loaded = SileroVadFamily().load(data / "silero_vad_16k.safetensors")
    assert loaded.variant == "silero_vad_16k"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="header is not JSON"):
        SileroVadFamily().load(bad)
    other = tmp_path / "other.ckpt"
    torch.save({"weight": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a Silero VAD TorchScript archive"):
        SileroVadFamily().load(other)


def test_bad_and_edge_audio(detectors: dict[str, VoiceActivityDetector], tmp_path: Path) -> None:
    detector = detectors["onnx"]
    assert detector.probabilities(np.zeros(100, np.float32)).shape == (1,)
    assert detector.probabilities(np.zeros(0, np.float32)).shape == (0,)
    assert detector.segments(np.zeros(3 * SR, np.float32)) == []
    with pytest.raises(AudioError, match="NaN"):
        detector.segments(np.array([0.0, np.nan] * 1000, dtype=np.float32))
    with pytest.raises(AudioError, match="NaN"):
        detector.stream().feed(np.array([np.inf] * 600, dtype=np.float32))


def test_cli_vad_outputs_and_other_sample_rates(
    vad_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from speechport.audio import resample
    from speechport.cli import main

    def run(*args: str | Path) -> str:
        assert main([str(a) for a in args]) == 0
        return capsys.readouterr().out

    text = run("vad", vad_bundle, SAMPLE)
    spans = [tuple(float(x) for x in line.split()) for line in text.splitlines()]
    assert len(spans) == 4 and all(a < b for a, b in spans)
    data = json.loads(run("vad", vad_bundle, SAMPLE, "--output", "json", "--probs"))
    assert [(s["start"], s["end"]) for s in data["segments"]] == spans
    assert len(data["probabilities"]) == math.ceil(_read(SAMPLE).size / CHUNK)
    assert run("vad", vad_bundle, SAMPLE, "--output", "srt").startswith("1\n00:00:00,514 --> ")
    events = run("vad", vad_bundle, SAMPLE, "--stream").split()
    assert events[0::2] == ["start", "end"] * 4
    assert [float(x) for x in events[1::2]] == [v for span in spans for v in span]
    strict = [
        tuple(float(x) for x in line.split())
        for line in run("vad", vad_bundle, SAMPLE, "--threshold", "0.95").splitlines()
    ]
    assert strict != spans
    assert sum(b - a for a, b in strict) < sum(b - a for a, b in spans)
    # Resampling changes the samples, so a boundary may move by a chunk (32 ms) or two: 0.07 s
    for rate in (8000, 44100):
        path = tmp_path / f"sample_{rate}.wav"
        sf.write(path, resample(_read(SAMPLE), SR, rate), rate)
        other = [
            tuple(float(x) for x in line.split())
            for line in run("vad", vad_bundle, path).splitlines()
        ]
        assert len(other) == len(spans)
        assert all(
            abs(a - c) <= 0.07 and abs(b - d) <= 0.07
            for (a, b), (c, d) in zip(spans, other, strict=True)
        )


def test_verify_passes_and_reports(
    vad_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from speechport.cli import main

    bundle = copy_bundle(vad_bundle, tmp_path / "silero")  # verify writes its report into it
    assert main(["verify", str(bundle), "--audio", str(SAMPLE), str(DATA / "noisy.wav")]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS onnx") == 2 and "segments equal" in out
    assert out.strip().endswith("verify: passed")
    report = ParityReport.load(bundle / "verify" / "parity.json")
    (first, _) = report.files
    assert isinstance(first, VadFileResult)
    assert set(first.forms) == {"vad", "vad_long", "stages"}
    assert "## Fidelity" in (bundle / "README.md").read_text()
    assert "SileroVad" in (bundle / "README.md").read_text()


def test_verify_catches_a_broken_onnx_file(
    vad_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each form of the model is checked: a bias shifted in silero_vad.onnx alone (the file
    streams and other runtimes use) fails verification."""
    import onnx
    from onnx import numpy_helper

    from speechport.cli import main

    broken = copy_bundle(vad_bundle, tmp_path / "broken")
    model = onnx.load(str(broken / "silero_vad.onnx"))
    bias = min((t for t in model.graph.initializer if tuple(t.dims) == (1,)), key=lambda t: t.name)
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 3.0, bias.name))
    onnx.save(model, str(broken / "silero_vad.onnx"))
    assert main(["verify", str(broken), "--audio", str(SAMPLE)]) == 1
    out = capsys.readouterr().out
    assert "FAIL onnx" in out and out.strip().endswith("verify: FAILED")
    (result,) = ParityReport.load(broken / "verify" / "parity.json").files
    assert isinstance(result, VadFileResult)
    forms = result.forms
    assert forms["vad"].max_abs_prob_diff > 0.1 and not forms["vad"].segments_equal
    assert forms["vad_long"].max_abs_prob_diff < PROB_ATOL
    assert main(["verify", str(broken), "--audio", str(SAMPLE), "--backends", ""]) == 2


def test_example_script_prints_the_segments(
    vad_bundle: Path, detectors: dict[str, VoiceActivityDetector]
) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(vad_bundle / "example_infer_onnx.py"), str(SAMPLE)],
        capture_output=True,
        text=True,
        check=True,
    )
    got = [tuple(float(x) for x in line.split()) for line in result.stdout.splitlines()]
    want = [s.seconds(SR) for s in detectors["onnx"].segments(_read(SAMPLE))]
    assert got == [(round(a, 3), round(b, 3)) for a, b in want]
    assert 'DEFAULT_BACKEND = "coreml"' in (vad_bundle / "example_infer.py").read_text()


def test_bundles_of_the_wrong_task_are_named(
    vad_bundle: Path, gigaam_onnx: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from speechport.cli import main

    asr = gigaam_onnx("v3_ctc")
    assert main(["vad", str(asr), str(SAMPLE)]) == 2
    err = capsys.readouterr().err
    assert f"{asr}: this bundle (gigaam v3_ctc) does 'asr'" in err
    assert "not voice activity detection" in err
    assert main(["transcribe", str(vad_bundle), str(SAMPLE)]) == 2
    assert "not speech recognition" in capsys.readouterr().err
    assert main(["vad", str(vad_bundle), str(SAMPLE), "--stream", "--output", "json"]) == 2
    assert "--stream prints start/end events" in capsys.readouterr().err
