"""Keyword spotting with a ``kws`` bundle: audio in, detections out, as audio arrives.

``KeywordSpotterModel`` is what ``speechport.load(bundle)`` returns for a keyword-spotting
bundle; ``.spotter(keywords)`` opens a ``Spotter`` session: ``feed(samples)`` returns the
detections that became certain, ``finish()`` the rest. The session computes Kaldi fbank
incrementally, runs the streaming encoder chunk by chunk with its caches, and runs the
keyword search of ``speechport.decoding.keyword_search`` (sherpa-onnx's semantics by
default, icefall's on request). Any packet size gives the same detections.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechport.audio import AudioInput, read_input
from speechport.decoding.context_graph import (
    SPM_BOUNDARY,
    ContextGraph,
    Keyword,
    KeywordError,
    keywords_from_phrases,
    parse_keyword_lines,
)
from speechport.decoding.keyword_search import (
    KeywordHit,
    KeywordSearch,
    KeywordStream,
    SearchSettings,
)
from speechport.errors import BundleError
from speechport.features.kaldi_fbank import KaldiFbankSpec, OnlineKaldiFbank
from speechport.manifest import NP_DTYPES
from speechport.runtime.base import Component, LoadedBundle
from speechport.tokenizer import load_sentencepiece

KeywordsInput = str | Path | Sequence[str] | Sequence[Keyword]


@dataclass(frozen=True)
class KwsSpec:
    """The manifest's ``extras.kws``: chunking, token ids and the search defaults."""

    chunk_frames: int
    chunk_shift: int
    frames_per_chunk: int
    frame_duration: float
    blank_id: int
    unk_id: int | None
    context_size: int
    vocab_size: int
    tail_padding_seconds: float
    defaults: dict[str, Any]

    @classmethod
    def from_manifest_extras(cls, extras: dict[str, Any], path: Path | None = None) -> KwsSpec:
        data = extras.get("kws")
        if not isinstance(data, dict):
            raise BundleError("keyword-spotting manifest: no extras.kws section", path=path)
        try:
            spec = cls(**data)
        except TypeError as exc:
            raise BundleError(f"keyword-spotting manifest: extras.kws: {exc}", path=path) from exc
        return spec


@dataclass(frozen=True)
class Detection:
    """A keyword heard: its phrase, start and end (seconds: the first and last token's
    frame), tokens and the mean token probability that passed the threshold."""

    keyword: str
    start: float
    end: float
    tokens: tuple[str, ...]
    token_ids: tuple[int, ...]
    frames: tuple[int, ...]
    score: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("tokens", "token_ids", "frames"):
            out[key] = list(out[key])
        return out


class _ChunkEncoder:
    """The bundle's streaming encoder with its caches (the manifest's state pairs)."""

    def __init__(self, component: Component):
        self.component = component
        spec = component.spec
        self._state_inputs = [spec.input(p.input) for p in spec.state]
        out_names = [t.name for t in spec.outputs]
        self._state_out = [out_names.index(p.output) for p in spec.state]
        self.states: list[np.ndarray] = []
        self.reset()

    def reset(self) -> None:
        self.states = [np.zeros(t.shape, dtype=NP_DTYPES[t.dtype]) for t in self._state_inputs]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        outputs = self.component(features[None].astype(np.float32), *self.states)
        self.states = [outputs[i] for i in self._state_out]
        frames: np.ndarray = outputs[0][0]
        return frames


class _RowWise:
    """A fixed batch-1 component called once per row of a batch."""

    def __init__(self, component: Component, dtypes: Sequence[type[np.generic]]):
        self.component = component
        self.dtypes = dtypes

    def __call__(self, *batches: np.ndarray) -> np.ndarray:
        rows = [
            self.component(
                *(
                    np.asarray(b[i : i + 1], dtype=d)
                    for b, d in zip(batches, self.dtypes, strict=False)
                )
            )[0]
            for i in range(len(batches[0]))
        ]
        return np.concatenate([np.asarray(r, dtype=np.float32).reshape(1, -1) for r in rows])


class KeywordSpotterModel:
    """A loaded keyword-spotting bundle; ``spotter(keywords)`` opens a session."""

    def __init__(self, bundle: LoadedBundle):
        manifest = bundle.manifest
        self.bundle = bundle
        self.spec = KwsSpec.from_manifest_extras(manifest.extras, bundle.path)
        self.sample_rate = manifest.sample_rate
        self.frontend = KaldiFbankSpec.from_dict(manifest.frontend)
        self.encoder = bundle.of_kind("streaming_encoder")
        decoder = bundle.of_kind("decoder_context")
        joiner = bundle.of_kind("joint")
        self._decoder = _RowWise(decoder, [NP_DTYPES[decoder.spec.inputs[0].dtype]])
        self._joiner = _RowWise(joiner, [np.float32, np.float32])
        tokenizer = manifest.tokenizer
        if tokenizer is None:
            raise BundleError("keyword-spotting manifest: no tokenizer", path=bundle.path)
        tokens_path = bundle.path / tokenizer.tokens_file
        try:
            self.pieces: list[str] = json.loads(tokens_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"cannot read the token list ({exc})", path=tokens_path) from exc
        self._sp = None
        if tokenizer.model_file:
            self._sp = load_sentencepiece(bundle.path / tokenizer.model_file)

    @property
    def backend(self) -> str:
        return self.bundle.backend

    def decoder(self, contexts: np.ndarray) -> np.ndarray:
        """``[H, context_size]`` token contexts -> ``[H, J]`` decoder outputs."""
        return self._decoder(contexts)

    def joiner(self, frames: np.ndarray, decoder_out: np.ndarray) -> np.ndarray:
        return self._joiner(frames, decoder_out)

    # --- keywords ------------------------------------------------------------------------

    def keywords(self, keywords: KeywordsInput) -> list[Keyword]:
        """Keywords from a file, a string or a list (see ``spotter``)."""
        if isinstance(keywords, Path) or (
            isinstance(keywords, str) and "\n" not in keywords and Path(keywords).is_file()
        ):
            path = Path(keywords)
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise KeywordError(f"cannot read the keyword file ({exc})", path=path) from exc
            return self._from_lines(lines, separator_is_comma=False)
        if isinstance(keywords, str):
            if Path(keywords).suffix.lower() in (".txt", ".list") and "," not in keywords:
                raise KeywordError("keyword file not found", path=keywords)
            return self._from_lines([keywords], separator_is_comma=True)
        items = list(keywords)
        if items and all(isinstance(k, Keyword) for k in items):
            return [k for k in items if isinstance(k, Keyword)]
        return self._from_lines([str(k) for k in items], separator_is_comma=False)

    def _from_lines(self, lines: list[str], *, separator_is_comma: bool) -> list[Keyword]:
        sherpa = any(
            SPM_BOUNDARY in word or word[:1] in (":", "#", "@")
            for line in lines
            for word in line.split()
        )
        if sherpa:  # sherpa-onnx's syntax; "/" separates keywords in a string, as in sherpa
            split = [part for line in lines for part in line.split("/")]
            return parse_keyword_lines(split, {p: i for i, p in enumerate(self.pieces)})
        phrases = [p for line in lines for p in (line.split(",") if separator_is_comma else [line])]
        if self._sp is None:
            raise KeywordError(
                "this bundle has no SentencePiece model to tokenise plain phrases",
                hint="give keywords as tokens in sherpa-onnx's syntax",
            )
        sp = self._sp
        return keywords_from_phrases(phrases, sp.encode, unk_id=self.spec.unk_id)

    # --- sessions ------------------------------------------------------------------------

    def spotter(
        self,
        keywords: KeywordsInput,
        *,
        boost: float | None = None,
        threshold: float | None = None,
        trailing_blanks: int | None = None,
        beam: int | None = None,
        search: str | None = None,
    ) -> Spotter:
        """A streaming session for ``keywords``: a keyword file (sherpa-onnx's syntax,
        ``▁HE LL O :1.5 #0.35 @HELLO`` per line, or one plain phrase per line), a string
        (``"HEY COMPUTER,LIGHTS ON"``: comma-separated phrases tokenised with the bundle's
        SentencePiece model; or sherpa lines separated by ``/``) or a list of either.
        ``boost``/``threshold`` are the defaults for keywords that set none; ``search`` is
        ``sherpa`` (default) or ``icefall``."""
        d = self.spec.defaults
        settings = SearchSettings(
            semantics=search or str(d.get("semantics", "sherpa")),
            beam=int(beam if beam is not None else d.get("beam", 4)),
            num_trailing_blanks=int(
                trailing_blanks if trailing_blanks is not None else d.get("trailing_blanks", 1)
            ),
            blank_id=self.spec.blank_id,
            unk_id=self.spec.unk_id,
            context_size=self.spec.context_size,
        )
        if settings.semantics == "icefall":  # decode.py searches <unk> like any token
            settings = SearchSettings(
                settings.semantics,
                settings.beam,
                settings.num_trailing_blanks,
                settings.blank_id,
                None,
                settings.context_size,
            )
        graph = ContextGraph(
            self.keywords(keywords),
            default_boost=float(boost if boost is not None else d.get("boost", 1.0)),
            default_threshold=float(
                threshold if threshold is not None else d.get("threshold", 0.25)
            ),
        )
        return Spotter(self, graph, settings)

    def spot(self, audio: AudioInput, keywords: KeywordsInput, **options: Any) -> list[Detection]:
        """Every detection in a whole file or array (one session)."""
        sample_rate = options.pop("sample_rate", None)
        samples, _ = read_input(audio, sample_rate=sample_rate, target_rate=self.sample_rate)
        session = self.spotter(keywords, **options)
        return session.feed(samples) + session.finish()


class Spotter:
    """One stream: ``feed(samples)`` (16 kHz floats in [-1, 1]) -> new detections;
    ``finish()`` -> the last ones (the input is padded with the bundle's tail of zeros, as
    sherpa-onnx's applications do). ``reset()`` starts a new stream."""

    def __init__(self, model: KeywordSpotterModel, graph: ContextGraph, settings: SearchSettings):
        self.model = model
        self.graph = graph
        self.settings = settings
        self._encoder = _ChunkEncoder(model.encoder)
        self._search = KeywordSearch(graph, model.decoder, model.joiner, settings)
        self._fbank = OnlineKaldiFbank(model.frontend)
        self._stream = KeywordStream(
            self._search,
            self._encoder,
            chunk_frames=model.spec.chunk_frames,
            chunk_shift=model.spec.chunk_shift,
        )
        self._finished = False

    def reset(self) -> None:
        self._fbank.reset()
        self._stream = KeywordStream(
            self._search,
            self._encoder,
            chunk_frames=self.model.spec.chunk_frames,
            chunk_shift=self.model.spec.chunk_shift,
        )
        self._finished = False

    def _detections(self, hits: list[KeywordHit]) -> list[Detection]:
        step = self.model.spec.frame_duration
        pieces = self.model.pieces
        return [
            Detection(
                keyword=h.keyword,
                start=round(h.start_frame * step, 6),
                end=round(h.end_frame * step, 6),
                tokens=tuple(pieces[t] for t in h.token_ids),
                token_ids=h.token_ids,
                frames=h.frames,
                score=h.score,
            )
            for h in hits
        ]

    def feed(self, samples: np.ndarray) -> list[Detection]:
        if self._finished:
            raise KeywordError("this session is finished; reset() it to start a new stream")
        frames = self._fbank.accept(np.asarray(samples, dtype=np.float32).reshape(-1))
        if len(frames) == 0:
            return []
        return self._detections(self._stream.accept(frames))

    def finish(self) -> list[Detection]:
        if self._finished:
            return []
        tail = np.zeros(
            round(self.model.spec.tail_padding_seconds * self.model.sample_rate),
            dtype=np.float32,
        )
        frames = np.concatenate([self._fbank.accept(tail), self._fbank.finish()])
        self._finished = True
        hits = self._stream.accept(frames) if len(frames) else []
        return self._detections(hits + self._stream.finish())
