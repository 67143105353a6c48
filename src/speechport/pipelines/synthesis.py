"""The host side of two-stage speech synthesis (Kokoro): everything between the text stage
and the acoustic stage, in numpy, as upstream's ``KModel.forward_with_tokens`` does it.

- the voice style: row ``len(phonemes) - 1`` of the voice pack, clamped (upstream
  ``KPipeline``: ``pack[len(ps) - 1]``; kokoro-onnx and sherpa-onnx take the next row);
- the token ids: a 0 boundary token at both ends, zero padding to the smallest token bucket
  that holds them;
- frames per token: ``max(1, round(duration))`` with numpy's round-half-to-even (that of
  ``torch.round``), over the valid tokens;
- the smallest frame bucket that holds the frames; each token's feature vector repeated
  along time for its frames (``d^T @ alignment`` upstream), zeros after the last frame;
- the random inputs drawn at the true length from one seeded generator and zero-padded, so
  that a text gives the same audio in every frame bucket;
- the audio trimmed to ``samples_per_frame`` samples per valid frame.

``synthesize_chunk`` chains the two stages for one chunk of phonemes; the functions it uses
are tested alone with plain arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from speechport.errors import SpeechportError

Stage = Callable[..., dict[str, np.ndarray]]  # named inputs -> named outputs


class BucketError(SpeechportError):
    """Input that no bucket of the bundle can hold (the caller splits it and tries again)."""


def style_row(pack: np.ndarray, num_phonemes: int) -> np.ndarray:
    """The voice style for ``num_phonemes`` phonemes (boundary tokens not counted): row
    ``num_phonemes - 1`` of ``pack`` ([rows, style_dim]) clamped to the pack, as [1, dim]."""
    row = min(max(num_phonemes - 1, 0), pack.shape[0] - 1)
    return np.asarray(pack[row], dtype=np.float32).reshape(1, -1)


def smallest_bucket(buckets: Sequence[int], needed: int) -> int | None:
    """The smallest bucket >= ``needed`` (``None`` when none is)."""
    fitting = [b for b in buckets if b >= needed]
    return min(fitting) if fitting else None


def token_ids(phoneme_ids: Sequence[int], bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` [1, bucket] (0, ids..., 0, zero padding) and ``input_length`` [1]."""
    length = len(phoneme_ids) + 2
    if length > bucket:
        raise BucketError(f"{len(phoneme_ids)} phonemes do not fit a {bucket}-token bucket")
    ids = np.zeros((1, bucket), dtype=np.int32)
    ids[0, 1 : length - 1] = phoneme_ids
    return ids, np.array([length], dtype=np.int32)


def frames_per_token(durations: np.ndarray, length: int) -> np.ndarray:
    """Frames for each of the ``length`` valid tokens: ``max(1, round(d))``, rounding half
    to even as ``torch.round`` does."""
    valid = np.asarray(durations, dtype=np.float32).reshape(-1)[:length]
    return np.maximum(np.round(valid), 1).astype(np.int64)


def align(features: np.ndarray, frames: np.ndarray, bucket: int, *, time_axis: int) -> np.ndarray:
    """Token features ([1, N, C] with ``time_axis=1`` or [1, C, N] with ``time_axis=2``) as
    [1, C, bucket]: token ``i``'s vector repeated ``frames[i]`` times, zeros after."""
    per_token = np.asarray(features, dtype=np.float32)[0]
    if time_axis == 2:
        per_token = per_token.T  # [N, C]
    total = int(frames.sum())
    if total > bucket:
        raise BucketError(f"{total} frames do not fit a {bucket}-frame bucket")
    out = np.zeros((1, per_token.shape[1], bucket), dtype=np.float32)
    out[0, :, :total] = np.repeat(per_token[: frames.size], frames, axis=0).T
    return out


def random_inputs(
    names: Sequence[str],
    *,
    seed: int | Sequence[int],
    frames: int,
    bucket: int,
    samples_per_frame: int,
    harmonics: int,
) -> dict[str, np.ndarray]:
    """The acoustic stage's random inputs, drawn in ``names`` order from one generator:
    ``noise`` (the harmonic source's normal noise, [1, samples, harmonics], drawn for the
    ``frames`` true frames and zero-padded to ``bucket``), ``phase`` (its initial phase per
    harmonic, uniform in [0, 1), harmonic 0 at 0)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name in names:
        try:
            draw = _RANDOM_INPUTS[name]
        except KeyError:
            raise SpeechportError(
                f"unknown random input {name!r}; this speechport draws {', '.join(_RANDOM_INPUTS)}",
                hint="upgrade speechport",
            ) from None
        out[name] = draw(rng, frames * samples_per_frame, bucket * samples_per_frame, harmonics)
    return out


def _noise(rng: np.random.Generator, valid: int, total: int, harmonics: int) -> np.ndarray:
    out = np.zeros((1, total, harmonics), dtype=np.float32)
    out[:, :valid] = rng.standard_normal((1, valid, harmonics), dtype=np.float32)
    return out


def _phase(rng: np.random.Generator, valid: int, total: int, harmonics: int) -> np.ndarray:
    out = rng.random((1, harmonics), dtype=np.float32)
    out[:, 0] = 0.0
    return out


_RANDOM_INPUTS = {"noise": _noise, "phase": _phase}


@dataclass(frozen=True)
class StageBuckets:
    """The bundle's stages by bucket size, and the sizes the host needs."""

    text: Mapping[int, Stage]  # token bucket -> text stage
    acoustic: Mapping[int, Stage]  # frame bucket -> acoustic stage
    samples_per_frame: int
    harmonics: int
    random_names: tuple[str, ...]

    @property
    def max_tokens(self) -> int:
        return max(self.text)

    @property
    def max_frames(self) -> int:
        return max(self.acoustic)


@dataclass(frozen=True)
class ChunkAudio:
    """One chunk spoken: its audio (valid samples only) and what the stages said."""

    audio: np.ndarray  # float32 [600 * frames]
    durations: np.ndarray  # float32 [tokens], the text stage's (not rounded)
    frames_per_token: np.ndarray  # int64 [tokens]
    f0: np.ndarray  # float32 [2 * frames]
    energy: np.ndarray  # float32 [2 * frames]
    token_bucket: int
    frame_bucket: int


@dataclass(frozen=True)
class TextStageResult:
    durations: np.ndarray
    frames: np.ndarray  # frames per valid token
    prosody: np.ndarray
    text_features: np.ndarray
    token_bucket: int

    @property
    def total_frames(self) -> int:
        return int(self.frames.sum())


def run_text_stage(
    stages: StageBuckets,
    phoneme_ids: Sequence[int],
    style: np.ndarray,
    speed: float,
    *,
    token_bucket: int | None = None,
) -> TextStageResult:
    """The text stage at the smallest token bucket that holds ``phoneme_ids`` (or at
    ``token_bucket``): durations, frames per token, and the token features."""
    bucket = token_bucket or smallest_bucket(list(stages.text), len(phoneme_ids) + 2)
    if bucket is None:
        raise BucketError(
            f"{len(phoneme_ids)} phonemes do not fit the largest token bucket "
            f"({stages.max_tokens} tokens with the two boundary tokens)"
        )
    ids, length = token_ids(phoneme_ids, bucket)
    out = stages.text[bucket](
        input_ids=ids,
        input_length=length,
        style=style,
        speed=np.array([speed], dtype=np.float32),
    )
    durations = np.asarray(out["durations"], dtype=np.float32).reshape(-1)[: int(length[0])]
    return TextStageResult(
        durations=durations,
        frames=frames_per_token(durations, int(length[0])),
        prosody=np.asarray(out["prosody"]),
        text_features=np.asarray(out["text_features"]),
        token_bucket=bucket,
    )


def run_acoustic_stage(
    stages: StageBuckets,
    text: TextStageResult,
    style: np.ndarray,
    *,
    seed: int | Sequence[int],
    frame_bucket: int | None = None,
) -> ChunkAudio:
    """The acoustic stage at the smallest frame bucket that holds the frames (or at
    ``frame_bucket``); the audio trimmed to the valid frames."""
    total = text.total_frames
    bucket = frame_bucket or smallest_bucket(list(stages.acoustic), total)
    if bucket is None:
        raise BucketError(
            f"{total} frames do not fit the largest frame bucket ({stages.max_frames})"
        )
    feeds = random_inputs(
        stages.random_names,
        seed=seed,
        frames=total,
        bucket=bucket,
        samples_per_frame=stages.samples_per_frame,
        harmonics=stages.harmonics,
    )
    out = stages.acoustic[bucket](
        prosody_aligned=align(text.prosody, text.frames, bucket, time_axis=1),
        text_aligned=align(text.text_features, text.frames, bucket, time_axis=2),
        frames=np.array([total], dtype=np.int32),
        style=style,
        **feeds,
    )
    valid = total * stages.samples_per_frame
    return ChunkAudio(
        audio=np.asarray(out["audio"], dtype=np.float32).reshape(-1)[:valid],
        durations=text.durations,
        frames_per_token=text.frames,
        f0=np.asarray(out["f0"], dtype=np.float32).reshape(-1)[: 2 * total],
        energy=np.asarray(out["energy"], dtype=np.float32).reshape(-1)[: 2 * total],
        token_bucket=text.token_bucket,
        frame_bucket=bucket,
    )
