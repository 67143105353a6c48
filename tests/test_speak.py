"""``speechport.load(tts_bundle).speak`` and ``speechport speak`` on a bundle whose stages are
small ONNX graphs (tests/tts_onnx_bundle.py): audio out, the WAV file, bad input refused
with one line and exit status 2, nothing written; the standalone example script."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import speechport
from speechport.cli import main
from speechport.pipelines.speaker import PAUSES
from speechport.text.split import SENTENCE
from tests.tts_fakes import SPF
from tests.tts_onnx_bundle import write_onnx_tts_bundle

PHONEMES = "ðə fɑks. ænd ðə dɑɡ!"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_onnx_tts_bundle(tmp_path_factory.mktemp("tts") / "bundle")


def test_load_and_speak(bundle: Path) -> None:
    speaker = speechport.load(bundle)
    assert speaker.voices == ["af_test", "bm_test"]
    speech = speaker.speak(PHONEMES, phonemes=True, seed=3)
    assert speech.sample_rate == 24000 and speech.samples.dtype == np.float32
    assert [c.phonemes for c in speech.chunks] == ["ðə fɑks.", "ænd ðə dɑɡ!"]
    assert [c.boundary for c in speech.chunks] == [SENTENCE, "end"]
    first, second = speech.chunks
    assert second.start == first.end + round(PAUSES[SENTENCE] * 24000)
    assert speech.samples.size == second.end
    assert (first.end - first.start) == first.frames * SPF


def test_speak_writes_a_wav(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "speech.wav"
    status = main(["speak", str(bundle), PHONEMES, "--phonemes", "--seed", "3", "--out", str(out)])
    assert status == 0
    data, rate = sf.read(out, dtype="float32")
    expected = speechport.load(bundle).speak(PHONEMES, phonemes=True, seed=3).samples
    assert rate == 24000 and data.shape == expected.shape
    scale = 1 / 32768  # 16-bit PCM
    assert np.abs(data - np.clip(expected, -1, 1)).max() <= scale
    assert "voice af_test, 2 chunk(s)" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.wav"]


def test_speak_reads_stdin(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PHONEMES + "\n"))
    out = tmp_path / "s.wav"
    assert main(["speak", str(bundle), "-", "--phonemes", "--out", str(out)]) == 0
    assert sf.info(out).frames > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", "--phonemes"], "the phoneme string is empty"),
        (["   "], "the text is empty"),
        (["... ?!"], "the text has no speakable characters"),
        (["abʘ", "--phonemes"], r"unknown phoneme 'ʘ' \(U\+0298\)"),
        (
            [PHONEMES, "--phonemes", "--voice", "zz"],
            "unknown voice 'zz'; this bundle has af_test, bm_test",
        ),
        ([PHONEMES, "--phonemes", "--speed", "5"], "speed 5 is out of range"),
        ([PHONEMES, "--phonemes", "--speed", "0"], "speed 0 is out of range"),
        ([PHONEMES, "--phonemes", "--seed", "-1"], "seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "speech.wav"
    status = main(["speak", str(bundle), *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("speechport: error: ")
    assert re.search(message, err), err
    assert list(tmp_path.iterdir()) == []


def test_model_card_describes_text_voices_and_usage(bundle: Path) -> None:
    from speechport.export.card import render_card
    from speechport.manifest import read_manifest

    card = render_card(read_manifest(bundle), bundle)
    assert "## Text and voices" in card and "## Front end" not in card
    assert "acoustic stage at 40 (1 s) and 120 (3 s) frames of 600 samples" in card
    assert '`python example_infer_onnx.py "Hello there." --out speech.wav`' in card
    assert "| `voices` | " in card and "voice style packs" in card
    assert "Not measured yet: `speechport verify .` (built-in sentences" in card


def test_verify_refuses_audio_for_a_tts_bundle(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["verify", str(bundle), "--audio", str(bundle / "speechport.json")])
    assert status == 2
    assert "speech synthesis is verified on texts, not audio" in capsys.readouterr().err


@needs_espeak
def test_speak_text_through_espeak(bundle: Path) -> None:
    speech = speechport.load(bundle).speak("Hello, world! How are you?")
    assert speech.phonemes == "həlˈO, wˈɜɹld! hˈW ɑɹ ju?"
    assert len(speech.chunks) == 2


def test_example_script_speaks_like_speechport(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "example.wav"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no speechport
    done = subprocess.run(
        [sys.executable, str(bundle / "example_infer_onnx.py"), PHONEMES, "--phonemes",
         "--seed", "3", "--out", str(out)],
        capture_output=True, text=True, env=env, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data, _ = sf.read(out, dtype="float32")
    speech = speechport.load(bundle).speak(PHONEMES, phonemes=True, seed=3)
    first, second = speech.chunks
    # the example does not fade chunk edges: compare away from them
    fade = 120
    a = slice(first.start + fade, first.end - fade)
    b = slice(second.start + fade, second.end - fade)
    assert data.size == speech.samples.size
    expected = np.clip(speech.samples, -1, 1)  # the stand-in's audio is not speech-sized
    assert np.abs(data[a] - expected[a]).max() <= 2 / 32768
    assert np.abs(data[b] - expected[b]).max() <= 2 / 32768


def test_speak_and_info_without_torch_or_onnx(bundle: Path, tmp_path: Path) -> None:
    from tests.test_runtime_without_torch import BLOCKER

    out = tmp_path / "s.wav"
    for args in (["speak", bundle, PHONEMES, "--phonemes", "--out", out], ["info", bundle]):
        done = subprocess.run(
            [sys.executable, "-c", BLOCKER, *map(str, args)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert "voices: af_test, bm_test (default af_test)" in done.stdout
    assert sf.info(out).frames > 0


@needs_espeak
def test_another_espeak_version_warns(bundle: Path) -> None:
    speaker = speechport.load(bundle)
    speaker.spec = type(speaker.spec)(**{**speaker.spec.__dict__, "g2p": {
        "engine": "espeak-ng", "language": "en-us", "version": "0.99"}})  # fmt: skip
    with pytest.warns(UserWarning, match=r"espeak-ng 1\.\d+ is installed; .* checked with 0\.99"):
        speaker.speak("Hi.")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read voice 'af_test'"),
        (
            np.zeros((5, 7), np.float32),
            r"voice 'af_test' has shape \[5, 7\], expected \[rows, 16\]",
        ),
        (np.array([{"a": 1}], dtype=object), "cannot read voice 'af_test'"),
    ],
)
def test_a_broken_voice_file_is_named(
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: np.ndarray | None,
    message: str,
) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(bundle, broken)
    voice = broken / "voices" / "af_test.npy"
    if content is None:
        voice.unlink()
    else:
        np.save(voice, content, allow_pickle=True)
    out = tmp_path / "s.wav"
    assert main(["speak", str(broken), PHONEMES, "--phonemes", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "voices/af_test.npy" in err, err
    assert not out.exists()
