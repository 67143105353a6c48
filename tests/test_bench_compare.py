"""``speechport bench compare``: speechport against onnx-asr and sherpa-onnx on the same files."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from speechport.bench.compare import bench_compare, settle, table
from speechport.bench.compare_models import bench_compare_models
from speechport.bench.compare_models import table as table_models
from speechport.bench.random_models import RANDOM_MODELS, REALISTIC_TOKENS_PER_SECOND, set_emission
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


def test_settle_waits_for_a_spinning_thread_to_stop() -> None:
    # An idle process settles at the first poll (the first call waits out any pool an
    # earlier test left spinning).
    settle()
    assert settle() < 0.1

    # A thread that spins on for 0.3 s (as a peer's thread pool does after its call
    # returns) holds the next engine's turn until it stops, not beyond the limit.
    def spin() -> None:
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    waited = settle()
    spinner.join()
    assert 0.25 < waited < 1.0
    spinner = threading.Thread(target=spin)
    spinner.start()
    assert settle(limit=0.1) < 0.2
    spinner.join()


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


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Parakeet-TDT random model, shrunk, in both emission settings, compared on 3 s and
    20 s of synthetic speech (the full-size path of ``bench compare`` without a bundle)."""
    pytest.importorskip("onnx_asr")
    work = tmp_path_factory.mktemp("random-models")
    return bench_compare_models(
        ["parakeet-tdt"],
        ["realistic", "worst"],
        seconds=[3.0, 20.0],
        size="tiny",
        threads=1,
        runs=1,
        work_dir=work,
    )


def test_random_models_are_compared_per_emission_and_clip(tiny_models: dict[str, Any]) -> None:
    rows = tiny_models["rows"]
    assert [(r["emission"], r["audio"]) for r in rows] == [
        ("realistic", "3 s synthetic"),
        ("realistic", "20 s synthetic"),
        ("worst", "3 s synthetic"),
        ("worst", "20 s synthetic"),
    ]
    for row in rows:
        assert row["random_model"] == "parakeet-tdt" and row["model"] == "parakeet parakeet-tdt"
        engines = {e["engine"]: e for e in row["engines"]}
        assert list(engines) == ["speechport", "onnx-asr", "sherpa-onnx"]
        assert engines["speechport"]["rtfx"] > 0 and engines["onnx-asr"]["rtfx"] > 0
        split = row["speechport_split"]
        assert list(split) == ["front end", "encoder", "decode loop"]
        assert all(0 < share < 1 for share in split.values()) and sum(split.values()) <= 1
        assert len(row["load_average"]) == 2
    realistic, worst = rows[1]["tokens_per_second"], rows[3]["tokens_per_second"]
    # random weights: a token at nearly every step (12.5 frames per second), fewer with
    # blank raised (the rate is calibrated on another clip: a tiny model's is erratic)
    assert realistic < worst and worst > 10
    lines = table_models(tiny_models)
    assert lines[0] == "random-weight models (tiny size), 1 threads"
    assert lines[2].startswith("parakeet-tdt  realistic  3 s synthetic")
    assert "encoder" in lines[2] and "decode loop" in lines[2]


def test_the_realistic_shift_is_bisected_on_greedy_decodings_rate(tmp_path: Path) -> None:
    from speechport.bench.decode_loop import synthetic_speech

    model = RANDOM_MODELS["gigaam-ctc"]
    loaded = model.build(tmp_path, "tiny", 0)
    plan = model.plan(loaded)
    clip = synthetic_speech(8.0, plan.sample_rate, seed=1)
    torch_model: Any = loaded.model
    bias = torch_model.head.decoder_layers[0].bias.detach()
    before = bias.detach().clone()
    assert set_emission(model, loaded, plan, "worst", clip)[0] == 0.0
    shift, rate = set_emission(model, loaded, plan, "realistic", clip)
    assert shift > 0 and 0 < rate <= REALISTIC_TOKENS_PER_SECOND
    changed = (bias.detach() - before).nonzero().flatten().tolist()
    assert changed == [plan.decoding.blank_id]  # type: ignore[union-attr]
    assert float((bias - before)[changed[0]]) == pytest.approx(shift)


def test_cli_compare_without_a_bundle_builds_the_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx_asr")
    args = ["bench", "compare", "--model", "gigaam-ctc", "--emission", "worst", "--size", "tiny"]
    common = ["--seconds", "2", "--runs", "1", "--threads", "1", "--work-dir", str(tmp_path)]
    assert main([*args, *common]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "random-weight models (tiny size), 1 threads"
    assert out[2].startswith("gigaam-ctc    worst      2 s synthetic")
    assert (tmp_path / "gigaam-ctc-tiny-worst" / "speechport.json").is_file()


def test_cli_compare_errors_name_what_to_fix(tdt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "compare", str(tdt)]) != 0
    assert "no audio after the bundle" in capsys.readouterr().err
    assert main(["bench", "compare", "--seconds", "4,x"]) != 0
    assert "--seconds '4,x' is not a list of positive lengths" in capsys.readouterr().err
