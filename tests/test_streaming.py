"""Streaming ASR against NeMo's own cache-aware streaming (tests/data/streaming: three tiny
models made and trained by NeMo 3.0, with its chunk-by-chunk encoder outputs and streaming
greedy tokens for every clip and lookahead; see PROVENANCE.md there)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

import speechport
from speechport.cli import main
from speechport.errors import BundleError, CheckpointError, SpeechportError
from speechport.families.nemo_archive import read_nemo_archive
from speechport.families.nemo_streaming.config import StreamingConfig
from speechport.families.nemo_streaming.model import DROP_EXTRA_PRE_ENCODED, build_model
from speechport.features.streaming import StreamingLogMel
from speechport.manifest import read_manifest
from speechport.pipelines.streaming import StreamingRecognizer, chunk_windows
from tests.helpers import BundleCache

DATA = Path(__file__).parent / "data" / "streaming"
MODELS = ("streaming_rnnt", "nemotron_prompt", "eou_rnnt")
CLIPS = (0, 1, 2, 3)
LANGUAGES = {"en-US": "", "de-DE": "_dede", "auto": "_auto"}
INDEX = json.loads((DATA / "index.json").read_text(encoding="utf-8"))
# Same float32 computation in another order: NeMo's streaming and offline encoders differ
# from each other by up to 7e-6 on these clips (index.json).
ENCODER_ATOL = 2e-5


def lookaheads(model: str) -> list[int]:
    return [int(la) for la in INDEX["models"][model]["lookaheads"]]


def cases(*, languages: bool = False) -> list[tuple[str, int, int, str]]:
    out = []
    for model in MODELS:
        langs = list(LANGUAGES) if languages and model == "nemotron_prompt" else ["en-US"]
        for la in lookaheads(model):
            for clip in CLIPS:
                out += [(model, la, clip, lang) for lang in langs]
    return out


def audio(clip: int) -> np.ndarray:
    samples, rate = sf.read(DATA / "audio" / f"clip{clip}.wav", dtype="float32")
    assert rate == 16000
    return np.asarray(samples)


def reference(model: str, la: int, clip: int) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{model}_la{la}_clip{clip}.npz") as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def bundles(bundle_cache: BundleCache) -> dict[str, Path]:
    return {  # every lookahead the model has (a bundle exports the first by default)
        m: bundle_cache.get(
            "nemo-streaming",
            DATA / f"{m}.nemo",
            m,
            formats="onnx",
            plan_options={"lookaheads": tuple(lookaheads(m))},
        )
        for m in MODELS
    }


@pytest.fixture(scope="module")
def torch_models() -> dict[str, Any]:
    out = {}
    for m in MODELS:
        archive = read_nemo_archive(DATA / f"{m}.nemo", wanted=("tokenizer.model_path",))
        config = StreamingConfig.from_nemo(archive.config)
        out[m] = build_model(config, archive.state_dict)[0]
    return out


def test_features_equal_nemo_for_any_packet_size(torch_models: dict[str, Any]) -> None:
    spec = torch_models["streaming_rnnt"].config.frontend
    for clip in CLIPS:
        samples = audio(clip)
        with np.load(DATA / f"features_clip{clip}.npz") as npz:
            want = npz["mel"][0]
        got = {}
        for packet in (1, 160, 317, 5120, samples.size):
            frontend = StreamingLogMel(spec)
            parts = [frontend.push(samples[i : i + packet]) for i in range(0, samples.size, packet)]
            got[packet] = np.concatenate([*parts, frontend.finish()], axis=1)
        whole = got[samples.size]
        assert all(np.array_equal(g, whole) for g in got.values())
        assert whole.shape == want.shape
        # NeMo's float32 STFT: its rounding noise dominates in the quietest bins only.
        loud = want > -10.0
        assert np.abs(whole - want)[loud].max() < 2e-5
        assert np.abs(whole - want).max() < 2.5e-4


@pytest.mark.parametrize(("model", "la", "clip", "lang"), cases())
def test_torch_encoder_chunk_by_chunk_equals_nemo(
    torch_models: dict[str, Any], model: str, la: int, clip: int, lang: str
) -> None:
    """One fixed-size window per chunk (history before it, padding masked), every cache
    carried: NeMo's streaming encoder output, and its offline one at the same lookahead."""
    from speechport.manifest import ChunkingSpec

    net = torch_models[model]
    ref = reference(model, la, clip)
    with np.load(DATA / f"features_clip{clip}.npz") as npz:
        mel = torch.from_numpy(npz["mel"])
    total = mel.shape[2]
    left, _ = net.config.context_of(la)
    prompt = net.prompt_vector(lang)
    chunking = ChunkingSpec(la, "", 1 + 8 * la, 8 * (la + 1), 9, 9 + 8 * (la + 1), la + 1)
    step = net.encoder(la, drop=DROP_EXTRA_PRE_ENCODED, max_frames=la + 1)
    caches = net.initial_caches(left)
    pieces = []
    windows = chunk_windows(chunking, total)
    with torch.no_grad():
        for start, _, end, lead in windows:
            window = torch.zeros(1, mel.shape[1], chunking.window_frames)
            window[:, :, lead : lead + end - start] = mel[:, :, start:end]
            out = step(
                window, torch.tensor([lead]), torch.tensor([lead + end - start]), *caches, prompt
            )
            pieces.append(out[0][:, :, : int(out[1][0])])
            caches = out[2:]
        offline = net.encoder(la, drop=0, max_frames=total)
        whole = offline(
            mel, torch.tensor([0]), torch.tensor([total]), *net.initial_caches(left), prompt
        )
    streamed = torch.cat(pieces, dim=2).numpy()
    np.testing.assert_allclose(streamed, ref["stream_encoded"], atol=ENCODER_ATOL, rtol=0)
    np.testing.assert_allclose(
        whole[0][:, :, : int(whole[1][0])].numpy(),
        ref["offline_encoded"],
        atol=ENCODER_ATOL,
        rtol=0,
    )
    # NeMo's windows: (mel start, mel end) per chunk, and its final caches.
    assert [(s, e) for s, _, e, _ in windows] == [tuple(w[:2]) for w in ref["stream_windows"]]
    np.testing.assert_allclose(
        caches[0].numpy(), ref["final_cache_last_channel"], atol=ENCODER_ATOL, rtol=0
    )
    np.testing.assert_allclose(
        caches[1].numpy(), ref["final_cache_last_time"], atol=ENCODER_ATOL, rtol=0
    )
    assert int(caches[2][0]) == int(ref["final_cache_last_channel_len"][0])
    if model == "nemotron_prompt" and lang == "en-US":
        # The second oracle: transformers' Nemotron3_5AsrForRNNT with use_cache=True, its
        # projected encoder output (pooler) over the complete chunks.
        pooler = ref["hf_stream_pooler"]
        with torch.no_grad():
            projected = net.joint.enc(torch.from_numpy(streamed[0].T)).numpy()
        np.testing.assert_allclose(projected[: pooler.shape[0]], pooler, atol=ENCODER_ATOL, rtol=0)


@pytest.mark.parametrize(("model", "la", "clip", "lang"), cases(languages=True))
def test_onnx_bundle_tokens_equal_nemo_streaming(
    bundles: dict[str, Path], model: str, la: int, clip: int, lang: str
) -> None:
    recognizer = speechport.load(bundles[model])
    assert isinstance(recognizer, StreamingRecognizer)
    ref = reference(model, la, clip)
    suffix = LANGUAGES[lang]
    session = recognizer.stream(lookahead=la, language=lang if recognizer.languages else None)
    samples = audio(clip)
    for start in range(0, samples.size, 5120):
        session.feed(samples[start : start + 5120])
    session.finish()
    assert [t.id for t in session.tokens] == ref["stream_token_ids" + suffix].tolist()
    frames = [round(t.start / 0.08) for t in session.tokens]
    assert frames == ref["stream_token_frames" + suffix].tolist()


@pytest.mark.parametrize("steps", ["numpy", "onnx"])
def test_streaming_tokens_equal_nemo_with_either_step_engine(
    bundles: dict[str, Path], steps: str
) -> None:
    """The per-step decoder and joint pinned to numpy kernels (the joint in parts: each
    chunk's frames projected at once, the decoder output projected in the LSTM step) or to
    ONNX Runtime: NeMo's streaming tokens and frames either way."""
    from speechport.runtime.numpy_steps import NumpyJoint, NumpyLstmStep

    model, la, clip, _ = cases()[0]
    recognizer = speechport.load(bundles[model], steps=steps)
    assert isinstance(recognizer, StreamingRecognizer)
    kernels = [
        isinstance(c, (NumpyLstmStep, NumpyJoint)) for c in recognizer.bundle.components.values()
    ]
    assert kernels.count(True) == (2 if steps == "numpy" else 0)
    ref = reference(model, la, clip)
    session = recognizer.stream(lookahead=la)
    session.feed(audio(clip))
    session.finish()
    assert [t.id for t in session.tokens] == ref["stream_token_ids"].tolist()
    assert [round(t.start / 0.08) for t in session.tokens] == ref["stream_token_frames"].tolist()


@pytest.mark.slow
def test_torch_reference_tokens_equal_nemo(bundles: dict[str, Path]) -> None:
    recognizer = speechport.load(
        bundles["streaming_rnnt"], "torch", checkpoint=DATA / "streaming_rnnt.nemo"
    )
    for la in lookaheads("streaming_rnnt"):
        for clip in CLIPS:
            got = recognizer.transcribe(audio(clip), lookahead=la)
            assert (
                got.token_ids == reference("streaming_rnnt", la, clip)["stream_token_ids"].tolist()
            )


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_core_ml_bundle_tokens_equal_nemo(bundle_cache: BundleCache, precision: str) -> None:
    """The Core ML packages (run by speechport's Core ML program interpreter off macOS,
    fp16 emulated): NeMo's streaming tokens and frames at the default lookahead."""
    bundle = bundle_cache.get(
        "nemo-streaming",
        DATA / "streaming_rnnt.nemo",
        f"streaming_rnnt_{precision}",
        formats="coreml",
        precision=precision,
    )
    recognizer = speechport.load(bundle, "coreml")
    assert "MIL interpreter" in recognizer.bundle.engine
    for clip in CLIPS:
        ref = reference("streaming_rnnt", 3, clip)
        got = recognizer.transcribe(audio(clip))
        assert got.token_ids == ref["stream_token_ids"].tolist()
        assert [round(t.start / 0.08) for t in got.tokens] == ref["stream_token_frames"].tolist()


def test_any_packet_size_gives_the_same_tokens(bundles: dict[str, Path]) -> None:
    recognizer = speechport.load(bundles["streaming_rnnt"])
    samples = audio(0)
    results = []
    for packet in (1, 160, 317, 5120, 16000, samples.size):
        session = recognizer.stream(lookahead=0)
        for start in range(0, samples.size, packet):
            session.feed(samples[start : start + packet])
        session.finish()
        results.append([(t.id, t.start) for t in session.tokens])
    assert all(r == results[0] for r in results) and results[0]
    assert [i for i, _ in results[0]] == reference("streaming_rnnt", 0, 0)[
        "stream_token_ids"
    ].tolist()


def test_end_of_utterance_events(bundles: dict[str, Path]) -> None:
    """The EOU model on the seven-sentence clip: an event at every emitted ``<EOU>``, at its
    frame, and the text between two events is NeMo's."""
    recognizer = speechport.load(bundles["eou_rnnt"])
    ref = reference("eou_rnnt", 1, 2)
    ids = ref["stream_token_ids"].tolist()
    eou = read_manifest(bundles["eou_rnnt"]).streaming.end_of_utterance  # type: ignore[union-attr]
    assert eou == 128
    session = recognizer.stream()
    events = []
    samples = audio(2)
    for start in range(0, samples.size, 1600):
        events += session.feed(samples[start : start + 1600]).events
    events += session.finish().events
    want_frames = [
        f for i, f in zip(ids, ref["stream_token_frames"].tolist(), strict=True) if i == eou
    ]
    assert [round(e.seconds / 0.08) - 1 for e in events] == want_frames and len(events) == 3
    pieces: list[list[int]] = [[]]
    for i in ids:
        if i == eou:
            pieces.append([])
        else:
            pieces[-1].append(i)
    texts = [recognizer.tokenizer.decode(p).strip() for p in pieces[: len(events)]]
    assert [e.utterance for e in events] == texts and "<EOU>" not in session.text
    transcript = session.transcript()
    assert len(transcript.segments) == len(events) + (1 if pieces[-1] else 0)


def test_prompt_languages_and_bad_choices(bundles: dict[str, Path]) -> None:
    recognizer = speechport.load(bundles["nemotron_prompt"])
    assert recognizer.languages[:2] == ["en-US", "en-GB"] and "auto" in recognizer.languages
    with pytest.raises(SpeechportError, match="unknown language 'xx-XX'; this model knows: en-US"):
        recognizer.stream(language="xx-XX")
    with pytest.raises(BundleError, match="no lookahead 2; it has: 3, 1, 0"):
        recognizer.stream(lookahead=2)
    plain = speechport.load(bundles["streaming_rnnt"])
    with pytest.raises(SpeechportError, match="takes no language"):
        plain.stream(language="de-DE")


def test_an_offline_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not cache-aware") as err:
        speechport.convert(
            "nemo-streaming",
            tmp_path / "out",
            Path(__file__).parent / "data" / "nemo" / "parakeet_tdt.nemo",
        )
    assert "speechport convert parakeet" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_cli_stream_and_transcribe(
    bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    clip = DATA / "audio" / "clip0.wav"
    text = INDEX["models"]["streaming_rnnt"]["lookaheads"]["3"]["clips"][0]["outputs"]["default"][
        "text"
    ]
    assert main(["stream", str(bundles["streaming_rnnt"]), str(clip), "--output", "jsonl"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1] == {"type": "final", "audio_seconds": 2.602, "text": text}
    partials = [e["text"] for e in events if e["type"] == "partial"]
    # Tokens come in two bursts on this clip (20 ms packets): one line each.
    assert partials == ["the birch canoe slid", text]
    assert main(["transcribe", str(bundles["streaming_rnnt"]), str(clip)]) == 0
    assert capsys.readouterr().out == text + "\n"
    # many files, two jobs: each job opens its own recognizer; input order
    args = ["transcribe", str(bundles["streaming_rnnt"]), str(clip), str(clip), "--jobs", "2"]
    assert main(args) == 0
    assert capsys.readouterr().out == f"==> {clip} <==\n{text}\n" * 2
    assert main(["stream", str(bundles["streaming_rnnt"]), str(clip), "--lookahead", "2"]) == 2
    assert "no lookahead 2; it has: 3, 1, 0" in capsys.readouterr().err
    assert main(["transcribe", str(bundles["streaming_rnnt"]), str(clip), "--overlap", "1"]) == 2
    assert "takes no --overlap" in capsys.readouterr().err
    assert main(["info", str(bundles["nemotron_prompt"])]) == 0
    info = capsys.readouterr().out
    assert "streaming: lookaheads 3 (320 ms chunks), 1 (160 ms chunks), 0 (80 ms chunks)" in info
    assert "languages: en-US, en-GB, es-ES, es-US, fr-FR, de-DE, it-IT, auto" in info


def test_a_streaming_recognizer_transcribes_many_files_in_jobs(bundles: dict[str, Path]) -> None:
    clips = [DATA / "audio" / f"clip{c}.wav" for c in CLIPS]
    recognizer = speechport.load(bundles["streaming_rnnt"], threads=1)
    assert isinstance(recognizer, StreamingRecognizer) and recognizer.recipe is not None
    alone = [recognizer.transcribe(c).to_dict() for c in clips]
    result = recognizer.transcribe_many([*clips, clips[0]], jobs=2)
    assert [t.to_dict() for t in result.transcripts] == [*alone, alone[0]]
    assert (result.throughput.files, result.throughput.jobs) == (len(clips) + 1, 2)


def test_verify_streaming_bundle(bundles: dict[str, Path], tmp_path: Path) -> None:
    from speechport.parity.run import verify_bundle

    report = verify_bundle(
        bundles["eou_rnnt"],
        [DATA / "audio" / "clip0.wav"],
        backends=["onnx"],
        checkpoint=DATA / "eou_rnnt.nemo",
        latency_runs=1,
    )
    assert report.passed and report.task == "streaming-asr"
    (result,) = report.files
    assert result.token_exact  # type: ignore[attr-defined]
    (encoder,) = report.components[0].components
    assert encoder.kind == "streaming_encoder" and encoder.calls == 17
    assert encoder.outputs["encoded_len"].exact and encoder.outputs["cache_len_next"].exact
    assert encoder.outputs["encoded"].max_abs < ENCODER_ATOL
    assert encoder.outputs["cache_channel_next"].max_abs < ENCODER_ATOL


def test_sherpa_onnx_loads_the_bundle_like_nemos_export(bundles: dict[str, Path]) -> None:
    """sherpa-onnx's online NeMo transducer takes the bundle's files as they are and gives
    the transcripts it gives on NeMo's own export of the same model (lookahead 3)."""
    sherpa = pytest.importorskip("sherpa_onnx")

    def run(folder: Path, encoder: str, tokens: str) -> list[str]:
        recognizer = sherpa.OnlineRecognizer.from_transducer(
            tokens=str(folder / tokens),
            encoder=str(folder / encoder),
            decoder=str(folder / "decoder.onnx"),
            joiner=str(folder / "joiner.onnx"),
            feature_dim=128,
            decoding_method="greedy_search",
        )
        texts = []
        for clip in CLIPS:
            stream = recognizer.create_stream()
            samples = audio(clip)
            for start in range(0, samples.size, 1600):
                stream.accept_waveform(16000, samples[start : start + 1600])
            stream.accept_waveform(16000, np.zeros(8000, dtype=np.float32))
            stream.input_finished()
            while recognizer.is_ready(stream):
                recognizer.decode_stream(stream)
            texts.append(recognizer.get_result(stream).strip())
        return texts

    ours = run(bundles["streaming_rnnt"], "encoder.onnx", "tokens.txt")
    nemo = run(DATA / "nemo_export", "encoder.onnx", "tokens.txt")
    assert ours == nemo and ours[0] == "the birch canoe slid on the smooth planks"


def test_a_bundle_exports_the_models_first_lookahead_unless_told(
    bundles: dict[str, Path], torch_models: dict[str, Any]
) -> None:
    from speechport.families.base import LoadedCheckpoint
    from speechport.families.nemo_streaming.bundle import StreamingCheckpoint, plan_bundle

    net = torch_models["nemotron_prompt"]
    loaded = LoadedCheckpoint(
        "nemo-streaming", "x", net, StreamingCheckpoint(net.config, [], b""), DATA, None, "-"
    )
    default = plan_bundle(loaded).streaming
    assert default is not None and [c.lookahead for c in default.chunkings] == [3]
    with pytest.raises(CheckpointError, match="no lookahead 2; it has: 3, 1, 0"):
        plan_bundle(loaded, lookaheads=(2,))
    # The lookaheads a bundle was made with are in its provenance: the torch reference
    # rebuilds those components.
    provenance = read_manifest(bundles["nemotron_prompt"]).provenance
    assert provenance["plan_options"] == {"lookaheads": [3, 1, 0]}


def test_bundle_layout(bundles: dict[str, Path]) -> None:
    m = read_manifest(bundles["nemotron_prompt"])
    assert m.task == "streaming-asr" and m.window is None
    assert m.streaming is not None
    assert [c.lookahead for c in m.streaming.chunkings] == [3, 1, 0]
    assert [(c.first_frames, c.step_frames, c.window_frames) for c in m.streaming.chunkings] == [
        (25, 32, 41),
        (9, 16, 25),
        (1, 8, 17),
    ]
    assert m.streaming.prompts["auto"] == 101 and m.streaming.num_prompts == 128
    encoder = m.component("encoder_la3")
    assert encoder.kind == "streaming_encoder"
    assert [p.input for p in encoder.state] == ["cache_channel", "cache_time", "cache_len"]
    assert [t.name for t in encoder.inputs][-1] == "prompt"
    assert m.component("decoder").kind == "decoder_step"
