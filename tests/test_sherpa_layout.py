"""GigaAM bundles laid out for sherpa-onnx's NeMo loaders (``speechport.export.sherpa``).

The layout's files, called the way sherpa-onnx calls them (by position, ``int32`` tokens and
lengths, the encoder's lengths as ``int64``), give upstream's token ids on upstream's own
features; sherpa-onnx itself loads the files unchanged and decodes the clips. Its transcripts
differ from upstream's where its front end differs (a 400-sample window where GigaAM uses
320), which the tiny fixture models are sensitive to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from speechport.errors import SpeechportError
from speechport.export.sherpa import CTC, TRANSDUCER, SherpaLayout, write_sherpa_layout
from tests.helpers import VARIANTS, gigaam_clip

SHERPA_MAX_SYMBOLS = 10  # sherpa-onnx's greedy NeMo transducer search, per frame


@pytest.fixture(scope="module")
def layouts(
    gigaam_onnx: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, SherpaLayout]:
    root = tmp_path_factory.mktemp("sherpa")
    return {v: write_sherpa_layout(gigaam_onnx(v), root / v) for v in VARIANTS}


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _sherpa_style_tokens(layout: SherpaLayout, features: np.ndarray) -> list[int]:
    """Greedy decoding as sherpa-onnx's OfflineTransducerGreedySearchNeMoDecoder and
    OfflineCtcGreedySearchDecoder run it, with positional inputs."""
    length = np.array([features.shape[2]], np.int64)
    if layout.model_type == CTC:
        model = _session(layout.files["model"])
        names = [i.name for i in model.get_inputs()]
        log_probs = model.run(None, dict(zip(names, [features, length], strict=True)))[0]
        best = log_probs[0, : features.shape[2] // 4].argmax(-1).tolist()
        blank = log_probs.shape[-1] - 1
        return [t for i, t in enumerate(best) if t != blank and (i == 0 or best[i - 1] != t)]
    encoder, decoder, joiner = (_session(layout.files[r]) for r in ("encoder", "decoder", "joiner"))

    def run(session: Any, *values: np.ndarray) -> list[np.ndarray]:
        names = [i.name for i in session.get_inputs()]
        return list(session.run(None, dict(zip(names, values, strict=True))))

    encoded, encoded_len = run(encoder, features, length)
    state = [d if isinstance(d, int) else 1 for d in decoder.get_inputs()[2].shape]
    blank = joiner.get_outputs()[0].shape[-1] - 1

    def step(token: int, h: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
        out, _, h, c = run(decoder, np.array([[token]], np.int32), np.array([1], np.int32), h, c)
        return [out, h, c]

    dec, h, c = step(blank, np.zeros(state, np.float32), np.zeros(state, np.float32))
    tokens: list[int] = []
    for t in range(int(encoded_len[0])):
        frame = encoded[:, :, t : t + 1]
        for _ in range(SHERPA_MAX_SYMBOLS):
            y = int(run(joiner, frame, dec)[0].reshape(-1).argmax())
            if y == blank:
                break
            tokens.append(y)
            dec, h, c = step(y, h, c)
    return tokens


@pytest.mark.parametrize("variant", VARIANTS)
def test_layout_called_as_sherpa_calls_it_gives_upstreams_tokens(
    layouts: dict[str, SherpaLayout], variant: str
) -> None:
    layout = layouts[variant]
    assert layout.model_type == (CTC if variant.endswith("ctc") else TRANSDUCER)
    for clip in (0, 1, 2, 3):
        ref = gigaam_clip(variant, clip)
        features = ref.npz["features"]
        tokens = _sherpa_style_tokens(layout, features)
        expected = ref.npz["token_ids"].tolist()
        if layout.model_type == CTC:
            # sherpa-onnx takes T // 4 frames of a CTC model's output; GigaAM's subsampling
            # gives ceil(ceil(T / 2) / 2): a token on the last frame is lost (clip 0: 453
            # feature frames, 114 encoder frames, 113 read)
            frames = ref.npz["token_frames"].tolist()
            cut = features.shape[2] // 4
            expected = [t for t, f in zip(expected, frames, strict=True) if f < cut]
        assert tokens == expected, (variant, clip)


def test_files_metadata_and_tokens(layouts: dict[str, SherpaLayout]) -> None:
    import onnx

    rnnt = layouts["v3_rnnt"]
    assert sorted(p.name for p in rnnt.directory.iterdir()) == [
        "decoder.onnx",
        "encoder.onnx",
        "joiner.onnx",
        "tokens.txt",
    ]
    meta = {p.key: p.value for p in onnx.load(str(rnnt.files["encoder"])).metadata_props}
    assert {k: meta[k] for k in ("vocab_size", "pred_rnn_layers", "pred_hidden")} == {
        "vocab_size": "33",
        "pred_rnn_layers": "1",
        "pred_hidden": "48",
    }
    assert (meta["subsampling_factor"], meta["is_giga_am"], meta["feat_dim"]) == ("4", "1", "64")
    assert meta["normalize_type"] == ""
    decoder = onnx.load(str(rnnt.files["decoder"])).graph
    assert [(v.name, v.type.tensor_type.elem_type) for v in decoder.input][:2] == [
        ("targets", onnx.TensorProto.INT32),
        ("target_length", onnx.TensorProto.INT32),
    ]
    out = decoder.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out][1:] == [48, 1]
    lines = rnnt.files["tokens"].read_text(encoding="utf-8").splitlines()
    assert (lines[0], lines[1], lines[-1], len(lines)) == ("▁ 0", "а 1", "<blk> 33", 34)
    ctc = layouts["v3_e2e_ctc"]
    assert sorted(p.name for p in ctc.directory.iterdir()) == ["model.onnx", "tokens.txt"]
    meta = {p.key: p.value for p in onnx.load(str(ctc.files["model"])).metadata_props}
    assert (meta["vocab_size"], meta["is_giga_am"]) == ("355", "1")  # with the blank


def test_sherpa_onnx_loads_the_files_unchanged(layouts: dict[str, SherpaLayout]) -> None:
    """sherpa-onnx's loaders accept every variant and decode the clips. Agreement with
    upstream's transcripts (clips 0-2, the ones the fixture models learnt), with
    sherpa-onnx 2.0.1's own front end: v3_e2e_rnnt 3/3; the others 0/3, their tiny models
    turning sherpa's slightly different features into other letters."""
    pytest.importorskip("sherpa_onnx", reason="sherpa-onnx is a dev dependency")
    from speechport.bench.compare import sherpa_recognizer

    agree = {}
    for variant, layout in layouts.items():
        recognize = sherpa_recognizer(layout, threads=1)
        texts = [recognize(gigaam_clip(variant, clip).audio) for clip in (0, 1, 2)]
        assert all(texts), variant
        expected = [gigaam_clip(variant, clip).expected["text"] for clip in (0, 1, 2)]
        agree[variant] = sum(a == b for a, b in zip(texts, expected, strict=True))
    assert agree == {"v3_e2e_rnnt": 3, "v3_rnnt": 0, "v3_e2e_ctc": 0, "v3_ctc": 0}


def test_an_existing_layout_is_replaced_only_when_asked(
    layouts: dict[str, SherpaLayout], gigaam_onnx: Callable[[str], Path]
) -> None:
    layout = layouts["v3_ctc"]
    with pytest.raises(SpeechportError, match="already exists"):
        write_sherpa_layout(gigaam_onnx("v3_ctc"), layout.directory)
    again = write_sherpa_layout(gigaam_onnx("v3_ctc"), layout.directory, overwrite=True)
    assert again.files["model"].is_file()


def test_a_bundle_sherpa_onnx_cannot_run_is_refused(vad_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(SpeechportError, match="not speech recognition"):
        write_sherpa_layout(vad_bundle, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_writes_the_layout_and_names_what_it_wrote(
    gigaam_onnx: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from speechport.cli import main

    bundle, out = gigaam_onnx("v3_e2e_rnnt"), tmp_path / "sherpa"
    assert main(["export", "sherpa-onnx", str(bundle), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"wrote {out} (sherpa-onnx nemo_transducer: decoder.onnx, encoder.onnx, "
        "joiner.onnx, tokens.txt)"
    )
    assert main(["export", "sherpa-onnx", str(bundle), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--force" in err[0]


def test_bench_compare_times_sherpa_onnx_on_a_gigaam_bundle(
    gigaam_onnx: Callable[[str], Path],
) -> None:
    pytest.importorskip("sherpa_onnx", reason="sherpa-onnx is a dev dependency")
    from speechport.bench.compare import bench_compare
    from tests.helpers import GIGAAM

    clips = [GIGAAM / gigaam_clip("v3_e2e_rnnt", i).expected["audio"] for i in (0, 1, 2)]
    result = bench_compare(gigaam_onnx("v3_e2e_rnnt"), clips, threads=1, runs=1)
    rows = {row["engine"]: row for row in result["engines"]}
    assert rows["sherpa-onnx"]["rtfx"] > 0
    # speechport gives upstream's transcripts; sherpa-onnx does too on these three clips
    assert rows["sherpa-onnx"]["transcripts_agree"] == "3/3"
