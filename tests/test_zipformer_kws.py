"""The zipformer-kws family: checkpoint loading and the torch streaming reference against
icefall's own streaming encoder (tests/data/kws: every chunk of every clip; every state
after the first two chunks of clip1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from speechport.errors import CheckpointError
from tests import kws_data

torch = pytest.importorskip("torch")

from speechport.families.zipformer_kws import ZipformerKwsFamily  # noqa: E402
from speechport.families.zipformer_kws.model import (  # noqa: E402
    ZipformerConfig,
    ZipformerTransducer,
    count_parameters,
)

CHECKPOINT = kws_data.KWS / "pretrained.pt"


@pytest.fixture(scope="module")
def model() -> ZipformerTransducer:
    loaded = ZipformerKwsFamily().load(CHECKPOINT)
    assert isinstance(loaded.model, ZipformerTransducer)
    return loaded.model


def stream(model: ZipformerTransducer, fbank: np.ndarray, chunks: int | None = None):
    cfg = model.cfg
    states = model.initial_states()
    outputs: list[np.ndarray] = []
    history: list[list[np.ndarray]] = []
    start = 0
    with torch.no_grad():
        while start + cfg.chunk_frames < len(fbank) and (chunks is None or len(outputs) < chunks):
            x = torch.from_numpy(fbank[start : start + cfg.chunk_frames])[None]
            out, states = model.streaming_step(x, states)
            outputs.append(out[0].numpy())
            history.append([s.numpy() for s in states])
            start += cfg.chunk_shift
    return np.stack(outputs), history


def test_parameter_counts() -> None:
    # the fixture's model (model_config.json: 820,689 with the two training-only heads of
    # 24,500 + 32,500) and the recipe's full-size model (3,487,033 with those heads)
    loaded = ZipformerKwsFamily().load(CHECKPOINT)
    assert count_parameters(loaded.model) + 24_500 + 32_500 == 820_689
    full = ZipformerTransducer(ZipformerConfig())
    assert count_parameters(full) + (128 * 500 + 500) + (320 * 500 + 500) == 3_487_033


@pytest.mark.parametrize("clip", kws_data.clips())
def test_streaming_encoder_equals_icefall(model: ZipformerTransducer, clip: str) -> None:
    arrays = kws_data.clip_arrays(clip)
    expected = arrays["encoder_out_chunks"]
    got, _ = stream(model, arrays["fbank"])
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 2e-5
    with torch.no_grad():
        proj = model.joiner.encoder_proj(torch.from_numpy(got)).numpy()
    assert np.abs(proj - arrays["encoder_out_proj_chunks"]).max() < 2e-5


def test_every_state_equals_icefall(model: ZipformerTransducer) -> None:
    arrays = kws_data.clip_arrays("clip1_hello_computer")
    _, history = stream(model, arrays["fbank"], chunks=2)
    names = model.state_names()
    assert len(names) == 38
    for chunk in (0, 1):
        for name, value in zip(names, history[chunk], strict=True):
            expected = arrays[f"states_after_chunk{chunk}/{name}"]
            assert value.shape == expected.shape, name
            if name == "processed_lens":
                np.testing.assert_array_equal(value, expected)
            else:
                scale = max(1.0, float(np.abs(expected).max()))
                assert np.abs(value - expected).max() <= 2e-6 * scale + 1e-5, name


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    gigaam = Path(__file__).parent / "data" / "gigaam" / "v3_ctc.ckpt"
    with pytest.raises(CheckpointError, match="nothing from it was executed"):
        ZipformerKwsFamily().load(gigaam)
    for name, content in {
        "plain.pt": {"state_dict": {"w": torch.zeros(2)}},
        "other.pt": {"model": {"encoder.layers.0.weight": torch.zeros(2, 2)}},
    }.items():
        torch.save(content, tmp_path / name)
        shutil.copy(kws_data.KWS / "model_config.json", tmp_path / "model_config.json")
        with pytest.raises(CheckpointError, match=r"icefall checkpoint|do not fit"):
            ZipformerKwsFamily().load(tmp_path / name)


def test_config_that_does_not_fit_the_weights_is_refused(tmp_path: Path) -> None:
    shutil.copy(CHECKPOINT, tmp_path / "pretrained.pt")
    shutil.copy(kws_data.KWS / "bpe.model", tmp_path / "bpe.model")
    config = json.loads((kws_data.KWS / "model_config.json").read_text())
    config["feedforward_dim"] = "128"
    (tmp_path / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit"):
        ZipformerKwsFamily().load(tmp_path / "pretrained.pt")
    (tmp_path / "model_config.json").unlink()  # the recipe's full-size defaults: no fit
    with pytest.raises(CheckpointError, match=r"full-size.*no model_config\.json"):
        ZipformerKwsFamily().load(tmp_path / "pretrained.pt")


def test_non_streaming_config_is_refused(tmp_path: Path) -> None:
    config = json.loads((kws_data.KWS / "model_config.json").read_text())
    from speechport.families.zipformer_kws import config_from_dict

    with pytest.raises(CheckpointError, match="causal"):
        config_from_dict({**config, "causal": False})
    with pytest.raises(CheckpointError, match="chunk_size"):
        config_from_dict({**config, "chunk_size": "16,32"})


def test_full_size_model_streams_with_icefall_state_shapes() -> None:
    """The recipe's full-size model (random weights): one chunk, icefall's state layout."""
    model = ZipformerTransducer(ZipformerConfig()).eval()
    states = model.initial_states()
    assert len(states) == len(model.state_names()) == 38
    assert tuple(states[model.state_names().index("cached_key_3")].shape) == (8, 1, 8 * 32)
    assert tuple(states[-2].shape) == (1, 128, 3, 19)
    with torch.no_grad():
        out, new = model.streaming_step(torch.randn(1, 45, 80), states)
    assert tuple(out.shape) == (1, 8, 128)
    assert [tuple(s.shape) for s in new] == [tuple(s.shape) for s in states]
    assert int(new[-1][0]) == 16
