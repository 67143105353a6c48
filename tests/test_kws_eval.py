"""The recall / false-alarm scoring of ``speechport eval kws`` on hand-made detections, and
its manifest reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechport.decoding.context_graph import KeywordError
from speechport.evaluation.kws import read_manifest
from speechport.evaluation.kws_scores import (
    KwsScores,
    UtteranceOutcome,
    markdown_lines,
    score,
    table_lines,
)

KEYWORDS = ["LIGHTS ON", "STOP", "CAMERA", "PAUSE"]
OUTCOMES = [
    # one of two keywords found
    UtteranceOutcome("a.wav", ("LIGHTS ON", "STOP"), ("LIGHTS ON",), 2.0),
    # STOP twice, found three times (one too many) and a CAMERA that is not there
    UtteranceOutcome("b.wav", ("STOP", "STOP"), ("STOP", "CAMERA", "STOP", "STOP"), 3.0),
    UtteranceOutcome("c.wav", (), ("CAMERA",), 4.0),  # negative with a false alarm
    UtteranceOutcome("d.wav", (), (), 1.0),  # negative, silent
    UtteranceOutcome("e.wav", ("CAMERA",), (), 2.0),  # missed
]


def test_scores_count_found_missed_and_false_alarms_per_utterance() -> None:
    s = score(OUTCOMES, KEYWORDS)
    rows = [(r.keyword, r.spoken, r.found, r.recall, r.false_alarms) for r in s.rows]
    assert rows == [
        ("LIGHTS ON", 1, 1, 1.0, 0),
        ("STOP", 3, 2, 2 / 3, 1),
        ("CAMERA", 1, 0, 0.0, 2),
        ("PAUSE", 0, 0, None, 0),  # listed, never spoken: no recall
    ]
    assert (s.spoken, s.found, s.recall) == (5, 3, 0.6)
    assert (s.utterances, s.seconds, s.false_alarms) == (5, 12.0, 3)
    assert s.false_alarms_per_utterance == 0.6
    assert s.false_alarms_per_hour == 900.0  # 3 in 12 s
    assert (s.negative_utterances, s.negative_seconds, s.negative_false_alarms) == (2, 5.0, 1)
    assert s.negative_false_alarms_per_utterance == 0.5
    assert s.negative_false_alarms_per_hour == 720.0  # 1 in 5 s
    assert OUTCOMES[1].missed() == {} and OUTCOMES[0].missed() == {"STOP": 1}
    assert KwsScores.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_table_is_the_seed_table_with_found_and_false_alarms() -> None:
    assert table_lines(score(OUTCOMES, KEYWORDS)) == [
        "keyword      N found recall   FA",
        "LIGHTS ON    1     1   1.00    0",
        "STOP         3     2   0.67    1",
        "CAMERA       1     0   0.00    2",
        "PAUSE        0     0      -    0",
        "TOTAL        5     3   0.60    3",
        "false alarms: 3 in 5 utterances, 0.2 min (0.600 / utterance, 900.0 / hour); on the 2 "
        "negative utterances: 1 (0.500 / utterance, 720.0 / hour)",
    ]
    card = markdown_lines(score(OUTCOMES, KEYWORDS))
    assert card[2] == "| LIGHTS ON | 1 | 1 | 1.00 | 0 |"
    assert card[6] == "| **TOTAL** | 5 | 3 | 0.60 | 3 |"


def test_no_negatives_and_no_utterances() -> None:
    s = score(OUTCOMES[:2], KEYWORDS)
    assert s.negative_false_alarms_per_utterance is None
    assert table_lines(s)[-1] == (  # STOP and CAMERA too many, in 5 s
        "false alarms: 2 in 2 utterances, 0.1 min (1.000 / utterance, 1440.0 / hour)"
    )
    empty = score([], KEYWORDS)
    assert (empty.recall, empty.false_alarms_per_utterance, empty.false_alarms_per_hour) == (
        None,
        0.0,
        0.0,
    )


def test_a_keyword_outside_the_list_is_refused() -> None:
    with pytest.raises(ValueError, match=r"c.wav: keywords not in the list: \['GO'\]"):
        score([UtteranceOutcome("c.wav", (), ("GO",), 1.0)], KEYWORDS)


def test_manifest_lines_and_their_errors(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"")
    manifest = tmp_path / "set.jsonl"
    manifest.write_text(
        '{"audio": "a.wav", "keywords": ["LIGHTS  ON", "STOP"]}\n\n'
        '{"audio": "a.wav", "keywords": []}\n{"audio": "a.wav", "keywords": null}\n'
        '{"audio": "a.wav"}\n',
        encoding="utf-8",
    )
    items = read_manifest(manifest)
    assert [(i.audio.name, i.keywords, i.line) for i in items] == [
        ("a.wav", ("LIGHTS ON", "STOP"), 1),
        ("a.wav", (), 3),
        ("a.wav", (), 4),
        ("a.wav", (), 5),
    ]
    for text, message in [
        ("{nope\n", "line 1: not JSON"),
        ('{"keywords": []}\n', "line 1: no audio path"),
        ('{"audio": "a.wav", "keywords": "STOP"}\n', "line 1: keywords must be a list"),
        ('{"audio": "b.wav"}\n', "line 1: audio file not found"),
        ("\n", "no utterances"),
    ]:
        manifest.write_text(text, encoding="utf-8")
        with pytest.raises(KeywordError, match=message) as info:
            read_manifest(manifest)
        assert str(manifest) in str(info.value)
