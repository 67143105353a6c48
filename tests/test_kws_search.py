"""Keyword search (speechport.decoding.keyword_search and .context_graph) against upstream.

The decoder, joiner and (for sherpa's stream resets) encoder are upstream's own ONNX export
in tests/data/kws run by onnxruntime, so these tests check the search alone: its detections
must equal what icefall's ``keywords_search`` and sherpa-onnx's ``KeywordSpotter`` found
on the same model (tests/data/kws/expected.json), keyword, tokens and frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from speechport.decoding.context_graph import (
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
from tests import kws_data

ort = pytest.importorskip("onnxruntime")
spm = pytest.importorskip("sentencepiece")


def _session(path: Any) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class UpstreamOnnx:
    """Upstream's decoder, joiner and streaming encoder (states carried here)."""

    def __init__(self) -> None:
        self.encoder = _session(kws_data.ONNX_NAMES["encoder"])
        self.decoder_session = _session(kws_data.ONNX_NAMES["decoder"])
        self.joiner_session = _session(kws_data.ONNX_NAMES["joiner"])
        self.state_names = [i.name for i in self.encoder.get_inputs()][1:]
        self.states: dict[str, np.ndarray] = {}
        self.reset()

    def decoder(self, contexts: np.ndarray) -> np.ndarray:
        result: np.ndarray = self.decoder_session.run(None, {"y": contexts})[0]
        return result

    def joiner(self, enc: np.ndarray, dec: np.ndarray) -> np.ndarray:
        feeds = {"encoder_out": enc, "decoder_out": dec}
        result: np.ndarray = self.joiner_session.run(None, feeds)[0]
        return result

    def reset(self) -> None:
        self.states = {}
        for item in self.encoder.get_inputs()[1:]:
            dtype = np.int64 if "int64" in item.type else np.float32
            self.states[item.name] = np.zeros(
                [d if isinstance(d, int) else 1 for d in item.shape], dtype
            )

    def __call__(self, features: np.ndarray) -> np.ndarray:
        outputs = self.encoder.run(None, {"x": features[None], **self.states})
        self.states = dict(zip(self.state_names, outputs[1:], strict=True))
        frames: np.ndarray = outputs[0][0]
        return frames


@pytest.fixture(scope="module")
def upstream() -> UpstreamOnnx:
    return UpstreamOnnx()


def _graph(setting: dict[str, Any], keywords: list[Keyword]) -> ContextGraph:
    return ContextGraph(
        keywords,
        default_boost=setting["keywords_score"],
        default_threshold=setting["keywords_threshold"],
    )


def _as_tuples(hits: list[KeywordHit]) -> list[tuple[str, list[int], list[int]]]:
    return [(h.keyword, list(h.token_ids), list(h.frames)) for h in hits]


SETTINGS = [pytest.param(s, id=kws_data.setting_key(s)) for s in kws_data.settings()]


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("clip", kws_data.clips())
def test_icefall_semantics_equal_icefall_keywords_search(
    upstream: UpstreamOnnx, clip: str, setting: dict[str, Any]
) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(kws_data.KWS / "bpe.model"))
    keywords = keywords_from_phrases(kws_data.raw_phrases(), sp.encode)
    search = KeywordSearch(
        _graph(setting, keywords),
        upstream.decoder,
        upstream.joiner,
        SearchSettings(semantics="icefall", beam=4, num_trailing_blanks=1),
    )
    chunks = kws_data.clip_arrays(clip)["encoder_out_proj_chunks"]
    hits: list[KeywordHit] = []
    for chunk in chunks:  # chunk by chunk is the same as one pass over all frames
        hits += search.decode(chunk)
    hits += search.finish()
    assert _as_tuples(hits) == kws_data.expected_icefall(clip, setting)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("clip", kws_data.clips())
def test_sherpa_semantics_equal_sherpa_onnx(
    upstream: UpstreamOnnx, clip: str, setting: dict[str, Any]
) -> None:
    keywords = parse_keyword_lines(kws_data.sherpa_lines(), kws_data.piece_ids())
    search = KeywordSearch(
        _graph(setting, keywords),
        upstream.decoder,
        upstream.joiner,
        SearchSettings(semantics="sherpa", beam=4, num_trailing_blanks=1, unk_id=2),
    )
    stream = KeywordStream(search, upstream, chunk_frames=45, chunk_shift=32)
    fbank = kws_data.clip_arrays(clip)["fbank"]
    hits: list[KeywordHit] = []
    for start in range(0, len(fbank), 7):  # feature frames arriving a few at a time
        hits += stream.accept(fbank[start : start + 7])
    hits += stream.finish()
    assert _as_tuples(hits) == kws_data.expected_sherpa(clip, setting)


def test_per_keyword_boost_and_threshold_in_the_file_are_used(upstream: UpstreamOnnx) -> None:
    """The same lines with explicit ``:boost #threshold`` and other defaults: identical."""
    setting = kws_data.settings()[1]
    lines = (kws_data.KWS / "keywords_score0.5_thr0.15.txt").read_text(encoding="utf-8")
    keywords = parse_keyword_lines(lines.splitlines(), kws_data.piece_ids())
    assert {(k.boost, k.threshold) for k in keywords} == {(0.5, 0.15)}
    graph = ContextGraph(keywords, default_boost=3.0, default_threshold=0.9)
    search = KeywordSearch(graph, upstream.decoder, upstream.joiner, SearchSettings(unk_id=2))
    stream = KeywordStream(search, upstream, chunk_frames=45, chunk_shift=32)
    clip = "clip6_no_keyword_train"
    hits = stream.accept(kws_data.clip_arrays(clip)["fbank"]) + stream.finish()
    assert _as_tuples(hits) == kws_data.expected_sherpa(clip, setting)


# --------------------------------------------------------------------------- the graph


def test_graph_fail_and_output_arcs_and_boost_cancellation() -> None:
    # keywords "he", "she", "his", "hers" over tokens h=1 e=2 s=3 i=4 r=5
    words = {"he": (1, 2), "she": (3, 1, 2), "his": (1, 4, 3), "hers": (1, 2, 5, 3)}
    graph = ContextGraph(
        [Keyword(ids, name) for name, ids in words.items()],
        default_boost=1.0,
        default_threshold=0.5,
    )
    state = graph.root
    total = 0.0
    for token in (3, 1, 2):  # s h e: matches "she" and, through the output arc, "he"
        score, state = graph.forward(state, token)
        total += score
    matched = graph.matched(state)
    assert matched is not None and matched.phrase == "she"
    assert matched.output is not None and matched.output.phrase == "he"
    # walking s-h-e earns 3 boosts plus both keyword ends' output scores (3 + 2)
    assert total == pytest.approx(3.0 + 3.0 + 2.0)
    # "r" continues "he" -> "her" through the fail arc of "she" (same depth: no change),
    # then token 9 leaves every keyword: the boost of the abandoned path is taken back
    score, state = graph.forward(state, 5)
    assert state.level == 3 and not state.is_end and score == pytest.approx(0.0)
    score, state = graph.forward(state, 9)
    assert state.is_root and score == pytest.approx(-3.0)


def test_shared_prefix_keeps_the_largest_boost() -> None:
    graph = ContextGraph(
        [Keyword((7, 8), "a", boost=0.5), Keyword((7, 9), "b", boost=2.0)],
        default_boost=1.0,
        default_threshold=0.25,
    )
    first = graph.root.next[7]
    assert first.token_score == 2.0
    # as upstream: scores below a shared node are summed when each keyword is inserted
    # (icefall and sherpa-onnx build it the same way), so "a" keeps the 0.5 + 0.5 it had
    assert first.next[8].node_score == 1.0 and first.next[9].node_score == 4.0


# --------------------------------------------------------------------------- keyword lists


def test_sherpa_line_syntax() -> None:
    ids = {"\u2581HE": 5, "LL": 6, "O": 7}
    (kw,) = parse_keyword_lines(["\u2581HE LL O :1.5 #0.35 @HELLO"], ids)
    assert kw == Keyword((5, 6, 7), "HELLO", 1.5, 0.35)
    (plain,) = parse_keyword_lines(["", "\u2581HE LL O"], ids)
    assert plain.phrase == "HELLO" and plain.boost == 0.0 and plain.threshold == 0.0


def test_unknown_token_names_the_keyword() -> None:
    with pytest.raises(KeywordError, match=r"HELLO.*'XX'"):
        parse_keyword_lines(["\u2581HE XX O @HELLO"], {"\u2581HE": 5, "O": 7})


def test_phrase_mapping_to_unk_is_an_error() -> None:
    sp = spm.SentencePieceProcessor(model_file=str(kws_data.KWS / "bpe.model"))
    with pytest.raises(KeywordError, match="'HELLO \u00e9T\u00c9'"):
        keywords_from_phrases(["HELLO \u00e9T\u00c9"], sp.encode, unk_id=sp.unk_id())


@pytest.mark.parametrize("lines", [[], ["", "   "]])
def test_empty_keyword_list_is_an_error(lines: list[str]) -> None:
    with pytest.raises(KeywordError, match="empty"):
        parse_keyword_lines(lines, {})
    with pytest.raises(KeywordError, match="empty"):
        keywords_from_phrases(lines, lambda s: [1])
    with pytest.raises(KeywordError, match="empty"):
        ContextGraph([], default_boost=1.0, default_threshold=0.25)


def test_bad_settings_are_errors() -> None:
    with pytest.raises(KeywordError, match="semantics"):
        SearchSettings(semantics="kaldi")
    with pytest.raises(KeywordError, match="beam"):
        SearchSettings(beam=0)


# --------------------------------------------------------------------------- sherpa's stream


class _CountingEncoder:
    """8 frames per chunk, whatever the features; counts its resets."""

    def __init__(self) -> None:
        self.resets = 0
        self.calls = 0

    def reset(self) -> None:
        self.resets += 1

    def __call__(self, features: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.zeros((8, 2), dtype=np.float32)


def _blank_joiner(enc: np.ndarray, dec: np.ndarray) -> np.ndarray:
    logits = np.zeros((len(enc), 5), dtype=np.float32)
    logits[:, 0] = 10.0  # blank everywhere
    return logits


def test_sherpa_stream_resets_itself_after_1_5_s_of_blanks() -> None:
    graph = ContextGraph([Keyword((3, 4), "X")], default_boost=1.0, default_threshold=0.25)
    search = KeywordSearch(
        graph, lambda c: np.zeros((len(c), 2), np.float32), _blank_joiner, SearchSettings()
    )
    encoder = _CountingEncoder()
    stream = KeywordStream(search, encoder, chunk_frames=45, chunk_shift=32)
    assert encoder.resets == 1  # the stream starts from the initial state
    for chunk in range(1, 12):
        stream.accept(np.zeros((32 if chunk > 1 else 46, 80), np.float32))
        # before each chunk, sherpa resets when the best path ends in more than 37 blank
        # frames (1.5 s at 40 ms): after 5 chunks (40 frames), then 5 chunks later again
        assert encoder.resets == 1 + (encoder.calls - 1) // 5, chunk
    assert search.frame == 8 * ((encoder.calls - 1) % 5 + 1)


def test_icefall_stream_never_resets_the_encoder() -> None:
    graph = ContextGraph([Keyword((3, 4), "X")], default_boost=1.0, default_threshold=0.25)
    search = KeywordSearch(
        graph,
        lambda c: np.zeros((len(c), 2), np.float32),
        _blank_joiner,
        SearchSettings(semantics="icefall"),
    )
    encoder = _CountingEncoder()
    stream = KeywordStream(search, encoder, chunk_frames=45, chunk_shift=32)
    stream.accept(np.zeros((46 + 32 * 10, 80), np.float32))
    assert (encoder.calls, encoder.resets, search.frame) == (11, 1, 88)
