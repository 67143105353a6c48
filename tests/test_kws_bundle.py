"""A zipformer-kws bundle end to end, on tests/data/kws (icefall's model, audio and the
detections of icefall's keywords_search and sherpa-onnx's KeywordSpotter).

- the ONNX files keep icefall's streaming export layout, and their encoder reproduces
  icefall's streaming outputs and states;
- detections from the audio (our fbank, encoder, search) equal upstream's exactly, for both
  search semantics and both boost/threshold settings, from the ONNX bundle and from the
  torch reference;
- sherpa-onnx loads the bundle's ONNX files unchanged and finds what ``spot`` finds;
- any packet size gives the same detections; bad keyword lists are clear errors.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import speechport
from speechport.cli import main
from speechport.decoding.context_graph import KeywordError
from speechport.errors import CheckpointError
from speechport.parity.report import KwsFileResult
from tests import kws_data

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

SETTINGS = [pytest.param(s, id=kws_data.setting_key(s)) for s in kws_data.settings()]


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from speechport.conversion import convert

    out = tmp_path_factory.mktemp("kws") / "bundle"
    convert("zipformer-kws", kws_data.KWS / "pretrained.pt", out, formats="onnx", quiet=True)
    return out


def _audio(clip: str) -> np.ndarray:
    samples, rate = sf.read(kws_data.KWS / "audio" / f"{clip}.wav", dtype="float32")
    assert rate == 16000
    return np.asarray(samples, dtype=np.float32)


def _spot(model: Any, clip: str, semantics: str, setting: dict[str, Any]) -> list[Any]:
    keywords: Any = (
        kws_data.raw_phrases() if semantics == "icefall" else kws_data.KWS / "keywords.txt"
    )
    session = model.spotter(
        keywords,
        boost=setting["keywords_score"],
        threshold=setting["keywords_threshold"],
        search=semantics,
    )
    detections = session.feed(_audio(clip)) + session.finish()
    return [(d.keyword, list(d.token_ids), list(d.frames)) for d in detections]


def _expected(clip: str, semantics: str, setting: dict[str, Any]) -> list[Any]:
    if semantics == "icefall":
        return kws_data.expected_icefall(clip, setting)
    return kws_data.expected_sherpa(clip, setting)


# --------------------------------------------------------------------------- ONNX layout


def test_onnx_files_keep_icefall_streaming_layout(onnx_bundle: Path) -> None:
    for part, upstream in kws_data.ONNX_NAMES.items():
        ours = onnx.load(str(next(onnx_bundle.glob(f"{part}-*.onnx"))))
        theirs = onnx.load(str(upstream))

        def io(model: Any) -> list[Any]:
            return [
                (v.name, v.type.tensor_type.elem_type, len(v.type.tensor_type.shape.dim))
                for v in (*model.graph.input, *model.graph.output)
            ]

        assert io(ours) == io(theirs), part
        meta = {p.key: p.value for p in ours.metadata_props}
        upstream_meta = {p.key: p.value for p in theirs.metadata_props}
        upstream_meta.pop("comment", None)
        assert {k: meta.get(k) for k in upstream_meta} == upstream_meta, part
    assert (onnx_bundle / "tokens.txt").read_text(encoding="utf-8") == (
        kws_data.KWS / "tokens.txt"
    ).read_text(encoding="utf-8")


def test_onnx_encoder_equals_icefall_streaming(onnx_bundle: Path) -> None:
    session = ort.InferenceSession(str(next(onnx_bundle.glob("encoder-*.onnx"))))
    names = [i.name for i in session.get_inputs()]
    states = {
        i.name: np.zeros(
            [d if isinstance(d, int) else 1 for d in i.shape],
            np.int64 if "int64" in i.type else np.float32,
        )
        for i in session.get_inputs()[1:]
    }
    arrays = kws_data.clip_arrays("clip1_hello_computer")
    fbank, expected = arrays["fbank"], arrays["encoder_out_proj_chunks"]
    for chunk in range(len(expected)):
        x = fbank[None, 32 * chunk : 32 * chunk + 45]
        outputs = session.run(None, {"x": x, **states})
        states = dict(zip(names[1:], outputs[1:], strict=True))
        assert np.abs(outputs[0][0] - expected[chunk]).max() < 2e-5
        if chunk < 2:
            for name, value in states.items():
                want = arrays[f"states_after_chunk{chunk}/{name}"]
                scale = max(1.0, float(np.abs(want).max()))
                assert np.abs(value - want).max() <= 2e-6 * scale + 1e-5, name


# --------------------------------------------------------------------------- detections


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("semantics", ["sherpa", "icefall"])
def test_onnx_bundle_detections_equal_upstream(
    onnx_bundle: Path, semantics: str, setting: dict[str, Any]
) -> None:
    model = speechport.load(onnx_bundle, "onnx")
    for clip in kws_data.clips():
        assert _spot(model, clip, semantics, setting) == _expected(clip, semantics, setting), clip


@pytest.mark.parametrize("semantics", ["sherpa", "icefall"])
def test_reference_detections_equal_upstream(onnx_bundle: Path, semantics: str) -> None:
    model = speechport.load(onnx_bundle, "torch")
    for clip in ("clip2_turn_on_the_light", "clip6_no_keyword_train"):
        for setting in kws_data.settings():
            got = _spot(model, clip, semantics, setting)
            assert got == _expected(clip, semantics, setting), (clip, setting)


def test_sherpa_onnx_loads_the_bundle_and_agrees_with_spot(onnx_bundle: Path) -> None:
    sherpa_onnx = pytest.importorskip("sherpa_onnx")
    model = speechport.load(onnx_bundle, "onnx")
    files = {p: str(next(onnx_bundle.glob(f"{p}-*.onnx"))) for p in kws_data.ONNX_NAMES}
    keywords = kws_data.KWS / "keywords.txt"
    for clip in ("clip2_turn_on_the_light", "clip6_no_keyword_train", "clip8_long"):
        for setting in kws_data.settings():
            spotter = sherpa_onnx.KeywordSpotter(
                tokens=str(onnx_bundle / "tokens.txt"),
                encoder=files["encoder"],
                decoder=files["decoder"],
                joiner=files["joiner"],
                keywords_file=str(keywords),
                num_threads=1,
                max_active_paths=4,
                keywords_score=setting["keywords_score"],
                keywords_threshold=setting["keywords_threshold"],
                num_trailing_blanks=1,
            )
            # a result reads once per decoded chunk (a second read is hidden as a
            # duplicate), so the keywords and their frames come from two identical runs
            words = _sherpa_run(spotter, clip, lambda s, st: s.get_result(st))
            times = _sherpa_run(spotter, clip, lambda s, st: s.timestamps(st))
            theirs = [
                (word, [round(t / 0.04) + offset for t in stamps])
                for (word, _), (stamps, offset) in zip(words, times, strict=True)
            ]
            session = model.spotter(
                keywords,
                boost=setting["keywords_score"],
                threshold=setting["keywords_threshold"],
                search="sherpa",
            )
            ours = session.feed(_audio(clip)) + session.finish()
            assert theirs, clip  # the comparison saw detections
            assert [(d.keyword, list(d.frames)) for d in ours] == theirs, (clip, setting)


def _sherpa_run(spotter: Any, clip: str, read: Any) -> list[tuple[Any, int]]:
    """sherpa-onnx as its examples run it: decode while ready, read the result once, reset
    the stream after each detection; what ``read`` returned and the frames decoded before
    the stream's last reset (sherpa's times restart at each reset)."""
    stream = spotter.create_stream()
    stream.accept_waveform(16000, _audio(clip))
    stream.accept_waveform(16000, np.zeros(int(0.66 * 16000), np.float32))
    stream.input_finished()
    found, chunks, offset = [], 0, 0
    while spotter.is_ready(stream):
        spotter.decode_stream(stream)
        chunks += 1
        if value := read(spotter, stream):
            found.append((value, offset))
            spotter.reset_stream(stream)
            offset = 8 * chunks
    return found


@pytest.mark.parametrize("semantics", ["sherpa", "icefall"])
def test_any_packet_size_gives_the_same_detections(onnx_bundle: Path, semantics: str) -> None:
    model = speechport.load(onnx_bundle, "onnx")
    setting = kws_data.settings()[1]
    for clip, packets in (("clip2_turn_on_the_light", (1, 160)), ("clip8_long", (517, 16000))):
        samples = _audio(clip)
        whole = _spot(model, clip, semantics, setting)
        assert whole == _expected(clip, semantics, setting)
        for packet in packets:
            session = model.spotter(
                kws_data.raw_phrases(),
                boost=setting["keywords_score"],
                threshold=setting["keywords_threshold"],
                search=semantics,
            )
            found = []
            for start in range(0, samples.size, packet):
                found += session.feed(samples[start : start + packet])
            found += session.finish()
            got = [(d.keyword.replace(" ", "_"), list(d.token_ids), list(d.frames)) for d in found]
            want = [(k.replace(" ", "_"), t, f) for k, t, f in whole]
            assert got == want, (clip, packet)


# --------------------------------------------------------------------------- CLI, errors


def test_spot_cli_text_json_and_stdin(
    onnx_bundle: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = "clip2_turn_on_the_light"
    wav = str(kws_data.KWS / "audio" / f"{clip}.wav")
    keywords = str(kws_data.KWS / "keywords.txt")
    assert main(["spot", str(onnx_bundle), wav, "--keywords", keywords, "--output", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = kws_data.expected_sherpa(clip, kws_data.settings()[0])
    assert [(d["keyword"], d["token_ids"], d["frames"]) for d in data["detections"]] == expected
    assert data["search"] == "sherpa"
    pcm = (np.clip(_audio(clip), -1, 1) * 32768).round().clip(-32768, 32767).astype("<i2")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm.tobytes())))
    assert main(["spot", str(onnx_bundle), "-", "--keywords", keywords]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines] == [k for k, _, _ in expected]
    assert main(
        ["spot", str(onnx_bundle), wav, "--keywords", "RESULT RESULT,KIND KIND", "--search",
         "icefall", "--boost", "0.5", "--threshold", "0.15"]
    ) == 0  # fmt: skip
    icefall = kws_data.expected_icefall(clip, kws_data.settings()[1])
    assert len(capsys.readouterr().out.splitlines()) == len(icefall)


def test_bad_keyword_lists_are_clear_errors(
    onnx_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = speechport.load(onnx_bundle, "onnx")
    with pytest.raises(KeywordError, match=r"'HI'.*unknown token.*'XYZ'"):
        model.spotter("\u2581HE XYZ @HI")
    with pytest.raises(KeywordError, match="empty"):
        model.spotter(" , ")
    with pytest.raises(KeywordError, match="empty"):
        model.spotter([])
    with pytest.raises(KeywordError, match="keyword file not found"):
        model.spotter("missing_keywords.txt")
    with pytest.raises(KeywordError, match=r"'h\u00e9llo'.*unknown token"):
        model.spotter("HELLO,h\u00e9llo")
    wav = str(kws_data.KWS / "audio" / "clip1_hello_computer.wav")
    assert main(["spot", str(onnx_bundle), wav, "--keywords", "\u2581HE XYZ"]) == 2
    assert "unknown token(s) 'XYZ'" in capsys.readouterr().err


def test_failed_conversion_leaves_nothing(tmp_path: Path) -> None:
    from speechport.conversion import convert

    source = tmp_path / "model"
    source.mkdir()
    for name in ("pretrained.pt", "bpe.model"):
        shutil.copy(kws_data.KWS / name, source / name)
    config = json.loads((kws_data.KWS / "model_config.json").read_text())
    (source / "model_config.json").write_text(json.dumps({**config, "joiner_dim": 96}))
    out = tmp_path / "bundle"
    with pytest.raises(CheckpointError, match="do not fit"):
        convert("zipformer-kws", source / "pretrained.pt", out, formats="onnx", quiet=True)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [source]


def test_verify_onnx_bundle(onnx_bundle: Path) -> None:
    from speechport.api import VerifyOptions

    report = speechport.verify(
        onnx_bundle,
        [kws_data.KWS / "audio" / "clip2_turn_on_the_light.wav"],
        VerifyOptions(backends=("onnx",), latency_runs=2, write=False),
    )
    assert report.passed, report.failures()
    (result,) = report.files
    assert isinstance(result, KwsFileResult)
    assert result.detections == result.detections_reference != []
    assert result.encoder_max_abs < 1e-5 and result.joiner_top1 == 1.0


def test_spot_runs_without_torch(onnx_bundle: Path) -> None:
    """The keyword-spotting runtime needs numpy, onnxruntime and sentencepiece only."""
    import subprocess

    from tests.test_runtime_without_torch import BLOCKER

    clip = "clip2_turn_on_the_light"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER,
            "spot",
            str(onnx_bundle),
            str(kws_data.KWS / "audio" / f"{clip}.wav"),
            "--keywords",
            str(kws_data.KWS / "keywords.txt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    keywords = [line.split()[2] for line in result.stdout.splitlines()]
    assert keywords == [k for k, _, _ in kws_data.expected_sherpa(clip, kws_data.settings()[0])]
