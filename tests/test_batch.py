"""Many files at once (``transcribe --jobs``, ``Transcriber.transcribe_many``): the same
transcripts as one by one, in input order, with the run's throughput."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import speechport
from speechport.cli import main
from speechport.errors import SpeechportError
from speechport.pipelines.batch import LoadRecipe, Throughput, threads_per_job, transcribe_many
from tests.helpers import GIGAAM, read_clips

CLIPS = sorted((GIGAAM / "audio").glob("clip*.wav"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The four clips, and one of them three times over (12 s: several 5 s windows), first
    so that it finishes last."""
    root = tmp_path_factory.mktemp("batch")
    long = root / "long.wav"
    sf.write(long, np.concatenate(read_clips(CLIPS[:3])), 16000)
    return [long, *CLIPS]


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_jobs_print_what_one_job_prints_in_input_order(
    gigaam_onnx: Callable[[str], Path], files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = gigaam_onnx("v3_e2e_rnnt")
    args = (bundle, files[0], GIGAAM / "audio", "--window", "5", "--output", "json")
    code, one, stderr_one = run(capsys, "transcribe", *args, "--timestamps")
    assert code == 0
    code, three, stderr = run(capsys, "transcribe", *args, "--timestamps", "--jobs", "3")
    assert code == 0
    assert three == one
    headers = re.findall(r"^==> (.*) <==$", three, flags=re.M)
    assert headers == [str(f) for f in files]  # the directory expanded, sorted
    # a progress line per file as it finishes, then the throughput
    assert sorted(re.findall(r"^\[\d/5\] (\S+) \(", stderr, flags=re.M)) == sorted(
        str(f) for f in files
    )
    last = stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"5 files, 29\.4 s of audio, RTFx \d+\.\d \(3 jobs x \d+ threads?\) in \d+\.\d s", last
    ), last
    assert "(1 job)" in stderr_one
    code, _, quiet = run(capsys, "transcribe", *args, "--jobs", "2", "--quiet")
    assert code == 0 and quiet == ""


def test_transcribe_many_equals_transcribe_one_by_one(
    gigaam_onnx: Callable[[str], Path], files: list[Path]
) -> None:
    model = speechport.load(gigaam_onnx("v3_e2e_rnnt"), threads=1, window_seconds=5.0)
    alone = [model.transcribe(f) for f in files]
    assert len(alone[0].segments) == 4  # the long file: several windows
    finished: list[int] = []
    result = model.transcribe_many(files, jobs=2, on_done=lambda i, _: finished.append(i))
    assert [t.to_dict() for t in result.transcripts] == [t.to_dict() for t in alone]
    assert sorted(finished) == list(range(5))
    figures = result.throughput
    assert (figures.files, figures.jobs, figures.threads) == (5, 2, 1)
    assert figures.audio_seconds == pytest.approx(sum(t.duration for t in alone))
    assert figures.rtfx == pytest.approx(figures.audio_seconds / figures.wall_seconds)


def test_a_bad_file_in_a_worker_is_its_own_clear_error(
    gigaam_onnx: Callable[[str], Path], tmp_path: Path
) -> None:
    bad = tmp_path / "empty.wav"
    sf.write(bad, np.zeros(0, dtype=np.float32), 16000)
    recipe = LoadRecipe(speechport.load, gigaam_onnx("v3_e2e_rnnt"), engine={"threads": 1})
    with pytest.raises(SpeechportError, match=r"empty\.wav"):
        transcribe_many(recipe, [CLIPS[0], bad], jobs=2)


def test_a_transcriber_with_a_loaded_vad_runs_one_job_only(
    gigaam_onnx: Callable[[str], Path], vad_bundle: Path
) -> None:
    from speechport.pipelines.vad import VoiceActivityDetector
    from speechport.runtime import load_bundle

    detector = VoiceActivityDetector(load_bundle(vad_bundle, "onnx"))
    model = speechport.load(gigaam_onnx("v3_e2e_rnnt"), vad=detector)
    assert model.recipe is None
    assert len(model.transcribe_many(CLIPS[:1]).transcripts) == 1
    with pytest.raises(SpeechportError, match="jobs=1"):
        model.transcribe_many(CLIPS, jobs=2)
    by_path = speechport.load(gigaam_onnx("v3_e2e_rnnt"), vad=vad_bundle)
    assert by_path.recipe.options == {"vad": vad_bundle}


def test_jobs_share_the_cores_unless_threads_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("speechport.pipelines.batch.usable_cores", lambda: 8)
    assert [threads_per_job(j) for j in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert threads_per_job(4, threads=3) == 3
    with pytest.raises(SpeechportError, match="at least 1"):
        threads_per_job(0)


def test_throughput_summary() -> None:
    figures = Throughput(files=3, audio_seconds=90.0, wall_seconds=4.0, jobs=2, threads=1)
    assert figures.rtfx == 22.5
    assert figures.summary() == "3 files, 90.0 s of audio, RTFx 22.5 (2 jobs x 1 thread)"


def test_each_job_opens_its_own_model_on_its_share_of_the_cores(
    gigaam_onnx: Callable[[str], Path], files: list[Path]
) -> None:
    opened: list[tuple[int, Any]] = []

    def load(*args: Any, **kwargs: Any) -> Any:
        model = speechport.load(*args, **kwargs)
        opened.append((threading.get_ident(), kwargs["threads"]))
        return model

    recipe = LoadRecipe(load, gigaam_onnx("v3_e2e_rnnt"), options={"window_seconds": 5.0})
    result = transcribe_many(recipe, files, jobs=2)
    assert len(result.transcripts) == 5
    assert len({ident for ident, _ in opened}) == len(opened) == 2
    assert {threads for _, threads in opened} == {threads_per_job(2)}


def test_jobs_with_a_vad_print_what_one_job_prints(
    gigaam_onnx: Callable[[str], Path],
    vad_bundle: Path,
    files: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = gigaam_onnx("v3_e2e_rnnt")
    args: list[str | Path] = ["transcribe", bundle, *files, "--vad", vad_bundle, "--quiet"]
    code, one, _ = run(capsys, *args)
    assert code == 0 and one.count("==>") == 5
    code, two, _ = run(capsys, *args, "--jobs", "2")
    assert code == 0 and two == one
    code, _, stderr = run(capsys, *args[:3], "--vad", bundle, "--jobs", "2")
    assert code == 2 and "voice activity" in stderr


def test_jobs_leave_a_backend_without_a_thread_count_its_own(
    gigaam_onnx: Callable[[str], Path],
) -> None:
    """The torch reference takes no ``threads``: its jobs are not given a share."""
    bundle = gigaam_onnx("v3_e2e_rnnt")
    result = transcribe_many(LoadRecipe(speechport.load, bundle, "torch"), CLIPS[:2], jobs=2)
    assert result.throughput.threads is None
    expected = [speechport.load(bundle, "torch").transcribe(c).text for c in CLIPS[:2]]
    assert [t.text for t in result.transcripts] == expected


def test_jobs_stop_within_a_window_once_a_signal_arrived(
    gigaam_onnx: Callable[[str], Path], files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C reaches the main thread only; the worker threads see it at their next window
    (``interrupts.check``) instead of finishing their files."""
    import signal

    from speechport import interrupts
    from speechport.pipelines.transcriber import Transcriber

    windows: list[int] = []
    decode_window = Transcriber.decode_window

    def counted(self: Transcriber, samples: np.ndarray) -> Any:
        out = decode_window(self, samples)
        windows.append(samples.size)
        monkeypatch.setattr(interrupts, "_received", signal.SIGINT)  # as the handler records it
        return out

    monkeypatch.setattr(Transcriber, "decode_window", counted)
    recipe = LoadRecipe(
        speechport.load,
        gigaam_onnx("v3_e2e_rnnt"),
        engine={"threads": 1},
        options={"window_seconds": 5.0},
    )
    with pytest.raises(KeyboardInterrupt):
        transcribe_many(recipe, files, jobs=2)
    # each job decoded at most the window it was in when the signal came: not the long
    # file's four windows, nor the other files
    assert 1 <= len(windows) <= 2
