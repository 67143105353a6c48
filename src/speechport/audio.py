"""Read any audio file as 16 kHz mono float32, validate it, and fail with a clear message.

Runtime path: numpy, soundfile and soxr only (no torch). Files that libsndfile cannot read
(M4A/AAC, video containers, ...) are decoded by an ``ffmpeg`` binary when one is on PATH.
Both decoders return the file's own channels and sample rate; the downmix (mean of the
channels) and the resampling (soxr) are then done here, identically for both.

Files are read in blocks (`BLOCK_SECONDS` of the file's frames at a time: libsndfile's
``SoundFile.read(n)``, or fixed-size reads of ffmpeg's pipe), downmixed and resampled block by
block with soxr's streaming resampler, so that `AudioSource.blocks` holds one block at a time
whatever the file's length. The blocks are bit-identical to reading the whole file at once:
libsndfile and ffmpeg decode the same frames either way, the downmix is per frame, and soxr's
``ResampleStream`` gives exactly the samples of its one-shot ``resample`` (checked in
tests/test_audio.py for every common rate). The header (sample rate, channels, frame count
against the file's size) is checked before anything is decoded, and only regular files are
opened (a FIFO without a writer would block forever).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeAlias

import numpy as np
import soundfile as sf
import soxr

from speechport.errors import AudioError
from speechport.fsutil import atomic_write_bytes

SAMPLE_RATE = 16000

# A file's own sample rate must lie in this range (telephone to studio rates): a header that
# declares 1 Hz turns 40 KB of samples into hours of audio to resample.
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
# Channels a file may declare (7.1 is 8; ambisonic and array recordings go higher).
MAX_CHANNELS = 64
# Seconds of the file's frames decoded per block.
BLOCK_SECONDS = 10.0
# Decoded audio up to this length is kept from the first read of a file and replayed to later
# reads (a transcriber reads a file twice: once to plan its windows, once to decode them), so
# that short compressed files are decoded once; longer ones are decoded again.
REPLAY_SECONDS = 300.0

# soxr 'HQ' (20-bit precision, ~120 dB stop-band rejection) is already below the noise floor
# of 16-bit input and far below anything a speech front end resolves, at roughly half the
# cost of 'VHQ' (28-bit); it is also librosa's default ('soxr_hq'), which the reference
# pipelines of the upstream models use.
_SOXR_QUALITY = "HQ"

_FFMPEG_HINT = (
    "install ffmpeg (https://ffmpeg.org, e.g. `apt install ffmpeg` or `brew install ffmpeg`) "
    "to read MP3/M4A/video files, or convert the file to WAV or FLAC"
)
_AU_MAGIC = b".snd"
_AU_FLOAT32 = 6
_INT_SCALES = {np.dtype(np.int16): 1.0 / 32768.0, np.dtype(np.int32): 1.0 / 2147483648.0}
_PCM_BITS = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32}
# bytes per sample of the uncompressed subtypes, whose frame count the file size bounds
_SUBTYPE_BYTES = {
    "PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
    "FLOAT": 4, "DOUBLE": 8, "ULAW": 1, "ALAW": 1,
}  # fmt: skip
_UNCOMPRESSED_FORMATS = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "AU", "CAF"}


@dataclass(frozen=True, eq=False)
class Audio:
    """Mono float32 samples at ``sample_rate``, with what the source file held.

    ``samples`` is made read-only; copy it before changing it in place.
    """

    samples: np.ndarray
    sample_rate: int
    source: str | None
    original_sample_rate: int
    original_channels: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or self.samples.dtype != np.float32:
            raise ValueError(
                f"Audio.samples must be 1-D float32, got {self.samples.dtype} "
                f"of shape {self.samples.shape}"
            )
        self.samples.setflags(write=False)

    @property
    def num_samples(self) -> int:
        """Number of (mono) samples."""
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".aiff", ".au")


def collect_audio(paths: list[Path]) -> list[Path]:
    """Files as given, and the audio files (by suffix) inside directories, sorted; an empty
    directory or a missing path is an error."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
            )
            if not inside:
                raise AudioError(
                    "no audio files in this directory",
                    path=path,
                    hint=f"expected files ending in {', '.join(AUDIO_SUFFIXES)}",
                )
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise AudioError("no such audio file or directory", path=path)
    return found


def load_audio(path: str | Path, *, sample_rate: int = SAMPLE_RATE) -> Audio:
    """Read an audio (or video) file as mono float32 at ``sample_rate``.

    Raises `AudioError` for a missing, unreadable, empty or non-finite file.
    """
    _check_rate(sample_rate, "target sample rate")
    path = Path(path)
    with _open_frames(path, BLOCK_SECONDS) as (header, blocks):
        parts = list(blocks)
    frames = np.concatenate(parts) if parts else np.zeros((0, header.channels), dtype=np.float32)
    return _build(frames, header.sample_rate, sample_rate, source=str(path))


def audio_from_array(
    samples: np.ndarray,
    sample_rate: int,
    *,
    source: str | None = None,
    target_rate: int = SAMPLE_RATE,
) -> Audio:
    """Validate, downmix and resample in-memory samples (shape ``[n]`` or ``[n, channels]``).

    int16 and int32 samples are scaled to [-1, 1) (by 1/32768 and 1/2**31); float samples are
    taken as they are.
    """
    _check_rate(sample_rate, "sample rate", source)
    _check_rate(target_rate, "target sample rate", source)
    frames = _as_float_frames(np.asarray(samples), source)
    return _build(frames, sample_rate, target_rate, source=source)


AudioInput: TypeAlias = str | Path | np.ndarray


def read_input(
    audio: AudioInput, *, sample_rate: int | None, target_rate: int
) -> tuple[np.ndarray, str | None]:
    """Samples at ``target_rate`` and their source name, from what a user passes: a file
    path (read, downmixed, resampled), or an array at ``sample_rate`` (resampled when it
    differs; ``None``: already at ``target_rate``)."""
    if isinstance(audio, (str, Path)):
        if sample_rate is not None:
            raise AudioError(
                "sample_rate is for arrays; a file's rate is read from the file", path=audio
            )
        return load_audio(audio, sample_rate=target_rate).samples, str(audio)
    if sample_rate is None or sample_rate == target_rate:
        return np.asarray(audio, dtype=np.float32), None
    return audio_from_array(audio, sample_rate, target_rate=target_rate).samples, None


def open_audio(
    audio: AudioInput,
    *,
    sample_rate: int | None = None,
    target_rate: int = SAMPLE_RATE,
    block_seconds: float = BLOCK_SECONDS,
) -> AudioSource:
    """What a user passes (a file path, or an array at ``sample_rate``) as an `AudioSource`
    of mono float32 at ``target_rate``, read in blocks. A file is not decoded until its blocks
    are read; an array is checked and resampled now (it is in memory already)."""
    _check_rate(target_rate, "target sample rate")
    if isinstance(audio, (str, Path)):
        if sample_rate is not None:
            raise AudioError(
                "sample_rate is for arrays; a file's rate is read from the file", path=audio
            )
        path = Path(audio)
        _check_readable(path)
        return AudioSource(target_rate, str(path), path=path, block_seconds=block_seconds)
    if sample_rate is None or sample_rate == target_rate:
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise AudioError(f"expected mono samples of shape [n], got {samples.shape}")
        if not np.isfinite(samples).all():
            bad = int(np.count_nonzero(~np.isfinite(samples)))
            raise AudioError(f"the samples hold {bad} NaN or infinite values")
    else:
        samples = audio_from_array(audio, sample_rate, target_rate=target_rate).samples
    return AudioSource(target_rate, None, array=samples, block_seconds=block_seconds)


class AudioSource:
    """Mono float32 audio at ``sample_rate``, read in blocks, as many times as needed.

    `blocks` decodes a file afresh each time (the first `REPLAY_SECONDS` are replayed from
    memory), so a consumer holds one block, plus what it keeps itself, whatever the length.
    ``original_sample_rate`` and ``original_channels`` are known once a read has begun.
    """

    def __init__(
        self,
        sample_rate: int,
        source: str | None,
        *,
        path: Path | None = None,
        array: np.ndarray | None = None,
        block_seconds: float = BLOCK_SECONDS,
    ) -> None:
        if (path is None) == (array is None):
            raise ValueError("pass a path or an array")
        if not block_seconds > 0:
            raise ValueError(f"block_seconds must be positive, got {block_seconds}")
        self.sample_rate = sample_rate
        self.source = source
        self.path = path
        self.block_seconds = block_seconds
        self._array = array
        self._replay: list[np.ndarray] | None = None
        self.original_sample_rate: int | None = None if array is None else sample_rate
        self.original_channels: int | None = None if array is None else 1

    def blocks(self, *, keep: bool = True) -> Iterator[np.ndarray]:
        """Mono float32 blocks at ``sample_rate``; a file's header is checked first, every
        block's samples are checked to be finite. ``keep=False``: a single pass, nothing
        kept for a replay (memory independent of the length from the first sample on)."""
        if self._array is not None:
            step = max(1, round(self.block_seconds * self.sample_rate))
            for start in range(0, self._array.shape[0], step):
                yield self._array[start : start + step]
            return
        if self._replay is not None:
            yield from self._replay
            return
        kept: list[np.ndarray] | None = [] if keep else None
        kept_size, limit = 0, REPLAY_SECONDS * self.sample_rate
        for block in self._decode():
            if kept is not None:
                kept_size += block.size
                if kept_size <= limit:
                    kept.append(block)
                else:
                    kept = None
            yield block
        if keep:
            self._replay = kept

    def read_all(self) -> np.ndarray:
        """Every sample in one array (as much memory as the audio)."""
        parts = list(self.blocks())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def _decode(self) -> Iterator[np.ndarray]:
        assert self.path is not None
        path = self.path
        with _open_frames(path, self.block_seconds) as (header, frames):
            self.original_sample_rate = header.sample_rate
            self.original_channels = header.channels
            resampler = (
                None
                if header.sample_rate == self.sample_rate
                else soxr.ResampleStream(
                    header.sample_rate, self.sample_rate, 1, dtype="float32", quality=_SOXR_QUALITY
                )
            )
            position = 0
            for block in frames:
                _check_finite_block(block, header.sample_rate, position, str(path))
                position += block.shape[0]
                mono = np.ascontiguousarray(to_mono(block))
                if resampler is not None:
                    mono = np.asarray(resampler.resample_chunk(mono, last=False), np.float32)
                if mono.size:
                    yield mono
            if position == 0:
                raise AudioError("contains no audio samples", path=path)
            if resampler is not None:
                tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
                if tail.size:
                    yield np.asarray(tail, dtype=np.float32)


class BlockReader:
    """Sample ranges ``[start, end)`` of a stream of blocks, asked for in order of
    non-decreasing ``start`` (ranges may overlap); keeps only the samples from the latest
    ``start`` on, so it holds at most one range and one block."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self._blocks = blocks
        self._buffer = np.zeros(0, dtype=np.float32)
        self._start = 0  # the stream position of self._buffer[0]
        self._done = False

    def read(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` (fewer if the stream ends first)."""
        if start < self._start:
            raise ValueError(f"ranges must be read in order: {start} < {self._start}")
        self._drop_before(start)
        while not self._done and self._start + self._buffer.size < end:
            block = next(self._blocks, None)
            if block is None:
                self._done = True
                break
            self._buffer = np.concatenate([self._buffer, block])
            self._drop_before(start)
        return self._buffer[start - self._start : end - self._start]

    def _drop_before(self, start: int) -> None:
        """Drop the buffered samples before ``start`` (the buffer always begins at stream
        position ``self._start``: blocks that fall wholly before ``start`` are dropped as
        they arrive)."""
        drop = min(start - self._start, self._buffer.size)
        if drop:
            self._buffer = self._buffer[drop:]
            self._start += drop


def to_mono(samples: np.ndarray) -> np.ndarray:
    """``[n]`` or ``[n, channels]`` -> ``[n]`` float32, averaging the channels."""
    samples = np.asarray(samples)
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    if samples.ndim != 2:
        raise ValueError(f"expected samples of shape [n] or [n, channels], got {samples.shape}")
    if samples.shape[1] == 1:
        return samples[:, 0].astype(np.float32, copy=False)
    return np.asarray(samples.mean(axis=1, dtype=np.float32), dtype=np.float32)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample 1-D (or ``[n, channels]``) samples with soxr; float32 out, identity if equal."""
    _check_rate(from_rate, "source sample rate")
    _check_rate(to_rate, "target sample rate")
    samples = np.asarray(samples, dtype=np.float32)
    if from_rate == to_rate or samples.shape[0] == 0:
        return samples
    out = soxr.resample(samples, from_rate, to_rate, quality=_SOXR_QUALITY)
    return np.asarray(out, dtype=np.float32)


def write_wav(
    path: str | Path, samples: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16"
) -> Path:
    """Write samples (``[n]`` or ``[n, channels]``) to a WAV file atomically; return the path.

    Float samples written as integer PCM are scaled by 2**(bits-1), rounded and clipped, so that
    `load_audio` gives back exactly the quantised values.
    """
    path = Path(path)
    data = np.asarray(samples)
    if data.dtype.kind == "f" and subtype in _PCM_BITS:
        data = _quantize(data, _PCM_BITS[subtype])
    buffer = io.BytesIO()
    sf.write(buffer, data, sample_rate, format="WAV", subtype=subtype)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_wav_stream(
    path: str | Path,
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    *,
    subtype: str = "PCM_16",
) -> int:
    """Write mono float blocks to a WAV file as they come (memory: one block), through a
    temporary sibling renamed into place at the end: a failure leaves nothing behind.
    Returns the number of samples written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".wav", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    written = 0
    try:
        with sf.SoundFile(tmp, "w", sample_rate, 1, subtype=subtype, format="WAV") as out:
            for block in blocks:
                data = np.asarray(block, dtype=np.float32).reshape(-1)
                if subtype in _PCM_BITS:
                    data = _quantize(data, _PCM_BITS[subtype])
                out.write(data)
                written += data.size
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


# --- decoding -------------------------------------------------------------------------------


def _check_readable(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AudioError("audio file not found", path=path, hint="check the path") from None
    except OSError as exc:
        raise AudioError(f"cannot read this file ({exc.strerror})", path=path) from exc
    if stat.S_ISDIR(info.st_mode):
        raise AudioError("is a directory, not an audio file", path=path)
    if not stat.S_ISREG(info.st_mode):
        raise AudioError(
            "is not a regular file (a FIFO, socket or device): reading it could wait forever",
            path=path,
            hint="save the audio to a file first",
        )
    if not os.access(path, os.R_OK):
        raise AudioError("permission denied", path=path, hint="make the file readable")


@dataclass(frozen=True)
class AudioHeader:
    """What a file declares before its samples: rate, channels and frame count (None: not
    known until decoded, as from ffmpeg's pipe)."""

    sample_rate: int
    channels: int
    frames: int | None


def _check_header(
    header: AudioHeader, path: Path, *, subtype: str | None = None, size: int | None = None
) -> None:
    """Refuse a header whose numbers cannot be real audio, before anything is decoded."""
    if not MIN_SAMPLE_RATE <= header.sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"declares a sample rate of {header.sample_rate} Hz, outside "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz",
            path=path,
            hint="the header is corrupt, or the file is not audio",
        )
    if not 1 <= header.channels <= MAX_CHANNELS:
        raise AudioError(
            f"declares {header.channels} channels (1 to {MAX_CHANNELS} are read)", path=path
        )
    width = _SUBTYPE_BYTES.get(subtype or "")
    declared = (
        None if header.frames is None or not width else header.frames * header.channels * width
    )
    if declared is not None and size is not None and declared > size:
        raise AudioError(
            f"declares {header.frames} frames of {header.channels} x {width} bytes, more "
            f"than the file's {size} bytes",
            path=path,
            hint="the file is truncated or its header is corrupt",
        )


@contextmanager
def _open_frames(
    path: Path, block_seconds: float
) -> Iterator[tuple[AudioHeader, Iterator[np.ndarray]]]:
    """The checked header and an iterator of ``[n, channels]`` float32 blocks of
    ``block_seconds``, from libsndfile, else from ffmpeg."""
    _check_readable(path)
    try:
        handle = sf.SoundFile(path)
    except sf.SoundFileError as error:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            reason = getattr(error, "error_string", None) or str(error)
            raise AudioError(
                f"cannot read this file as audio ({reason})",
                path=path,
                hint=_FFMPEG_HINT,
            ) from error
        with _ffmpeg_frames(ffmpeg, path, block_seconds) as opened:
            yield opened
        return
    with handle:
        header = AudioHeader(int(handle.samplerate), int(handle.channels), int(handle.frames))
        uncompressed = str(handle.format) in _UNCOMPRESSED_FORMATS
        _check_header(
            header,
            path,
            subtype=str(handle.subtype) if uncompressed else None,
            size=path.stat().st_size,
        )
        count = max(1, int(block_seconds * header.sample_rate))

        def frames() -> Iterator[np.ndarray]:
            while True:
                try:
                    data = handle.read(count, dtype="float32", always_2d=True)
                except sf.SoundFileError as error:
                    raise AudioError(f"cannot decode audio ({error})", path=path) from error
                if data.shape[0] == 0:
                    return
                yield data

        yield header, frames()


@contextmanager
def _ffmpeg_frames(
    ffmpeg: str, path: Path, block_seconds: float
) -> Iterator[tuple[AudioHeader, Iterator[np.ndarray]]]:
    """Decode the first audio stream at its own rate and channel count, through a pipe read
    in fixed-size chunks.

    ffmpeg writes Sun AU (big-endian float32) to the pipe: unlike WAV, AU declares an unknown
    data size cleanly, and its fixed header gives the channel count and rate.
    """
    command = [
        ffmpeg, "-nostdin", "-hide_banner", "-v", "error",
        "-i", f"file:{path.resolve()}",
        "-map", "0:a:0", "-c:a", "pcm_f32be", "-f", "au", "-",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
        )
        assert process.stdout is not None
        pipe = process.stdout

        def failure() -> AudioError:
            errors.seek(0)
            return AudioError(
                f"cannot decode audio: {_ffmpeg_reason(errors.read(64 * 1024))}",
                path=path,
                hint="check that the file is an audio or video file with an audio track",
            )

        try:
            head = _read_exactly(pipe, 24)
            header_words = np.frombuffer(head, dtype=">u4") if len(head) == 24 else None
            if header_words is None or head[:4] != _AU_MAGIC:
                if process.wait() != 0:
                    raise failure()
                raise AudioError("ffmpeg returned no decodable audio", path=path)
            offset, encoding = int(header_words[1]), int(header_words[3])
            rate, channels = int(header_words[4]), int(header_words[5])
            if encoding != _AU_FLOAT32 or not 24 <= offset <= 1 << 16:
                raise AudioError("ffmpeg returned no decodable audio", path=path)
            _read_exactly(pipe, offset - 24)
            header = AudioHeader(rate, channels, None)
            _check_header(header, path)
            frame_bytes = 4 * channels
            chunk = max(1, int(block_seconds * rate)) * frame_bytes

            def frames() -> Iterator[np.ndarray]:
                rest = b""
                while data := pipe.read(chunk):
                    data = rest + data
                    usable = len(data) - len(data) % frame_bytes
                    rest = data[usable:]
                    if usable:
                        flat = np.frombuffer(data[:usable], dtype=">f4").astype(np.float32)
                        yield flat.reshape(-1, channels)
                if process.wait() != 0:
                    raise failure()

            yield header, frames()
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            pipe.close()


def _read_exactly(pipe: IO[bytes], count: int) -> bytes:
    data = b""
    while len(data) < count:
        more = pipe.read(count - len(data))
        if not more:
            break
        data += more
    return data


def _ffmpeg_reason(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and "Broken pipe" not in line]
    if any("matches no streams" in line for line in lines):
        return "ffmpeg found no audio stream in it"
    return f"ffmpeg failed ({lines[-1] if lines else 'no message'})"


# --- validation and conversion --------------------------------------------------------------


def _build(frames: np.ndarray, rate: int, target_rate: int, *, source: str | None) -> Audio:
    """Validate ``[frames, channels]`` float32, downmix, resample, wrap."""
    if frames.shape[0] == 0 or frames.shape[1] == 0:
        raise AudioError("contains no audio samples", path=source)
    _check_finite(frames, rate, source)
    mono = resample(to_mono(frames), rate, target_rate)
    return Audio(
        samples=mono,
        sample_rate=target_rate,
        source=source,
        original_sample_rate=rate,
        original_channels=int(frames.shape[1]),
    )


def _check_finite(frames: np.ndarray, rate: int, source: str | None) -> None:
    if np.isfinite(frames).all():
        return
    nans = int(np.isnan(frames).sum())
    infs = int(np.isinf(frames).sum())
    first = int(np.flatnonzero(~np.isfinite(frames).all(axis=1))[0])
    raise AudioError(
        f"contains {nans} NaN and {infs} Inf samples (the first at {first / rate:.3f} s)",
        path=source,
        hint="the file is corrupt or was written from a broken computation; re-export it",
    )


def _check_finite_block(block: np.ndarray, rate: int, position: int, source: str) -> None:
    """A block of a file read in blocks: refuse it at its first NaN or Inf sample."""
    finite = np.isfinite(block).all(axis=1)
    if finite.all():
        return
    first = position + int(np.flatnonzero(~finite)[0])
    raise AudioError(
        f"contains NaN or Inf samples (the first at {first / rate:.3f} s)",
        path=source,
        hint="the file is corrupt or was written from a broken computation; re-export it",
    )


def _as_float_frames(samples: np.ndarray, source: str | None) -> np.ndarray:
    """In-memory samples -> ``[frames, channels]`` float32."""
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2:
        raise AudioError(
            f"expected samples of shape [n] or [n, channels], got {samples.shape}", path=source
        )
    if samples.shape[1] > samples.shape[0] > 0:
        raise AudioError(
            f"samples of shape {samples.shape} look channels-first",
            path=source,
            hint="pass an array of shape [n, channels] (transpose it)",
        )
    if samples.dtype in _INT_SCALES:
        return (samples * np.float32(_INT_SCALES[samples.dtype])).astype(np.float32)
    if samples.dtype.kind != "f":
        raise AudioError(
            f"unsupported sample type {samples.dtype}",
            path=source,
            hint="pass float samples in [-1, 1], or int16/int32 PCM",
        )
    return samples.astype(np.float32, copy=False)


def _quantize(samples: np.ndarray, bits: int) -> np.ndarray:
    """Float in [-1, 1) -> int16, or int32 holding ``bits`` significant bits left-aligned."""
    full = float(1 << (bits - 1))
    q = np.clip(np.round(samples.astype(np.float64) * full), -full, full - 1).astype(np.int64)
    if bits == 16:
        return q.astype(np.int16)
    return (q << (32 - bits)).astype(np.int32)


def _check_rate(rate: int, what: str, source: str | Path | None = None) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
        raise AudioError(f"{what} must be a positive integer, got {rate!r}", path=source)
