"""Core ML encoder shape buckets: one package that runs at 5 / 10 / 15 (/ 30) s.

A clip is padded to the shortest bucket that holds it instead of the whole window; the
encoder masks every frame past its length, so the tokens and their times are those of the
single-window package. Both run under the MIL interpreter here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechport.cli import main
from speechport.conversion import convert
from speechport.errors import BundleError, SpeechportError
from speechport.manifest import TensorSpec, read_manifest
from speechport.pipelines.transcriber import Transcriber, Transcript
from speechport.runtime import load_bundle, make_backend
from tests.helpers import GIGAAM, BundleCache, checkpoint, tokenizer_for

NEMO = Path(__file__).parent / "data" / "nemo"
# by variant: family, window (s), the features' bucket sizes (frames)
CASES = {
    "v3_rnnt": ("gigaam", 30.0, (499, 999, 1499, 2999)),
    "v3_ctc": ("gigaam", 30.0, (499, 999, 1499, 2999)),
    "parakeet_tdt": ("parakeet", 15.0, (501, 1001, 1501)),
}


def _source(variant: str) -> tuple[Path, Path | None, Path]:
    """Checkpoint, tokenizer and audio directory of a fixture model."""
    if CASES[variant][0] == "gigaam":
        return checkpoint(variant), tokenizer_for(variant), GIGAAM / "audio"
    return NEMO / f"{variant}.nemo", None, NEMO / "audio"


@pytest.fixture(scope="module")
def bundles(bundle_cache: BundleCache) -> dict[tuple[str, str], Path]:
    """Each fixture model with buckets (the default conversion, shared with the family
    tests) and with the window only (one fixed shape)."""
    out = {}
    for variant, (family, window, _) in CASES.items():
        ckpt, tokenizer, _ = _source(variant)
        out[(variant, "buckets")] = bundle_cache.get(family, ckpt, variant, tokenizer=tokenizer)
        out[(variant, "window")] = bundle_cache.get(
            family,
            ckpt,
            variant,
            tokenizer=tokenizer,
            formats="coreml",
            plan_options={"encoder_buckets": (window,)},
        )
    return out


def _transcriber(bundle: Path) -> Transcriber:
    return Transcriber(load_bundle(bundle, make_backend("coreml", engine="interpreter")))


def _timed_tokens(transcript: Transcript) -> list[tuple[int, float, float]]:
    return [(t.id, t.start, t.end) for t in transcript.tokens]


@pytest.mark.parametrize("variant", CASES)
def test_buckets_give_the_window_tokens_and_times(
    bundles: dict[tuple[str, str], Path], variant: str
) -> None:
    """Every clip (~2.5-5 s) runs the 5 s bucket, two clips end to end the 10 s one; the
    tokens, their frames and times equal the single-window package's."""
    sizes = CASES[variant][2]
    bucketed = _transcriber(bundles[(variant, "buckets")])
    window = _transcriber(bundles[(variant, "window")])
    clips = [sf.read(p, dtype="float32")[0] for p in sorted(_source(variant)[2].glob("*.wav"))]
    cases = [(clip, sizes[0]) for clip in clips]
    cases.append((np.concatenate(clips[1:3]), sizes[1]))
    tokens = 0
    for audio, size in cases:
        features = bucketed.encoder_inputs(audio)
        assert features is not None and features[0].shape[-1] == size
        assert window.encoder_inputs(audio)[0].shape[-1] == sizes[-1]  # type: ignore[index]
        got, want = bucketed.transcribe(audio), window.transcribe(audio)
        assert _timed_tokens(got) == _timed_tokens(want)
        assert [s.frames for s in got.segments] == [s.frames for s in want.segments]
        tokens += len(want.tokens)
    assert tokens > 40  # the clips say something


@pytest.mark.parametrize("variant", CASES)
def test_manifest_lists_the_buckets(bundles: dict[tuple[str, str], Path], variant: str) -> None:
    sizes = CASES[variant][2]
    data = json.loads((bundles[(variant, "buckets")] / "speechport.json").read_text())
    encoder = data["components"]["encoder"]
    features = encoder["files"]["coreml"]["inputs"][0]
    assert features["buckets"] == {"2": list(sizes)}
    assert features["shape"][2] == sizes[-1]
    assert "buckets" not in encoder["inputs"][0]  # the canonical contract: the window
    if "onnx" in encoder["files"]:
        assert "buckets" not in encoder["files"]["onnx"]["inputs"][0]  # any length there
    single = json.loads((bundles[(variant, "window")] / "speechport.json").read_text())
    assert "buckets" not in json.dumps(single["components"])  # one fixed shape


@pytest.mark.parametrize(
    ("buckets", "message"),
    [
        ((5.0, 20.0), "the largest encoder bucket must be the 30 s window, got 5, 20 s"),
        ((5.0, 30.0, 60.0), "the largest encoder bucket must be the 30 s window, got 5, 30, 60 s"),
        ((0.0, 30.0), "encoder buckets must be lengths in seconds > 0, got [0.0, 30.0]"),
    ],
)
def test_a_bad_bucket_list_is_refused_in_one_line(
    tmp_path: Path, buckets: tuple[float, ...], message: str
) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(SpeechportError) as info:
        convert(
            "gigaam",
            checkpoint("v3_ctc"),
            out,
            formats="coreml",
            quiet=True,
            plan_options={"encoder_buckets": buckets},
        )
    assert info.value.message == message
    assert "\n" not in str(info.value) and info.value.hint
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_refuses_buckets_that_are_not_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["convert", "gigaam", "--checkpoint", str(checkpoint("v3_ctc")), "--out"]
    with pytest.raises(SystemExit) as info:
        main([*args, str(tmp_path / "b"), "--encoder-buckets", "5,ten,30"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("argument --encoder-buckets: expected a number > 0, got 'ten'")


def test_families_without_an_encoder_window_refuse_buckets(tmp_path: Path) -> None:
    pytest.importorskip("silero_vad")
    with pytest.raises(SpeechportError, match="takes no option encoder_buckets"):
        convert(
            "silero-vad", None, tmp_path / "vad", quiet=True, plan_options={"encoder_buckets": (5,)}
        )


@pytest.mark.parametrize(
    "buckets",
    [{"2": [499, 2999, 999]}, {"2": [499, 1000]}, {"3": [2999]}, {"2": []}, {"2": [0, 2999]}],
)
def test_manifest_refuses_buckets_that_do_not_fit_the_shape(buckets: dict[str, list[int]]) -> None:
    data = {"name": "features", "shape": [1, 64, 2999], "dtype": "float32", "buckets": buckets}
    with pytest.raises(BundleError, match="buckets on axis"):
        TensorSpec.from_dict(data, "component 'encoder' coreml input")


def test_buckets_survive_a_manifest_round_trip(bundles: dict[tuple[str, str], Path]) -> None:
    manifest = read_manifest(bundles[("v3_rnnt", "buckets")])
    features = manifest.component("encoder").files["coreml"].inputs[0]
    assert features.buckets == {2: (499, 999, 1499, 2999)}
    assert features.bucket_shapes() == [(1, 64, n) for n in (499, 999, 1499, 2999)]
    assert TensorSpec.from_dict(features.to_dict(), "features") == features


def test_info_shows_the_buckets(
    bundles: dict[tuple[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(bundles[("parakeet_tdt", "buckets")])]) == 0
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    encoder = [line for line in lines if line.startswith("coreml Encoder.mlpackage")]
    assert len(encoder) == 1 and encoder[0].endswith(", features buckets 501|1001|1501)")
