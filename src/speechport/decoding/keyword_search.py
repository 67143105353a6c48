"""Transducer keyword search: a beam search steered by a keyword context graph.

Per encoder frame, every hypothesis in the beam is extended by every token (blank included,
one symbol per frame); the ``beam`` best extensions survive, hypotheses with the same tokens
merge (log-sum-exp), and a token that walks the context graph adds its boost (or, leaving a
keyword, takes it back). After each frame the best hypothesis is checked: if its graph state
ends a keyword, the keyword's tokens are followed by more than ``num_trailing_blanks``
blanks and their mean probability reaches the keyword's threshold, it is a detection and
the beam starts afresh.

Two semantics, which differ in what real deployments see (upstream's own notes on the
gigaspeech KWS recipe and sherpa-onnx):

``sherpa`` (the default; what sherpa-onnx's ``KeywordSpotter`` runs in applications)
    best hypothesis without length normalisation; log-softmax scores; ``<unk>`` counts as
    blank; a hypothesis that leaves a keyword (graph state back at the root) restarts from
    blanks, dropping its tokens, times and probabilities; the threshold averages the
    probabilities of the FIRST ``level`` tokens since that restart; the stream (beam, encoder
    state and frame count) is reset after every detection, as the applications do, and by
    itself when the best hypothesis ends in more than 1.5 s of blanks; a result whose first
    frame is not after the previous one's last is hidden; nothing happens at end of input.
``icefall``
    icefall's ``keywords_search``: best hypothesis by length-normalised score; log of the
    softmax; ``<unk>`` searched like any token; leaving a keyword only resets the decoder
    context (tokens, times and probabilities are kept); the threshold averages the LAST
    ``level`` probabilities; only the beam is reset after a detection (the encoder runs on);
    at the end of input the best hypothesis is checked once more without the trailing-blank
    condition.

Arithmetic follows each upstream in float32 (icefall: torch float32 throughout; sherpa:
float32 scores, double accumulated hypothesis scores), so decisions on near ties fall the
same way.

Everything here takes plain arrays and callables: ``decoder`` maps ``[H, context_size]``
int64 token contexts (``-1`` for "before the start") to ``[H, J]`` decoder outputs already in
joiner space, ``joiner`` maps ``[H, J]`` encoder frames and ``[H, J]`` decoder outputs to
``[H, V]`` logits, and ``KeywordStream`` drives an encoder callable chunk by chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from speechport.decoding.context_graph import ContextGraph, ContextNode, KeywordError

SEMANTICS = ("sherpa", "icefall")
# sherpa-onnx resets a stream by itself after this much trailing silence (seconds), with its
# frame duration hard-coded to 4 x 10 ms
SHERPA_SILENCE_RESET_S = 1.5


class DecoderFn(Protocol):
    def __call__(self, contexts: np.ndarray, /) -> np.ndarray: ...


class JoinerFn(Protocol):
    def __call__(self, encoder_frames: np.ndarray, decoder_out: np.ndarray, /) -> np.ndarray: ...


class ChunkEncoderFn(Protocol):
    """A streaming encoder holding its own caches: one call per chunk of feature frames
    returns that chunk's encoder frames in joiner space; ``reset`` returns to the initial
    state."""

    def __call__(self, features: np.ndarray, /) -> np.ndarray: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class SearchSettings:
    """The search's knobs (upstream defaults: beam 4, one trailing blank)."""

    semantics: str = "sherpa"
    beam: int = 4
    num_trailing_blanks: int = 1
    blank_id: int = 0
    unk_id: int | None = None  # sherpa semantics: searched as blank
    context_size: int = 2
    blank_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.semantics not in SEMANTICS:
            raise KeywordError(
                f"unknown keyword search semantics {self.semantics!r}; "
                f"known: {', '.join(SEMANTICS)}"
            )
        if self.beam < 1:
            raise KeywordError(f"beam must be at least 1, got {self.beam}")
        if self.num_trailing_blanks < 0:
            raise KeywordError(f"trailing blanks must be 0 or more, got {self.num_trailing_blanks}")


@dataclass(frozen=True)
class KeywordHit:
    """A detection: the keyword's phrase, its tokens, the encoder frame of each token and the
    mean token probability that passed the threshold."""

    keyword: str
    token_ids: tuple[int, ...]
    frames: tuple[int, ...]
    score: float

    @property
    def start_frame(self) -> int:
        return self.frames[0]

    @property
    def end_frame(self) -> int:
        return self.frames[-1]

    def shifted(self, offset: int) -> KeywordHit:
        return KeywordHit(
            self.keyword, self.token_ids, tuple(f + offset for f in self.frames), self.score
        )


@dataclass
class _Hyp:
    ys: tuple[int, ...]
    log_prob: float
    state: ContextNode
    timestamps: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    trailing_blanks: int = 0


def _log_add_double(x: float, y: float) -> float:
    if x < y:
        x, y = y, x
    diff = y - x
    if diff >= math.log(np.finfo(np.float64).eps):
        return x + math.log1p(math.exp(diff))
    return x


class KeywordSearch:
    """The per-frame keyword beam search of one stream (see the module docstring)."""

    def __init__(
        self,
        graph: ContextGraph,
        decoder: DecoderFn,
        joiner: JoinerFn,
        settings: SearchSettings | None = None,
    ):
        self.graph = graph
        self.decoder = decoder
        self.joiner = joiner
        self.settings = settings or SearchSettings()
        self._sherpa = self.settings.semantics == "sherpa"
        c = self.settings.context_size
        self._start_ys = (-1,) * (c - 1) + (self.settings.blank_id,)
        self._decoder_cache: dict[tuple[int, ...], np.ndarray] = {}
        self.frame = 0  # frames decoded since the last reset; timestamps count from here
        self._hyps: dict[tuple[int, ...], _Hyp] = {}
        self.reset()

    # --- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        """A fresh beam and frame count (a new stream, or sherpa's stream reset)."""
        self._reset_beam()
        self.frame = 0

    def _reset_beam(self) -> None:
        zero = 0.0 if self._sherpa else np.float32(0.0)
        self._hyps = {self._start_ys: _Hyp(self._start_ys, zero, self.graph.root)}  # type: ignore[arg-type]

    @property
    def trailing_blanks(self) -> int:
        """Blank frames after the last token of the best hypothesis."""
        return self._best().trailing_blanks

    def _best(self) -> _Hyp:
        hyps = self._hyps.values()
        if self._sherpa:
            return max(hyps, key=lambda h: h.log_prob)
        return max(hyps, key=lambda h: np.float32(h.log_prob) / np.float32(len(h.ys)))

    # --- search --------------------------------------------------------------------------

    def _decoder_out(self, hyps: Sequence[_Hyp]) -> np.ndarray:
        c = self.settings.context_size
        contexts = [h.ys[-c:] for h in hyps]
        missing = sorted({ctx for ctx in contexts if ctx not in self._decoder_cache})
        if missing:
            out = np.asarray(self.decoder(np.asarray(missing, dtype=np.int64)), dtype=np.float32)
            for ctx, row in zip(missing, out.reshape(len(missing), -1), strict=True):
                self._decoder_cache[ctx] = row
            if len(self._decoder_cache) > 4096:
                self._decoder_cache = {k: self._decoder_cache[k] for k in contexts}
        return np.stack([self._decoder_cache[ctx] for ctx in contexts])

    def _scores(self, frame: np.ndarray, hyps: Sequence[_Hyp]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, accumulated log scores) of every extension, ``[H, V]`` float32."""
        dec = self._decoder_out(hyps)
        enc = np.repeat(np.asarray(frame, dtype=np.float32)[None], len(hyps), axis=0)
        logits = np.array(self.joiner(enc, dec), dtype=np.float32).reshape(len(hyps), -1)
        if self.settings.blank_penalty:
            logits[:, self.settings.blank_id] -= np.float32(self.settings.blank_penalty)
        with np.errstate(divide="ignore", under="ignore"):
            shifted = logits - logits.max(axis=1, keepdims=True)
            if self._sherpa:
                offset = logits.max(axis=1, keepdims=True) + np.log(
                    np.exp(shifted).sum(axis=1, keepdims=True, dtype=np.float32)
                )
                log_probs = (logits - offset).astype(np.float32)
                probs = np.exp(log_probs)
                prev = np.array([h.log_prob for h in hyps], dtype=np.float64)[:, None]
                total = (log_probs.astype(np.float64) + prev).astype(np.float32)
            else:
                e = np.exp(shifted)
                probs = (e / e.sum(axis=1, keepdims=True, dtype=np.float32)).astype(np.float32)
                log_probs = np.log(probs)
                prev32 = np.array([h.log_prob for h in hyps], dtype=np.float32)[:, None]
                total = log_probs + prev32
        return probs, total

    def _topk(self, total: np.ndarray) -> list[int]:
        flat = total.reshape(-1)
        k = min(self.settings.beam, flat.size)
        part = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
        return sorted(part.tolist(), key=lambda i: (-flat[i], i))

    def decode(self, frames: np.ndarray) -> list[KeywordHit]:
        """Search ``frames`` (``[T, J]``, joiner space); the detections on them, in order,
        with frames counted from the last reset."""
        s = self.settings
        hits: list[KeywordHit] = []
        for frame in np.asarray(frames, dtype=np.float32):
            hyps = list(self._hyps.values())
            probs, total = self._scores(frame, hyps)
            vocab = total.shape[1]
            new: dict[tuple[int, ...], _Hyp] = {}
            for index in self._topk(total):
                hyp = hyps[index // vocab]
                token = index % vocab
                ys, timestamps, token_probs = hyp.ys, hyp.timestamps, hyp.probs
                state, context_score, trailing = hyp.state, 0.0, hyp.trailing_blanks + 1
                is_blank = token == s.blank_id or (self._sherpa and token == s.unk_id)
                if not is_blank:
                    ys = (*ys, token)
                    timestamps = [*timestamps, self.frame]
                    token_probs = [*token_probs, float(probs[index // vocab, token])]
                    context_score, state = self.graph.forward(state, token)
                    trailing = 0
                    if state.is_root:
                        if self._sherpa:
                            ys, timestamps, token_probs = self._start_ys, [], []
                        else:
                            ys = ys[: -s.context_size] + self._start_ys
                score = total.reshape(-1)[index]
                log_prob: float
                if self._sherpa:
                    log_prob = float(np.float32(score) + np.float32(context_score))
                else:
                    log_prob = np.float32(score) + np.float32(context_score)  # type: ignore[assignment]
                old = new.get(ys)
                if old is None:
                    new[ys] = _Hyp(ys, log_prob, state, timestamps, token_probs, trailing)
                elif self._sherpa:
                    old.log_prob = _log_add_double(old.log_prob, log_prob)
                else:
                    old.log_prob = np.logaddexp(np.float32(old.log_prob), np.float32(log_prob))
            self._hyps = new
            hit = self._check(require_blanks=True)
            if hit is not None:
                hits.append(hit)
                self._reset_beam()
            self.frame += 1
        return hits

    def _check(self, *, require_blanks: bool) -> KeywordHit | None:
        best = self._best()
        matched = self.graph.matched(best.state)
        if matched is None:
            return None
        level = matched.level
        if self._sherpa:
            acc = np.float32(0.0)
            for p in best.probs[:level]:
                acc = np.float32(acc + np.float32(p))
            mean = float(np.float32(acc / np.float32(level)))
            passed = bool(np.float32(mean) >= np.float32(matched.threshold))
        else:
            mean = sum(best.probs[-level:]) / level
            passed = mean >= matched.threshold
        if require_blanks and best.trailing_blanks <= self.settings.num_trailing_blanks:
            return None
        if not passed:
            return None
        return KeywordHit(
            matched.phrase,
            tuple(best.ys[-level:]),
            tuple(best.timestamps[-level:]),
            mean,
        )

    def finish(self) -> list[KeywordHit]:
        """End of input: icefall checks the best hypothesis once more without the trailing
        blank condition; sherpa does nothing."""
        if self._sherpa:
            return []
        hit = self._check(require_blanks=False)
        return [] if hit is None else [hit]


@dataclass
class _SherpaResult:
    """sherpa-onnx's per-stream keyword result: the last detection since the stream's reset
    (kept until the next reset) and the best hypothesis' trailing blanks."""

    hit: KeywordHit | None = None
    trailing_blanks: int = 0


class KeywordStream:
    """Feature frames in, detections out: runs ``encoder`` on chunks of ``chunk_frames``
    feature frames every ``chunk_shift`` frames (a chunk runs once more than
    ``chunk_frames`` frames are available past its start, as sherpa-onnx does) and the
    search on what it returns; frames in detections are absolute encoder frames."""

    def __init__(
        self,
        search: KeywordSearch,
        encoder: ChunkEncoderFn,
        *,
        chunk_frames: int,
        chunk_shift: int,
    ):
        self.search = search
        self.encoder = encoder
        self.chunk_frames = chunk_frames
        self.chunk_shift = chunk_shift
        self._sherpa = search.settings.semantics == "sherpa"
        self._buffer = np.zeros((0, 0), dtype=np.float32)
        self._buffer_start = 0  # feature index of the buffer's first row
        self._processed = 0  # feature index where the next chunk starts
        self._frames_out = 0  # encoder frames decoded so far
        self._reset_offset = 0  # encoder frames decoded before the last stream reset
        self._result = _SherpaResult()
        self._previous = _SherpaResult()
        self.encoder.reset()
        self.search.reset()

    def _reset_stream(self) -> None:
        self.search.reset()
        self.encoder.reset()
        self._result = _SherpaResult()
        self._reset_offset = self._frames_out

    def _read_result(self) -> _SherpaResult:
        """sherpa-onnx's duplicate-hiding read of the stream's result: a detection whose
        first frame is not after the previously read one's last frame reads as empty."""
        cur, prev = self._result, self._previous
        if (
            prev.hit is not None
            and cur.hit is not None
            and cur.hit.frames[0] <= prev.hit.frames[-1]
        ):
            return _SherpaResult()
        self._previous = _SherpaResult(cur.hit, cur.trailing_blanks)
        return cur

    def accept(self, features: np.ndarray) -> list[KeywordHit]:
        """Append feature frames ``[n, F]``; the detections of the chunks that became ready."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2:
            raise ValueError(f"features must be [frames, bins], got shape {features.shape}")
        if self._buffer.size == 0:
            self._buffer = features.copy()
        else:
            self._buffer = np.concatenate([self._buffer, features])
        hits: list[KeywordHit] = []
        end = self._buffer_start + len(self._buffer)
        while self._processed + self.chunk_frames < end:
            start = self._processed - self._buffer_start
            chunk = self._buffer[start : start + self.chunk_frames]
            hits.extend(self._chunk(chunk))
            self._processed += self.chunk_shift
        drop = self._processed - self._buffer_start
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start = self._processed
        return hits

    def _chunk(self, chunk: np.ndarray) -> list[KeywordHit]:
        if not self._sherpa:
            frames = self.encoder(chunk)
            self._frames_out += len(frames)
            return self.search.decode(frames)
        blanks = self._read_result().trailing_blanks
        if np.float32(blanks * 4 * 0.01) > SHERPA_SILENCE_RESET_S:
            self._reset_stream()
        frames = self.encoder(chunk)
        self._frames_out += len(frames)
        found = self.search.decode(frames)
        if found:
            self._result.hit = found[-1]
        self._result.trailing_blanks = self.search.trailing_blanks
        read = self._read_result()
        if read.hit is None:
            return []
        hit = read.hit.shifted(self._reset_offset)
        self._reset_stream()
        return [hit]

    def finish(self) -> list[KeywordHit]:
        """End of input (all feature frames accepted)."""
        return [h.shifted(self._reset_offset) for h in self.search.finish()]
