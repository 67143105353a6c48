"""Streaming recognition: a session fed audio as it arrives, chunk by chunk, every cache
carried explicitly between calls of the bundle's encoder.

``session.feed(samples)`` computes the new mel frames (`features.streaming`), runs the
encoder on every chunk that is complete, decodes its frames greedily with the decoder state
carried over from the previous chunk, and returns what is new; ``session.finish()`` runs the
last, shorter chunk and returns the whole result. The chunk windows follow the manifest's
``ChunkingSpec``, which is NeMo's cache-aware schedule, so the tokens are those of NeMo's own
streaming at that lookahead, whatever the packet sizes. Models with an end-of-utterance
token report where each utterance ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from speechport.audio import AudioInput, open_audio
from speechport.decoding.transducer import Carry, rnnt_greedy_resume
from speechport.errors import BundleError, SpeechportError
from speechport.features.spec import LogMelSpec
from speechport.features.streaming import StreamingLogMel
from speechport.manifest import NP_DTYPES, ChunkingSpec, DecodingSpec, StreamingSpec
from speechport.pipelines.batch import ManyFiles
from speechport.pipelines.transcriber import (
    Segment,
    TokenTiming,
    Transcript,
    WordTiming,
    transducer_steps,
)
from speechport.runtime.base import Component, LoadedBundle
from speechport.runtime.blas import one_blas_thread
from speechport.tokenizer import Tokenizer


def chunk_windows(chunking: ChunkingSpec, total: int) -> list[tuple[int, int, int, int]]:
    """``(mel start, chunk start, chunk end, lead)`` of every chunk of ``total`` mel frames."""
    out = []
    pos = 0
    while pos < total or pos == 0:
        end = min(chunking.chunk_end(pos), total)
        start, lead = chunking.window(pos, end)
        out.append((start, pos, end, lead))
        pos = end
        if end == 0:
            break
    return out


@dataclass(frozen=True)
class StreamEvent:
    """Something that happened in the stream: ``end_of_utterance`` (the model emitted its
    end-of-utterance token at ``seconds``)."""

    kind: str
    seconds: float
    utterance: str = ""


@dataclass
class StreamUpdate:
    """What one ``feed`` (or ``finish``) produced: the new tokens, the events, and the text
    so far."""

    text: str
    tokens: list[TokenTiming] = field(default_factory=list)
    events: list[StreamEvent] = field(default_factory=list)
    final: bool = False


class StreamingRecognizer(ManyFiles):
    """A loaded streaming bundle: open sessions (``stream``) or transcribe whole files
    (``transcribe``, which runs a session over the file)."""

    def __init__(self, bundle: LoadedBundle) -> None:
        manifest = bundle.manifest
        if manifest.streaming is None or manifest.decoding is None or manifest.tokenizer is None:
            raise manifest.wrong_task("streaming speech recognition", bundle.path)
        self.bundle = bundle
        self.manifest = manifest
        self.spec: StreamingSpec = manifest.streaming
        self.decoding: DecodingSpec = manifest.decoding
        self.sample_rate = manifest.sample_rate
        self.frontend_spec = LogMelSpec.from_dict(manifest.frontend)
        self.tokenizer = Tokenizer.from_bundle(bundle.path, manifest.tokenizer)

    @property
    def lookaheads(self) -> list[int]:
        return [c.lookahead for c in self.spec.chunkings]

    @property
    def languages(self) -> list[str]:
        return list(self.spec.prompts)

    def stream(
        self,
        *,
        language: str | None = None,
        lookahead: int | None = None,
        reset_on_end_of_utterance: bool = False,
    ) -> StreamingSession:
        """A new session. ``language``: the prompt of a multilingual model (``en-US``,
        ``auto``...; default en-US where it has one); ``lookahead``: one of the bundle's
        (default: its first); ``reset_on_end_of_utterance``: start every utterance from
        fresh caches and decoder state, as voice agents do after an end of utterance."""
        return StreamingSession(
            self,
            self.spec.chunking(lookahead),
            self._prompt(language),
            reset_on_end_of_utterance=reset_on_end_of_utterance,
        )

    def transcribe(
        self,
        audio: AudioInput,
        *,
        sample_rate: int | None = None,
        source: str | None = None,
        language: str | None = None,
        lookahead: int | None = None,
        packet_samples: int = 16000,
    ) -> Transcript:
        """The whole file through one session, read in blocks (``packet_samples`` at a
        time: the result does not depend on it); one segment per utterance where the model
        marks their ends."""
        audio_source = open_audio(audio, sample_rate=sample_rate, target_rate=self.sample_rate)
        session = self.stream(language=language, lookahead=lookahead)
        for block in audio_source.blocks(keep=False):  # bounded memory, whatever the length
            for start in range(0, block.size, packet_samples):
                session.feed(block[start : start + packet_samples])
        session.finish()
        return session.transcript(source=source if source is not None else audio_source.source)

    def _prompt(self, language: str | None) -> np.ndarray | None:
        if not self.spec.num_prompts:
            if language not in (None, "auto"):
                raise SpeechportError(
                    f"this model takes no language (asked for {language!r})",
                    hint="leave out --language",
                )
            return None
        name = language or ("en-US" if "en-US" in self.spec.prompts else self.languages[0])
        if name not in self.spec.prompts:
            raise SpeechportError(
                f"unknown language {name!r}; this model knows: {', '.join(self.languages)}",
                hint="pick one of those (--language)",
            )
        prompt = np.zeros((1, self.spec.num_prompts), dtype=np.float32)
        prompt[0, self.spec.prompts[name]] = 1.0
        return prompt


class StreamingSession:
    """One stream (see the module's docstring)."""

    def __init__(
        self,
        recognizer: StreamingRecognizer,
        chunking: ChunkingSpec,
        prompt: np.ndarray | None,
        *,
        reset_on_end_of_utterance: bool = False,
    ) -> None:
        self.recognizer = recognizer
        self.chunking = chunking
        self.prompt = prompt
        self.reset_on_end_of_utterance = reset_on_end_of_utterance
        bundle = recognizer.bundle
        self.encoder: Component = bundle.component(chunking.encoder)
        spec = self.encoder.spec
        names = [t.name for t in spec.inputs]
        self._state_names = [p.input for p in spec.state]
        self._state_positions = [names.index(n) for n in self._state_names]
        self._state_outputs = [[t.name for t in spec.outputs].index(p.output) for p in spec.state]
        for pair in spec.state:
            if pair.init != "zeros":
                raise BundleError(f"unsupported initial state {pair.init!r} for {pair.input}")
        self._inputs = spec.inputs
        self._width = spec.inputs[0].shape[-1]
        self._n_mels = spec.inputs[0].shape[1]
        if self._width != chunking.window_frames:
            raise BundleError(
                f"{spec.name} takes {self._width} mel frames, the manifest's chunking "
                f"{chunking.window_frames}",
                path=bundle.path,
            )
        self._steps = transducer_steps(bundle)
        decoding = recognizer.decoding
        self._blank = decoding.blank_id
        self._max_symbols = decoding.max_symbols_per_frame
        self._frame_seconds = decoding.frame_duration
        self.frontend = StreamingLogMel(recognizer.frontend_spec)
        self._mel = np.zeros((self._n_mels, 0), dtype=np.float32)
        self._mel_first = 0  # mel frame index of self._mel[:, 0]
        self._reset_state(0)
        self.tokens: list[TokenTiming] = []
        self.events: list[StreamEvent] = []
        self.utterances: list[tuple[float, float, list[TokenTiming]]] = []
        self._utterance_start = 0.0
        self._utterance_first_token = 0
        self.chunk_seconds: list[float] = []  # encoder wall time per chunk
        self.finished = False

    def _reset_state(self, pos: int) -> None:
        """Fresh caches and decoder state; the next chunk starts at mel frame ``pos``."""
        self._state = [
            np.zeros(self._inputs[i].shape, dtype=NP_DTYPES[self._inputs[i].dtype])
            for i in self._state_positions
        ]
        self._carry: Carry[Any] = Carry(self._blank, self._steps.initial_state)
        self._pos = pos
        self._origin = pos  # the stream restarts here: its first chunk is a first chunk
        self._origin_seconds = pos * self.frontend.spec.hop_length / self.recognizer.sample_rate
        self._frames_out = 0  # encoder frames since the origin

    @property
    def text(self) -> str:
        """The text so far (end-of-utterance and backchannel markers left out)."""
        return self._decode(self.tokens)

    @property
    def _markers(self) -> set[int | None]:
        return {self.recognizer.spec.end_of_utterance, self.recognizer.spec.end_of_backchannel}

    def _decode(self, tokens: list[TokenTiming]) -> str:
        ids = [t.id for t in tokens if t.id not in self._markers]
        return self.recognizer.tokenizer.decode(ids).strip()

    def feed(self, samples: np.ndarray) -> StreamUpdate:
        """The next packet of audio (mono float32 at the bundle's rate, any length)."""
        if self.finished:
            raise SpeechportError("this stream has finished; open a new one")
        self._add_frames(self.frontend.push(samples))
        return self._run(final=False)

    def finish(self) -> StreamUpdate:
        """End of the audio: the last chunk (padding after it masked), the final result."""
        if self.finished:
            return StreamUpdate(self.text, final=True)
        self._add_frames(self.frontend.finish())
        update = self._run(final=True)
        self.finished = True
        if self.tokens[self._utterance_first_token :] or not self.utterances:
            self._end_utterance(self._end_seconds())
        update.final = True
        return update

    def transcript(self, source: str | None = None) -> Transcript:
        """The stream so far as a ``Transcript`` (one segment per utterance)."""
        tokenizer = self.recognizer.tokenizer
        segments = []
        for start, end, tokens in self.utterances or [(0.0, self._end_seconds(), self.tokens)]:
            ids = [t.id for t in tokens if t.id not in self._markers]
            tokens = [t for t in tokens if t.id not in self._markers]
            words = [
                WordTiming(span.text, tokens[span.first].start, tokens[span.last].end)
                for span in tokenizer.words(ids)
            ]
            segments.append(
                Segment(
                    start=start,
                    end=end,
                    text=self._decode(tokens),
                    token_ids=ids,
                    frames=[round(t.start / self._frame_seconds) for t in tokens],
                    tokens=list(tokens),
                    words=words,
                )
            )
        return Transcript(
            segments=segments,
            duration=self.frontend.samples / self.recognizer.sample_rate,
            engine=self.recognizer.bundle.engine,
            source=source,
        )

    # --- internals -----------------------------------------------------------------------

    @property
    def _mel_end(self) -> int:
        return self._mel_first + self._mel.shape[1]

    def _end_seconds(self) -> float:
        return self.frontend.samples / self.recognizer.sample_rate

    def _add_frames(self, frames: np.ndarray) -> None:
        if frames.shape[1]:
            self._mel = np.concatenate([self._mel, frames], axis=1)

    def _chunks(self, final: bool) -> Iterator[tuple[int, int, int]]:
        """``(mel start, chunk end, lead)`` of every chunk that can run now (``final``: the
        audio has ended, so a shorter last chunk too)."""
        chunking = self.chunking
        while True:
            rel = self._pos - self._origin
            full_end = self._origin + chunking.chunk_end(rel)
            if full_end <= self._mel_end:
                end = full_end
            elif final and self._pos < self._mel_end:
                end = self._mel_end
            else:
                return
            start_rel, lead = chunking.window(rel, end - self._origin)
            yield self._origin + start_rel, end, lead

    def _run(self, *, final: bool) -> StreamUpdate:
        new_tokens: list[TokenTiming] = []
        new_events: list[StreamEvent] = []
        for start, end, lead in self._chunks(final):
            window = np.zeros((1, self._n_mels, self._width), dtype=np.float32)
            count = end - start
            first = start - self._mel_first
            window[0, :, lead : lead + count] = self._mel[:, first : first + count]
            inputs: list[np.ndarray] = [
                window,
                np.array([lead], dtype=np.int32),
                np.array([lead + count], dtype=np.int32),
            ]
            inputs += self._state
            if self.prompt is not None:
                inputs.append(self.prompt)
            began = time.perf_counter()
            outputs = self.encoder(*self._ordered(inputs))
            self.chunk_seconds.append(time.perf_counter() - began)
            encoded, encoded_len = outputs[0], int(outputs[1].reshape(-1)[0])
            self._state = [outputs[i] for i in self._state_outputs]
            frames = np.ascontiguousarray(encoded[0].T)  # [n, D]
            with one_blas_thread():  # the numpy step kernels' products
                hypothesis, self._carry = rnnt_greedy_resume(
                    self._steps.project(frames[:encoded_len]),
                    encoded_len,
                    self._steps.predict,
                    self._steps.joint,
                    blank_id=self._blank,
                    carry=self._carry,
                    max_symbols_per_frame=self._max_symbols,
                )
            offset = self._frames_out
            self._frames_out += encoded_len
            self._pos = end
            self._forget(end)
            for token, frame in zip(hypothesis.token_ids, hypothesis.frames, strict=True):
                at = self._origin_seconds + (offset + frame) * self._frame_seconds
                timing = TokenTiming(
                    token,
                    self.recognizer.tokenizer.piece(token),
                    at,
                    at + self._frame_seconds,
                )
                self.tokens.append(timing)
                new_tokens.append(timing)
                if token == self.recognizer.spec.end_of_utterance:
                    event = StreamEvent(
                        "end_of_utterance", timing.end, self._end_utterance(timing.end)
                    )
                    new_events.append(event)
                    self.events.append(event)
                    if self.reset_on_end_of_utterance:
                        self._reset_state(end)
                        break
        return StreamUpdate(self.text, new_tokens, new_events)

    def _ordered(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """``mel, start, length, *state, prompt`` into the component's input order."""
        names = ["mel", "start", "length", *self._state_names]
        if self.prompt is not None:
            names.append("prompt")
        by_name = dict(zip(names, inputs, strict=True))
        return [by_name[t.name] for t in self._inputs]

    def _forget(self, pos: int) -> None:
        """Drop mel frames no later window needs (history before the next chunk)."""
        keep_from = max(pos - self.chunking.history_frames, self._mel_first)
        if keep_from > self._mel_first:
            self._mel = self._mel[:, keep_from - self._mel_first :]
            self._mel_first = keep_from

    def _end_utterance(self, end: float) -> str:
        """Close the utterance running since the last one ended; returns its text."""
        tokens = self.tokens[self._utterance_first_token :]
        self.utterances.append((self._utterance_start, end, tokens))
        self._utterance_start = end
        self._utterance_first_token = len(self.tokens)
        return self._decode(tokens)
