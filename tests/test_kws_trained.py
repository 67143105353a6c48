"""The keyword spotter trained here (tests/data/kws_trained: the upstream architecture, tiny,
24 keywords, espeak-ng speech): its ONNX bundle's recall and false alarms on voices it
never heard, exactly as ``speechport eval kws`` measures them, and the model card's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import speechport
from speechport.cli import main
from tests.helpers import BundleCache

TRAINED = Path(__file__).parent / "data" / "kws_trained"
EVAL_SET = TRAINED / "eval" / "set.jsonl"

# at the bundle's default threshold (0.25), sherpa search, boost 1, beam 4, 1 trailing blank
TABLE = """\
keyword           N found recall   FA
HELLO COMPUTER    2     2   1.00    3
LIGHTS ON         2     2   1.00    4
LIGHTS OFF        2     2   1.00    1
STOP              2     2   1.00    0
PLAY MUSIC        2     2   1.00    3
NEXT SONG         2     2   1.00    2
VOLUME UP         2     1   0.50    1
VOLUME DOWN       2     0   0.00    1
OPEN THE DOOR     2     2   1.00    0
GOOD MORNING      2     2   1.00    2
WEATHER           2     2   1.00    0
CAMERA            2     1   0.50    0
CANCEL            2     1   0.50    0
TIMER             2     0   0.00    0
CALL HOME         2     2   1.00    2
PAUSE             2     2   1.00    1
REPEAT            2     1   0.50    2
GO BACK           2     2   1.00    3
TURN LEFT         2     2   1.00    4
TURN RIGHT        2     1   0.50    0
KITCHEN           2     2   1.00    0
TELEVISION        2     2   1.00    0
PICTURE           2     0   0.00    1
ORANGE            2     1   0.50    2
TOTAL            48    36   0.75   32
false alarms: 32 in 36 utterances, 1.3 min (0.889 / utterance, 1457.8 / hour); \
on the 12 negative utterances: 12 (1.000 / utterance, 1854.2 / hour)"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from speechport.conversion import convert

    out = tmp_path_factory.mktemp("kws_trained") / "bundle"
    convert("zipformer-kws", TRAINED / "pretrained.pt", out, formats="onnx", quiet=True)
    return out


def test_eval_kws_on_held_out_voices(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keywords = TRAINED / "eval" / "keywords.txt"
    argv = ["eval", "kws", str(bundle), "--set", str(EVAL_SET), "--keywords", str(keywords)]
    assert main([*argv, "--sweep", "0.1,0.25,0.4", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("search sherpa, threshold 0.25, boost 1, beam 4, trailing blanks 1")
    assert "\n".join(lines[1:28]) == TABLE
    assert lines[28:31] == [
        "threshold 0.1   recall 0.708  false alarms 39 (1.083 / utterance, 1776.7 / hour)",
        "threshold 0.25  recall 0.750  false alarms 32 (0.889 / utterance, 1457.8 / hour)",
        "threshold 0.4   recall 0.604  false alarms 26 (0.722 / utterance, 1184.4 / hour)",
    ]
    data = json.loads((bundle / "eval" / "kws_eval.json").read_text(encoding="utf-8"))
    scores = data["scores"]
    assert (scores["spoken"], scores["found"], scores["false_alarms"]) == (48, 36, 32)
    assert (scores["negative_utterances"], scores["negative_false_alarms"]) == (12, 12)
    assert [(p["threshold"], p["found"], p["false_alarms"]) for p in data["sweep"]] == [
        (0.1, 34, 39),
        (0.25, 36, 32),
        (0.4, 29, 26),
    ]
    first = data["utterances"][0]  # en-029+m4: "PAUSE READ PLAY MUSIC NICE OUT"
    assert (first["audio"], first["spoken"]) == ("pos_01.flac", ["PAUSE", "PLAY MUSIC"])
    assert [(d["keyword"], d["start"], d["end"]) for d in first["detections"]] == [
        ("PAUSE", 0.44, 0.44),
        ("PLAY MUSIC", 1.12, 1.16),
        ("PLAY MUSIC", 1.28, 1.32),
        ("LIGHTS ON", 2.16, 2.2),
    ]
    assert (first["missed"], first["false_alarms"]) == ([], ["LIGHTS ON", "PLAY MUSIC"])
    # the model card shows the same table (the kws task's card section)
    card = (bundle / "README.md").read_text(encoding="utf-8")
    section = card[card.index("## Recall and false alarms") : card.index("## Fidelity")]
    assert "| HELLO COMPUTER | 2 | 2 | 1.00 | 3 |" in section
    assert "| **TOTAL** | 48 | 36 | 0.75 | 32 |" in section
    assert "on the 12 negative utterances: 12 (1.000 / utterance, 1854.2 / hour)." in section
    assert "0.1 → recall 0.71, 1776.7 FA/h" in section
    if data["plot"]:
        assert (bundle / "eval" / data["plot"]).stat().st_size > 0
        assert "![recall against false alarms](eval/kws_recall_false_alarms.png)" in section


def test_eval_kws_refuses_a_keyword_outside_the_list(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "kws", str(bundle), "--set", str(EVAL_SET), "--keywords", "STOP,CAMERA"]
    assert main([*argv, "--sweep", "none", "--out", str(bundle / "elsewhere")]) == 2
    err = capsys.readouterr().err
    assert "set.jsonl: line 1: 'PAUSE', 'PLAY MUSIC' is not in the keyword list" in err
    assert not (bundle / "elsewhere").exists()


@pytest.fixture(scope="module")
def coreml_fp32(bundle_cache: BundleCache) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("coremltools")
    return bundle_cache.get(
        "zipformer-kws", TRAINED / "pretrained.pt", "bundle", formats="coreml", precision="fp32"
    )


@pytest.mark.slow
def test_quantize_scores_palettized_spotters_on_the_evaluation_keywords(
    coreml_fp32: Path, tmp_path: Path
) -> None:
    """The sweep searches for the evaluation's 24 keywords and gates on the share of
    utterances whose detections equal the reference's (here 0.8 of 10, so two may differ
    and a variant stops at its third difference). Core ML fp32 with plain weights, and with
    the encoder and joiner palettized to 8 bits, detect what the torch reference does."""
    from speechport.api import QuantizeOptions

    clips = sorted((TRAINED / "eval").glob("*.flac"))[:10]
    recipe = "encoder=pal8-kmeans+joiner=pal8-kmeans"
    summary = speechport.quantize(
        coreml_fp32,
        tmp_path / "sweep",
        clips,
        QuantizeOptions(
            strategies=(recipe, "pal4-uniform"),
            keywords=str(TRAINED / "eval" / "keywords.txt"),
            min_agreement=0.8,
            latency_runs=1,
            jobs=1,
        ),
    )
    assert summary.gate == {"min_agreement": 0.8}
    got = {v.name: (v.passed, v.files, v.token_exact_files, v.stopped) for v in summary.variants}
    assert got == {
        "baseline": (True, 10, 10, None),
        recipe: (True, 10, 10, None),
        # every utterance differs: stopped at the third, when 8 of 10 can no longer agree
        "pal4-uniform": (False, 3, 0, "gate failed at file 3/10"),
    }
    report = json.loads(
        (tmp_path / "sweep" / "variants" / recipe / "verify" / "parity.json").read_text()
    )
    keywords = (TRAINED / "eval" / "keywords.txt").read_text(encoding="utf-8").splitlines()
    assert report["files"][0]["keywords"] == keywords
