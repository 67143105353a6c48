"""The zipformer-kws Core ML packages under speechport's Core ML program interpreter
(fp32: the graph itself; fp16: its emulated numerics), against icefall's streaming outputs
and upstream's detections (tests/data/kws)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import speechport
from speechport.pipelines.kws import _ChunkEncoder
from tests import kws_data

pytest.importorskip("torch")
pytest.importorskip("coremltools")


def _convert(root: Path, precision: str) -> Path:
    from speechport.conversion import convert

    out = root / precision
    convert(
        "zipformer-kws",
        kws_data.KWS / "pretrained.pt",
        out,
        formats="coreml",
        precision=precision,
        quiet=True,
    )
    return out


@pytest.fixture(scope="module")
def fp32_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert(tmp_path_factory.mktemp("kws_coreml"), "fp32")


def _detections(model: Any, clip: str, semantics: str) -> list[object]:
    setting = kws_data.settings()[0]
    samples, _ = sf.read(kws_data.KWS / "audio" / f"{clip}.wav", dtype="float32")
    keywords = kws_data.raw_phrases() if semantics == "icefall" else kws_data.sherpa_lines()
    session = model.spotter(
        keywords,
        boost=setting["keywords_score"],
        threshold=setting["keywords_threshold"],
        search=semantics,
    )
    found = session.feed(samples) + session.finish()
    return [(d.keyword, list(d.token_ids), list(d.frames)) for d in found]


def test_fp32_encoder_equals_icefall_streaming(fp32_bundle: Path) -> None:
    model = speechport.load(fp32_bundle, "coreml")
    assert "interpreter" in model.bundle.engine or "Core ML" in model.bundle.engine
    arrays = kws_data.clip_arrays("clip1_hello_computer")
    expected = arrays["encoder_out_proj_chunks"]
    encoder = _ChunkEncoder(model.encoder)
    names = [t.name.removeprefix("new_") for t in model.encoder.spec.outputs[1:]]
    for chunk in range(len(expected)):
        outputs = model.encoder(
            arrays["fbank"][None, 32 * chunk : 32 * chunk + 45], *encoder.states
        )
        encoder.states = [outputs[i] for i in encoder._state_out]
        assert np.abs(outputs[0][0] - expected[chunk]).max() < 2e-5
        if chunk < 2:
            for name, value in zip(names, outputs[1:], strict=True):
                want = arrays[f"states_after_chunk{chunk}/{name}"]
                scale = max(1.0, float(np.abs(want).max()))
                assert np.abs(value - want).max() <= 2e-6 * scale + 1e-5, name


@pytest.mark.parametrize("semantics", ["sherpa", "icefall"])
def test_fp32_detections_equal_upstream(fp32_bundle: Path, semantics: str) -> None:
    model = speechport.load(fp32_bundle, "coreml")
    clip = "clip2_turn_on_the_light"
    setting = kws_data.settings()[0]
    expected = (
        kws_data.expected_icefall(clip, setting)
        if semantics == "icefall"
        else kws_data.expected_sherpa(clip, setting)
    )
    assert _detections(model, clip, semantics) == expected
