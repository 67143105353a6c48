"""A verify report's pass rule: every file by default, or a share of them per backend when
the task gates on ``min_agreement`` (keyword spotting); and when a sweep may stop early."""

from __future__ import annotations

import pytest

from speechport.parity.report import MIN_AGREEMENT, FileResult, ParityReport


def _report(outcomes: dict[str, list[bool]], share: float | None) -> ParityReport:
    gates = {} if share is None else {MIN_AGREEMENT: share}
    report = ParityReport("b", "kws", "torch", {}, gates=gates)
    for backend, passed in outcomes.items():
        report.files += [
            FileResult(f"{i}.wav", backend, [] if ok else ["differ"]) for i, ok in enumerate(passed)
        ]
    return report


def test_without_a_share_every_file_must_pass() -> None:
    assert _report({"coreml": [True] * 99}, None).passed
    assert not _report({"coreml": [True] * 99 + [False]}, None).passed


@pytest.mark.parametrize(
    ("passed", "failed", "share", "expected"),
    [
        (99, 1, 0.99, True),  # exactly the share
        (98, 2, 0.99, False),
        (35, 1, 0.99, False),  # 97.2 %: one utterance in 36 is too many for 99 %
        (36, 0, 0.99, True),
        (7, 3, 0.7, True),
        (0, 0, 0.99, True),  # nothing scored
    ],
)
def test_share_gate(passed: int, failed: int, share: float, expected: bool) -> None:
    report = _report({"coreml": [True] * passed + [False] * failed}, share)
    assert report.passed is expected


def test_share_is_per_backend() -> None:
    report = _report({"onnx": [True] * 10, "coreml": [True] * 8 + [False] * 2}, 0.9)
    assert not report.passed
    assert _report({"onnx": [True] * 10, "coreml": [True] * 9 + [False]}, 0.9).passed


def test_cannot_pass_counts_the_files_still_to_come() -> None:
    # one failure in the first 5 of 100 files: 99 % is still reachable
    early = _report({"coreml": [True] * 4 + [False]}, 0.99)
    assert not early.passed and not early.cannot_pass(100)
    # a second failure: 98 of 100 at best
    assert _report({"coreml": [False, True, False]}, 0.99).cannot_pass(100)
    # without a share, the first failure ends it, as before
    assert _report({"coreml": [True, False]}, None).cannot_pass(100)
    assert not _report({"coreml": [True, True]}, None).cannot_pass(100)
    # an unknown total is judged on what was scored
    assert _report({"coreml": [True] * 4 + [False]}, 0.99).cannot_pass(None)
