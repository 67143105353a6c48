"""The host loop of speech synthesis (pipelines/synthesis.py) on plain arrays, and the
speaker (pipelines/speaker.py) on numpy stand-ins for the two stages (tests/tts_fakes.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from speechport.errors import SpeechportError
from speechport.pipelines.speaker import FADE_SECONDS, PAUSES, Speaker
from speechport.pipelines.synthesis import (
    BucketError,
    align,
    frames_per_token,
    random_inputs,
    smallest_bucket,
    style_row,
    token_ids,
)
from speechport.text.phonemes import PhonemeError
from speechport.text.split import END, SENTENCE
from tests.tts_fakes import SPF, VOCAB, fake_bundle

PACK = np.arange(510, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)


def test_style_row_is_upstreams_number_of_phonemes_minus_one() -> None:
    # upstream KPipeline: pack[len(ps) - 1]; kokoro-onnx / sherpa-onnx use pack[len(ps)]
    assert style_row(PACK, 1)[0, 0] == 0
    assert style_row(PACK, 12)[0, 0] == 11
    assert style_row(PACK, 510)[0, 0] == 509
    assert style_row(PACK, 0)[0, 0] == 0  # clamped
    assert style_row(PACK, 900)[0, 0] == 509
    assert style_row(PACK, 12).shape == (1, 4)


def test_smallest_bucket() -> None:
    assert smallest_bucket([128, 512], 3) == 128
    assert smallest_bucket([512, 128], 128) == 128
    assert smallest_bucket([128, 512], 129) == 512
    assert smallest_bucket([128, 512], 513) is None


def test_token_ids_have_boundaries_and_zero_padding() -> None:
    ids, length = token_ids([5, 6, 7], 8)
    assert ids.tolist() == [[0, 5, 6, 7, 0, 0, 0, 0]]
    assert ids.dtype == np.int32
    assert length.tolist() == [5]
    with pytest.raises(BucketError):
        token_ids(list(range(1, 8)), 8)


def test_frames_per_token_round_half_to_even_and_at_least_one() -> None:
    durations = np.array([[0.2, 0.5, 1.5, 2.5, 3.49, 3.5, 7.0, 9.0]], np.float32)
    # torch.round is half to even: 0.5 -> 0 (then 1), 1.5 -> 2, 2.5 -> 2, 3.5 -> 4
    assert frames_per_token(durations, 7).tolist() == [1, 1, 2, 2, 3, 4, 7]


def test_align_repeats_each_token_like_the_alignment_matrix() -> None:
    rng = np.random.default_rng(1)
    prosody = rng.standard_normal((1, 6, 3)).astype(np.float32)  # [1, N, Cp]
    text = rng.standard_normal((1, 5, 6)).astype(np.float32)  # [1, Ct, N]
    frames = np.array([2, 1, 3, 1])  # 4 valid tokens of 6, 7 frames
    # upstream: en = d^T @ aln with aln[token, frame] = 1
    aln = np.zeros((6, 7), np.float32)
    aln[np.repeat(np.arange(4), frames), np.arange(7)] = 1
    got = align(prosody, frames, 10, time_axis=1)
    assert got.shape == (1, 3, 10)
    np.testing.assert_array_equal(got[:, :, :7], prosody.transpose(0, 2, 1) @ aln)
    assert not got[:, :, 7:].any()
    got_t = align(text, frames, 10, time_axis=2)
    np.testing.assert_array_equal(got_t[:, :, :7], text @ aln)
    assert not got_t[:, :, 7:].any()
    with pytest.raises(BucketError):
        align(prosody, frames, 6, time_axis=1)


def test_random_inputs_are_drawn_at_the_true_length() -> None:
    a = random_inputs(
        ("noise", "phase"), seed=3, frames=5, bucket=8, samples_per_frame=600, harmonics=9
    )
    b = random_inputs(
        ("noise", "phase"), seed=3, frames=5, bucket=20, samples_per_frame=600, harmonics=9
    )
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((1, 3000, 9), dtype=np.float32)
    phase = rng.random((1, 9), dtype=np.float32)
    phase[:, 0] = 0
    assert a["noise"].shape == (1, 4800, 9) and b["noise"].shape == (1, 12000, 9)
    np.testing.assert_array_equal(a["noise"][:, :3000], noise)
    np.testing.assert_array_equal(b["noise"][:, :3000], noise)
    assert not a["noise"][:, 3000:].any() and not b["noise"][:, 3000:].any()
    np.testing.assert_array_equal(a["phase"], phase)
    np.testing.assert_array_equal(b["phase"], phase)
    with pytest.raises(SpeechportError, match="unknown random input 'jitter'"):
        random_inputs(("jitter",), seed=0, frames=1, bucket=1, samples_per_frame=1, harmonics=1)


# --- the speaker on numpy stand-ins ----------------------------------------------------------


@pytest.fixture
def speaker(tmp_path: Path) -> Speaker:
    bundle, spec = fake_bundle(tmp_path)
    return Speaker(bundle, spec)


def _durations(ps: str, speed: float = 1.0) -> np.ndarray:
    ids = np.array([0, *[VOCAB[c] for c in ps], 0])
    return frames_per_token(((ids % 7) * 0.5 + 0.5) / speed, ids.size)


def test_speak_phonemes_one_chunk(speaker: Speaker) -> None:
    ps = "həɹ ɪz ə tɛst."
    speech = speaker.speak(ps, phonemes=True, seed=7)
    frames = _durations(ps)
    assert speech.sample_rate == 24000
    assert speech.phonemes == ps
    (chunk,) = speech.chunks
    assert (chunk.start, chunk.end, chunk.boundary) == (0, int(frames.sum()) * SPF, END)
    assert chunk.token_bucket == 16 and chunk.frames == int(frames.sum())
    assert chunk.frame_bucket == 40
    # the fake writes token ids per frame: the alignment the host built, faded at the edges
    ids = np.array([0, *[VOCAB[c] for c in ps], 0])
    fade = round(FADE_SECONDS * 24000)
    expected = np.repeat(np.repeat(ids, frames), SPF).astype(np.float32)
    middle = slice(fade, speech.samples.size - fade)
    rng = np.random.default_rng(7)
    noise = rng.standard_normal((1, expected.size, 9), dtype=np.float32)[0, :, 0]
    phase = rng.random((1, 9), dtype=np.float32)[0, 1]
    np.testing.assert_allclose(
        speech.samples[middle], (expected + 1e-3 * noise + phase)[middle], rtol=1e-6
    )
    assert abs(speech.samples[0]) < abs(expected[0] + 1) * 0.01  # faded in


def test_style_row_follows_each_chunks_phoneme_count(tmp_path: Path) -> None:
    bundle, spec = fake_bundle(tmp_path)
    inner = bundle.components["text_stage_16"]
    styles: list[float] = []

    class Spy:
        spec = inner.spec

        def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
            styles.append(float(inputs[2][0, 0]))  # the fake pack's row r holds r
            return inner(*inputs)

    bundle.components["text_stage_16"] = Spy()
    Speaker(bundle, spec).speak("abc.", phonemes=True)
    assert styles == [3.0]  # 4 phonemes -> row 3, not 4


def test_same_audio_in_every_frame_bucket(tmp_path: Path) -> None:
    small, spec = fake_bundle(tmp_path / "a", frame_buckets=(40, 120))
    large, spec_l = fake_bundle(tmp_path / "b", frame_buckets=(120,))
    a = Speaker(small, spec).speak("ab ɪz.", phonemes=True)
    b = Speaker(large, spec_l).speak("ab ɪz.", phonemes=True)
    assert [c.frame_bucket for c in a.chunks] == [40]
    assert [c.frame_bucket for c in b.chunks] == [120]
    np.testing.assert_array_equal(a.samples, b.samples)


def test_long_input_is_split_and_nothing_is_dropped(speaker: Speaker) -> None:
    sentence = "ðə kwɪk bɹaʊn fɑks dʒʌmps, ovəɹ ðə leɪzi dɑɡ; ænd ɹʌnz əweɪ."
    ps = " ".join([sentence] * 6)
    speech = speaker.speak(ps, phonemes=True)
    spoken = "".join(c.phonemes for c in speech.chunks).replace(" ", "")
    assert spoken == ps.replace(" ", "")
    for chunk in speech.chunks:
        assert len(chunk.phonemes) <= 62 and chunk.frames <= 120
    assert speech.chunks[-1].boundary == END
    assert any(c.boundary == SENTENCE for c in speech.chunks)
    # pauses after sentences and phrases; chunks in order, contiguous with the pauses
    for prev, nxt in zip(speech.chunks, speech.chunks[1:], strict=False):
        pause = round(PAUSES.get(prev.boundary, 0.0) * 24000)
        assert nxt.start == prev.end + pause
    assert speech.chunks[-1].end == speech.samples.size


def test_frames_beyond_the_largest_bucket_resplit(tmp_path: Path) -> None:
    bundle, spec = fake_bundle(tmp_path, frame_buckets=(40,))
    speech = Speaker(bundle, spec).speak("zzzz zzzz zzzz zzzz zzzz zzzz.", phonemes=True)
    assert len(speech.chunks) > 1
    assert all(c.frames <= 40 for c in speech.chunks)
    assert "".join(c.phonemes for c in speech.chunks).replace(" ", "") == "zzzz" * 6 + "."


def test_slower_speech_has_more_frames(speaker: Speaker) -> None:
    fast = speaker.speak("abc", phonemes=True, speed=2.0)
    slow = speaker.speak("abc", phonemes=True, speed=0.5)
    assert slow.chunks[0].frames == int(_durations("abc", 0.5).sum())
    assert fast.chunks[0].frames == int(_durations("abc", 2.0).sum())
    assert slow.samples.size > fast.samples.size


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "abʘ", "phonemes": True}, r"unknown phoneme 'ʘ' \(U\+0298\)"),
        ({"text": "  ", "phonemes": True}, "empty"),
        (
            {"text": "abc", "phonemes": True, "voice": "zz"},
            "unknown voice 'zz'; .*af_test, bm_test",
        ),
        ({"text": "abc", "phonemes": True, "speed": 3.0}, "speed 3 is out of range"),
        ({"text": "abc", "phonemes": True, "speed": float("nan")}, "out of range"),
    ],
)
def test_bad_input(speaker: Speaker, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((SpeechportError, PhonemeError), match=message):
        speaker.speak(**kwargs)  # type: ignore[arg-type]


def test_voices(speaker: Speaker) -> None:
    assert speaker.voices == ["af_test", "bm_test"]
    a = speaker.speak("abc", phonemes=True, voice="bm_test")
    assert a.samples.size > 0


LONG_TEXT = (
    "Speech synthesis turns written language into sound, and a good system never drops a "
    "word. This paragraph is long on purpose: it has short sentences. It has long ones, too, "
    "with commas, semicolons; colons: and dashes — all of which are places to pause. "
    "Numbers such as 1,234 and 3.5 are read by espeak-ng, and so are dates like May 21st. "
) * 5 + (
    "and here is a run of words with no punctuation at all that goes on and on well past "
    "the limit of a single chunk so that the splitter has to cut it between words instead "
    "of at a phrase mark which it does without losing any of them, not even one, not one "
    "Now the end is near. The very last word of this text is zebra."
)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_two_thousand_characters_spoken_whole(speaker: Speaker) -> None:
    assert len(LONG_TEXT) >= 2000
    phonemes = speaker.phonemes(LONG_TEXT)
    speech = speaker.speak(LONG_TEXT)
    assert "".join(c.phonemes for c in speech.chunks).replace(" ", "") == phonemes.replace(" ", "")
    assert speech.chunks[-1].phonemes.endswith("zˈibɹə.")  # the ending is spoken
    assert speech.chunks[-1].end == speech.samples.size
    assert all(len(c.phonemes) <= speaker.max_phonemes for c in speech.chunks)
    assert all(c.frames <= 120 for c in speech.chunks)
    assert len(speech.chunks) > 20


def test_stream_runs_one_chunk_at_a_time(tmp_path: Path) -> None:
    bundle, spec = fake_bundle(tmp_path)
    calls = {"n": 0}
    inner = bundle.components["text_stage_64"]

    class Counting:
        spec = inner.spec

        def __call__(self, *inputs: np.ndarray) -> tuple[np.ndarray, ...]:
            calls["n"] += 1
            return inner(*inputs)

    bundle.components["text_stage_64"] = Counting()
    ps = " ".join(["ðə kwɪk bɹaʊn fɑks dʒʌmps ovəɹ ðə leɪzi dɑɡz bæk."] * 10)
    stream = Speaker(bundle, spec).stream(ps, phonemes=True)
    assert calls["n"] == 0  # checked, nothing run yet
    first = next(iter(stream))
    assert first.chunk is not None and calls["n"] == 1
    assert sum(1 for _ in stream) > 10  # the rest follows on demand


def test_chunks_join_without_clicks(speaker: Speaker) -> None:
    ps = "ðə kwɪk bɹaʊn fɑks, dʒʌmps ovəɹ. ðə leɪzi dɑɡ"
    speech = speaker.speak(ps, phonemes=True)
    assert len(speech.chunks) == 2
    for chunk in speech.chunks:
        audio = speech.samples[chunk.start : chunk.end]
        peak = np.abs(audio).max()
        # faded to silence at both edges: no step where a chunk meets a pause or the next
        assert abs(audio[0]) < 1e-4 * peak and abs(audio[-1]) < 1e-4 * peak
        fade = round(FADE_SECONDS * 24000)
        assert np.all(np.abs(np.diff(audio[: fade + 1])) < 0.05 * peak)
    first, second = speech.chunks
    assert not speech.samples[first.end : second.start].any()  # the pause is silence
