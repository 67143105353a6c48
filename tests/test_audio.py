"""Reading, validating, downmixing and resampling audio (speechport.audio)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechport.audio import (
    SAMPLE_RATE,
    Audio,
    audio_from_array,
    load_audio,
    resample,
    to_mono,
    write_wav,
)
from speechport.errors import AudioError

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def sine(freq: float, rate: int, num: int, amplitude: float = 1.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(num) / rate)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def sine_amplitude(samples: np.ndarray, rate: int) -> float:
    """Peak amplitude of a pure tone from the RMS of its middle (resampler edges left out)."""
    middle = samples[rate // 10 : -rate // 10]
    return float(np.sqrt(2 * np.mean(np.square(middle, dtype=np.float64))))


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def int16_noise(num: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20000, size=num, dtype=np.int16)


# --- reading files --------------------------------------------------------------------------


def test_int16_wav_round_trip_is_exact(tmp_path: Path) -> None:
    pcm = int16_noise(16000)
    sf.write(tmp_path / "a.wav", pcm, 16000, subtype="PCM_16")
    audio = load_audio(tmp_path / "a.wav")
    assert audio.samples.dtype == np.float32
    np.testing.assert_array_equal(audio.samples, pcm.astype(np.float32) / 32768)
    assert (audio.sample_rate, audio.original_sample_rate, audio.original_channels) == (
        16000,
        16000,
        1,
    )
    assert audio.source == str(tmp_path / "a.wav")
    assert audio.num_samples == 16000
    assert audio.duration == 1.0


def test_stereo_44k_is_averaged_and_resampled(tmp_path: Path) -> None:
    num = 44100 * 3 + 37
    left, right = sine(440, 44100, num, 0.6), sine(440, 44100, num, 0.2)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    audio = load_audio(tmp_path / "s.wav")
    assert abs(audio.num_samples - num * 16000 / 44100) <= 1
    assert (audio.original_sample_rate, audio.original_channels) == (44100, 2)
    assert abs(dominant_frequency(audio.samples, 16000) - 440) <= 2
    assert sine_amplitude(audio.samples, 16000) == pytest.approx(0.4, rel=0.01)


def test_flac_is_lossless(tmp_path: Path) -> None:
    pcm = int16_noise(8000, seed=1)
    sf.write(tmp_path / "a.flac", pcm, 16000, subtype="PCM_16")
    audio = load_audio(tmp_path / "a.flac")
    np.testing.assert_array_equal(audio.samples, pcm.astype(np.float32) / 32768)


def test_ogg_vorbis_is_read(tmp_path: Path) -> None:
    tone = sine(1000, 16000, 32000, 0.5)
    sf.write(tmp_path / "a.ogg", tone, 16000, format="OGG", subtype="VORBIS")
    audio = load_audio(tmp_path / "a.ogg")
    assert audio.num_samples == 32000
    assert dominant_frequency(audio.samples, 16000) == pytest.approx(1000, abs=2)
    # Vorbis is lossy: the decoded tone stays within 1% of its amplitude.
    assert sine_amplitude(audio.samples, 16000) == pytest.approx(0.5, rel=0.01)


def test_8k_input_is_upsampled(tmp_path: Path) -> None:
    sf.write(tmp_path / "n.wav", sine(1000, 8000, 8000, 0.5), 8000, subtype="FLOAT")
    audio = load_audio(tmp_path / "n.wav")
    assert audio.num_samples == 16000
    assert audio.original_sample_rate == 8000
    assert dominant_frequency(audio.samples, 16000) == pytest.approx(1000, abs=2)
    assert sine_amplitude(audio.samples, 16000) == pytest.approx(0.5, rel=0.01)


def test_other_target_rate(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", sine(440, 16000, 16000, 0.5), 16000, subtype="FLOAT")
    audio = load_audio(tmp_path / "a.wav", sample_rate=8000)
    assert (audio.sample_rate, audio.num_samples) == (8000, 8000)


def test_all_zero_audio_is_valid(tmp_path: Path) -> None:
    sf.write(tmp_path / "z.wav", np.zeros(4000, dtype=np.int16), 16000)
    audio = load_audio(tmp_path / "z.wav")
    assert audio.num_samples == 4000
    assert not audio.samples.any()


@needs_ffmpeg
def test_mp3_is_read(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", sine(440, 44100, 88200, 0.5), 44100, subtype="PCM_16")
    ffmpeg(
        "-i", str(tmp_path / "a.wav"), "-c:a", "libmp3lame", "-b:a", "320k", str(tmp_path / "a.mp3")
    )
    # 320 kbit/s: LAME scales the input by 0.95-0.98 below 256 kbit/s (headroom against
    # clipping), which would hide an amplitude error of ours.
    audio = load_audio(tmp_path / "a.mp3")
    assert audio.original_sample_rate == 44100
    # MP3 frames are 1152 samples: decoders may keep up to one frame of padding.
    assert 32000 <= audio.num_samples <= 32000 + 1152 * 16000 // 44100 + 1
    assert dominant_frequency(audio.samples, 16000) == pytest.approx(440, abs=2)
    assert sine_amplitude(audio.samples, 16000) == pytest.approx(0.5, rel=0.01)


@needs_ffmpeg
def test_mp3_through_ffmpeg_matches_libsndfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where libsndfile is older than 1.1 (no MP3), ffmpeg decodes MP3 to the same samples."""
    sf.write(tmp_path / "a.wav", sine(440, 44100, 44100, 0.5), 44100, subtype="PCM_16")
    ffmpeg(
        "-i", str(tmp_path / "a.wav"), "-c:a", "libmp3lame", "-b:a", "320k", str(tmp_path / "a.mp3")
    )  # fmt: skip
    via_soundfile = load_audio(tmp_path / "a.mp3")

    def no_mp3(*args: object, **kwargs: object) -> None:
        raise sf.LibsndfileError(1, "Error opening 'a.mp3': ")

    monkeypatch.setattr(sf, "read", no_mp3)
    via_ffmpeg = load_audio(tmp_path / "a.mp3")
    assert via_ffmpeg.num_samples == via_soundfile.num_samples
    # Two MP3 decoders (mpg123, ffmpeg's mp3float) differ only by float rounding.
    np.testing.assert_allclose(via_ffmpeg.samples, via_soundfile.samples, rtol=0, atol=1e-5)


@needs_ffmpeg
def test_m4a_is_decoded_by_ffmpeg(tmp_path: Path) -> None:
    stereo = np.stack([sine(440, 48000, 96000, 0.6), sine(440, 48000, 96000, 0.2)], axis=1)
    sf.write(tmp_path / "a.wav", stereo, 48000, subtype="PCM_16")
    ffmpeg("-i", str(tmp_path / "a.wav"), "-c:a", "aac", "-b:a", "192k", str(tmp_path / "a.m4a"))
    with pytest.raises(sf.LibsndfileError):  # so this file really takes the ffmpeg path
        sf.info(tmp_path / "a.m4a")
    audio = load_audio(tmp_path / "a.m4a")
    assert (audio.original_sample_rate, audio.original_channels) == (48000, 2)
    # AAC decoders keep up to one 1024-sample frame of padding.
    assert 32000 <= audio.num_samples <= 32000 + 1024 // 3 + 1
    assert dominant_frequency(audio.samples, 16000) == pytest.approx(440, abs=2)
    assert sine_amplitude(audio.samples, 16000) == pytest.approx(0.4, rel=0.01)


@needs_ffmpeg
def test_ffmpeg_path_downmixes_and_resamples_like_soundfile(tmp_path: Path) -> None:
    """Lossless PCM in Matroska (which libsndfile cannot read) decodes to the very same samples."""
    rng = np.random.default_rng(2)
    pcm = rng.integers(-20000, 20000, size=(22050, 2), dtype=np.int16)
    sf.write(tmp_path / "a.wav", pcm, 44100, subtype="PCM_16")
    ffmpeg("-i", str(tmp_path / "a.wav"), "-c:a", "pcm_s16le", str(tmp_path / "a.mka"))
    via_ffmpeg = load_audio(tmp_path / "a.mka")
    via_soundfile = load_audio(tmp_path / "a.wav")
    assert (via_ffmpeg.original_sample_rate, via_ffmpeg.original_channels) == (44100, 2)
    np.testing.assert_array_equal(via_ffmpeg.samples, via_soundfile.samples)


@needs_ffmpeg
def test_audio_track_of_a_video_is_read(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", sine(440, 16000, 16000, 0.5), 16000, subtype="PCM_16")
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=32x32:d=1",
        "-i", str(tmp_path / "a.wav"),
        "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(tmp_path / "v.mp4"),
    )  # fmt: skip
    audio = load_audio(tmp_path / "v.mp4")
    assert dominant_frequency(audio.samples, 16000) == pytest.approx(440, abs=2)


@needs_ffmpeg
def test_video_without_audio_is_an_error(tmp_path: Path) -> None:
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=32x32:d=1", "-c:v", "mpeg4", str(tmp_path / "v.mp4")
    )
    with pytest.raises(AudioError, match="no audio stream") as info:
        load_audio(tmp_path / "v.mp4")
    assert str(tmp_path / "v.mp4") in str(info.value)


@needs_ffmpeg
def test_without_ffmpeg_the_error_says_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libsndfile >= 1.1 reads MP3 itself, so AAC stands for "needs ffmpeg".
    sf.write(tmp_path / "a.wav", sine(440, 16000, 16000, 0.5), 16000, subtype="PCM_16")
    ffmpeg("-i", str(tmp_path / "a.wav"), "-c:a", "aac", str(tmp_path / "a.m4a"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert shutil.which("ffmpeg") is None
    with pytest.raises(AudioError, match="install ffmpeg") as info:
        load_audio(tmp_path / "a.m4a")
    assert str(tmp_path / "a.m4a") in str(info.value)


# --- invalid files --------------------------------------------------------------------------


def test_text_file_named_wav_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_text_file_without_ffmpeg_names_it_and_hints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.wav"
    path.write_text("this is not audio\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(AudioError, match="Format not recognised") as info:
        load_audio(path)
    assert str(info.value).startswith(str(path))
    assert "convert the file to WAV or FLAC" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not found") as info:
        load_audio(tmp_path / "nope.wav")
    assert str(tmp_path / "nope.wav") in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is a directory") as info:
        load_audio(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_empty_wav(tmp_path: Path) -> None:
    sf.write(tmp_path / "e.wav", np.zeros(0, dtype=np.int16), 16000)
    assert sf.info(tmp_path / "e.wav").frames == 0
    with pytest.raises(AudioError, match="contains no audio samples") as info:
        load_audio(tmp_path / "e.wav")
    assert str(tmp_path / "e.wav") in str(info.value)


def test_nan_in_float_wav(tmp_path: Path) -> None:
    samples = np.zeros(16000, dtype=np.float32)
    samples[8000] = np.nan
    samples[12000] = np.inf
    sf.write(tmp_path / "n.wav", samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"1 NaN and 1 Inf samples \(the first at 0\.500 s\)"):
        load_audio(tmp_path / "n.wav")


def test_bad_target_rate(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(100, dtype=np.int16), 16000)
    with pytest.raises(AudioError, match="positive integer"):
        load_audio(tmp_path / "a.wav", sample_rate=0)


# --- in-memory arrays and helpers -----------------------------------------------------------


def test_audio_from_int16_stereo_array() -> None:
    pcm = np.array([[32767, -32768], [16384, 0], [-16384, -16384]], dtype=np.int16)
    audio = audio_from_array(pcm, 16000, source="mic")
    np.testing.assert_array_equal(audio.samples, np.array([-0.5 / 32768, 0.25, -0.5], np.float32))
    assert (audio.source, audio.original_channels) == ("mic", 2)


def test_audio_from_float_array_is_taken_as_is() -> None:
    samples = np.array([0.1, -2.0, 0.5], dtype=np.float64)
    audio = audio_from_array(samples, SAMPLE_RATE)
    np.testing.assert_array_equal(audio.samples, samples.astype(np.float32))


def test_audio_from_array_resamples() -> None:
    audio = audio_from_array(sine(300, 48000, 48000, 0.5).astype(np.float32), 48000)
    assert (audio.sample_rate, audio.num_samples, audio.original_sample_rate) == (
        16000,
        16000,
        48000,
    )
    assert dominant_frequency(audio.samples, 16000) == pytest.approx(300, abs=2)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros(0, dtype=np.float32), "contains no audio samples"),
        (np.zeros((2, 1000), dtype=np.float32), "channels-first"),
        (np.zeros((10, 2, 2), dtype=np.float32), "shape"),
        (np.zeros(10, dtype=np.uint8), "unsupported sample type uint8"),
        (np.array([0.0, np.nan, 0.0], dtype=np.float32), "1 NaN and 0 Inf"),
    ],
)
def test_audio_from_array_rejects(samples: np.ndarray, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        audio_from_array(samples, 16000, source="buffer")


def test_audio_samples_are_read_only() -> None:
    audio = audio_from_array(np.zeros(10, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="read-only"):
        audio.samples[0] = 1.0


def test_audio_rejects_wrong_samples() -> None:
    with pytest.raises(ValueError, match="1-D float32"):
        Audio(np.zeros((4, 2), np.float32), 16000, None, 16000, 2)


def test_to_mono() -> None:
    stereo = np.array([[1.0, 0.0], [0.5, -0.5], [0.25, 0.75]])
    np.testing.assert_array_equal(to_mono(stereo), np.array([0.5, 0.0, 0.5], np.float32))
    assert to_mono(stereo).dtype == np.float32
    np.testing.assert_array_equal(to_mono(stereo[:, :1]), np.array([1.0, 0.5, 0.25], np.float32))
    np.testing.assert_array_equal(to_mono(np.arange(3.0)), np.arange(3, dtype=np.float32))


def test_resample() -> None:
    samples = np.random.default_rng(3).standard_normal(4410).astype(np.float32)
    np.testing.assert_array_equal(resample(samples, 16000, 16000), samples)
    out = resample(samples, 44100, 16000)
    assert out.dtype == np.float32
    assert out.shape == (1600,)
    assert resample(np.zeros(0, np.float32), 44100, 16000).shape == (0,)


def test_write_wav_round_trips_through_load_audio(tmp_path: Path) -> None:
    samples = np.array([0.0, 0.5, -0.25, 1.0, -1.0, 1e-5, 2.0], dtype=np.float32)
    path = write_wav(tmp_path / "sub" / "w.wav", samples, 16000)
    assert sf.info(path).subtype == "PCM_16"
    assert [p.name for p in path.parent.iterdir()] == ["w.wav"]  # no temporary left behind
    expected = np.array([0, 16384, -8192, 32767, -32768, 0, 32767], np.float32) / 32768
    np.testing.assert_array_equal(load_audio(path).samples, expected)


def test_write_wav_24_bit_and_float(tmp_path: Path) -> None:
    samples = np.array([0.5, -0.75, 3 / 2**23], dtype=np.float32)
    np.testing.assert_array_equal(
        load_audio(write_wav(tmp_path / "a.wav", samples, 16000, subtype="PCM_24")).samples,
        samples,
    )
    floats = np.array([0.123456, -1.5], dtype=np.float32)
    np.testing.assert_array_equal(
        load_audio(write_wav(tmp_path / "f.wav", floats, 16000, subtype="FLOAT")).samples, floats
    )


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_blocks_equal_the_whole_file(tmp_path: Path, rate: int, channels: int) -> None:
    """Reading in blocks (streaming resampler, per-block downmix) gives exactly the samples
    of reading the whole file at once (one-shot resampler)."""
    from speechport.audio import open_audio

    rng = np.random.default_rng(rate + channels)
    samples = (rng.standard_normal((rate * 3 + 17, channels)) * 0.1).astype(np.float32)
    path = write_wav(tmp_path / "a.wav", samples, rate, subtype="FLOAT")
    whole = load_audio(path).samples
    source = open_audio(path, block_seconds=0.37)
    blocks = list(source.blocks())
    assert len(blocks) > 5
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    np.testing.assert_array_equal(source.read_all(), whole)  # replayed from memory


def test_block_reader_gives_ranges_with_gaps_and_overlaps() -> None:
    """Ranges that skip audio (VAD windows), overlap (seams) or run past the end."""
    from speechport.audio import BlockReader

    samples = np.arange(1000, dtype=np.float32)
    ranges = [(0, 10), (5, 40), (300, 310), (305, 320), (700, 999), (990, 1200), (1300, 1400)]
    for size in (1, 7, 64, 1000):
        blocks = (samples[i : i + size] for i in range(0, samples.size, size))
        reader = BlockReader(blocks)
        for a, b in ranges:
            np.testing.assert_array_equal(reader.read(a, b), samples[a:b])
