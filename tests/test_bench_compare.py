"""``speechport bench compare``: speechport against onnx-asr and sherpa-onnx on the same files."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechport.bench.compare import bench_compare, table
from speechport.cli import main
from tests.helpers import BundleCache

NEMO = Path(__file__).parent / "data" / "nemo"


@pytest.fixture(scope="module")
def tdt(bundle_cache: BundleCache) -> Path:
    return bundle_cache.get("parakeet", NEMO / "parakeet_tdt.nemo", "parakeet_tdt")


def test_compare_times_every_engine_and_checks_the_transcripts(tdt: Path) -> None:
    pytest.importorskip("onnx_asr")
    result = bench_compare(tdt, [NEMO / "audio"], threads=1, runs=2)
    assert (result["files"], result["threads"], result["runs"]) == (4, 1, 2)
    assert result["audio_seconds"] == pytest.approx(15.035, abs=0.01)
    rows = {row["engine"]: row for row in result["engines"]}
    assert list(rows) == ["speechport", "onnx-asr", "sherpa-onnx"]
    assert rows["speechport"]["rtfx"] > 0 and "speechport_time_ratio" not in rows["speechport"]
    # onnx-asr gives NeMo's transcripts on these clips, as speechport does
    assert rows["onnx-asr"]["transcripts_agree"] == "4/4"
    assert rows["onnx-asr"]["speechport_time_ratio"] == pytest.approx(
        rows["speechport"]["seconds"] / rows["onnx-asr"]["seconds"], rel=1e-2
    )
    assert "seconds" in rows["sherpa-onnx"] or rows["sherpa-onnx"]["skipped"]
    lines = table(result)
    assert lines[0].startswith("parakeet parakeet-tdt: 4 files, 15.035 s of audio, 1 threads")
    assert any(line.startswith("onnx-asr") and "4/4 agree" in line for line in lines)


def test_a_peer_that_cannot_run_the_bundle_is_listed_with_the_reason(
    tdt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx_asr")
    clip = NEMO / "audio" / "clip0.wav"
    code = main(["bench", "compare", str(tdt), str(clip), "--runs", "1", "--onnx-asr-model", "x"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1 files" in out and "speechport" in out
    assert any(line.startswith("onnx-asr") and "cannot load" in line for line in out.splitlines())
