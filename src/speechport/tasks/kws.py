"""Keyword spotting (``kws``): a bundle opens as a ``KeywordSpotterModel``
(``.spotter(keywords)`` -> a streaming session); verify compares the streaming encoder
chunk by chunk (its output and every cache, each chunk fed the reference's own inputs), the
decoder and joiner on every input the keyword search visited, and the detections; quantize
ranks variants by the share of the reference's detections they keep.

Verify searches for the keywords it is given (``--keywords``: an evaluation's list) or,
by default, for keywords the model actually hears in the audio: every pair of consecutive
tokens of the reference's beam-search transcript of the file (at most
``VERIFY_KEYWORDS``), so the search walks, boosts and triggers on real paths. The gate is
the share of utterances whose detections equal the reference's (``min_agreement``: all of
them by default; a palettized spotter is judged on a share, as its published claims are).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechport.decoding.context_graph import ContextGraph, Keyword
from speechport.decoding.keyword_search import KeywordSearch, KeywordStream, SearchSettings
from speechport.features.kaldi_fbank import OnlineKaldiFbank
from speechport.parity.report import MIN_AGREEMENT, FileResult, KwsFileResult, ParityReport
from speechport.pipelines.kws import KeywordSpotterModel, _ChunkEncoder
from speechport.tasks.base import GateLimits, Task

if TYPE_CHECKING:
    from speechport.compression.results import VariantResult
    from speechport.parity.run import VerifyRun

VERIFY_KEYWORDS = 20
VERIFY_BEAM = 4


class KwsTask(Task):
    name = "kws"
    title = "keyword spotting"
    sections = ("tokenizer",)
    file_result = KwsFileResult
    example_template = "kws_example.py"
    usage = 'speechport spot . audio.wav --keywords "HEY COMPUTER,LIGHTS ON"'
    quality_label = "detections kept"

    def check_manifest(self, manifest: Any) -> None:
        super().check_manifest(manifest)
        from speechport.pipelines.kws import KwsSpec

        KwsSpec.from_manifest_extras(manifest.extras)

    def open(self, bundle: Any, **options: Any) -> KeywordSpotterModel:
        """A ``KeywordSpotterModel``; ``.spotter(keywords, ...)`` opens sessions."""
        if options:
            raise TypeError(f"unknown keyword-spotting option(s): {', '.join(options)}")
        return KeywordSpotterModel(bundle)

    # --- verify --------------------------------------------------------------------------

    def gates(self, limits: GateLimits) -> dict[str, float]:
        """The share of utterances whose detections must equal the reference's."""
        return {MIN_AGREEMENT: limits.min_agreement}

    def verify_file(self, run: VerifyRun, audio: np.ndarray, path: str) -> None:
        ref = KeywordSpotterModel(run.reference)
        fbank = _features(ref, audio)
        chunks = _chunks(ref, fbank)
        ref_encoder = _ChunkEncoder(ref.encoder)
        ref_inputs: list[list[np.ndarray]] = []
        ref_outputs: list[tuple[np.ndarray, ...]] = []
        for chunk in chunks:
            inputs = [chunk[None].astype(np.float32), *ref_encoder.states]
            outputs = ref.encoder(*inputs)
            ref_encoder.states = [outputs[i] for i in ref_encoder._state_out]
            ref_inputs.append(inputs)
            ref_outputs.append(outputs)
        if run.keywords is not None:
            keywords = ref.keywords(run.keywords)
        else:
            keywords = _transcript_keywords(ref, [o[0][0] for o in ref_outputs])
        contexts: list[np.ndarray] = []
        pairs: list[tuple[np.ndarray, np.ndarray]] = []

        def decoder(ctx: np.ndarray) -> np.ndarray:
            contexts.append(ctx)
            return ref.decoder(ctx)

        def joiner(enc: np.ndarray, dec: np.ndarray) -> np.ndarray:
            pairs.append((enc, dec))
            return ref.joiner(enc, dec)

        ref_hits = _detect(ref, fbank, keywords, decoder, joiner)
        state_names = [t.name for t in ref.encoder.spec.outputs[1:]]
        for name, candidate in run.candidates.items():
            import time

            got = KeywordSpotterModel(candidate)
            enc_diff, state_diff, worst = 0.0, 0.0, ""
            start = time.perf_counter()
            for inputs, expected in zip(ref_inputs, ref_outputs, strict=True):
                outputs = got.encoder(*inputs)
                enc_diff = max(enc_diff, _max_abs(outputs[0], expected[0]))
                for n, a, b in zip(state_names, outputs[1:], expected[1:], strict=True):
                    d = _max_abs(a, b)
                    if d > state_diff:
                        state_diff, worst = d, n
            dec_diff = max(
                (_max_abs(got.decoder(c), ref.decoder(c)) for c in contexts), default=0.0
            )
            joiner_diff, agree = 0.0, 0
            for enc, dec in pairs:
                a, b = got.joiner(enc, dec), ref.joiner(enc, dec)
                joiner_diff = max(joiner_diff, _max_abs(a, b))
                agree += int(np.array_equal(a.argmax(axis=-1), b.argmax(axis=-1)))
            hits = _detect(got, fbank, keywords, got.decoder, got.joiner)
            run.run_seconds[name] = run.run_seconds.get(name, 0.0) + time.perf_counter() - start
            kept, added = _kept(ref_hits, hits)
            failures = [] if hits == ref_hits else ["detections differ from the reference's"]
            run.report.files.append(
                KwsFileResult(
                    audio=path,
                    backend=name,
                    failures=failures,
                    chunks=len(chunks),
                    encoder_max_abs=enc_diff,
                    state_max_abs=state_diff,
                    worst_state=worst,
                    decoder_max_abs=dec_diff,
                    joiner_max_abs=joiner_diff,
                    joiner_top1=agree / len(pairs) if pairs else 1.0,
                    joiner_pairs=len(pairs),
                    keywords=[k.phrase for k in keywords],
                    detections_reference=ref_hits,
                    detections=hits,
                    detections_kept=kept,
                    detections_added=added,
                )
            )

    def file_line(self, result: FileResult) -> str:
        r = _kws(result)
        return (
            f"detections {'equal' if r.detections_equal else 'DIFFER'} "
            f"({len(r.detections_reference)}, kept {r.detections_kept:.2f}, "
            f"{r.detections_added} added); encoder max|d| {r.encoder_max_abs:.1e}, "
            f"states {r.state_max_abs:.1e} ({r.worst_state}), joiner {r.joiner_max_abs:.1e} "
            f"top-1 {r.joiner_top1:.3f} over {r.joiner_pairs} pairs"
        )

    def card_fidelity(self, report: ParityReport) -> list[str]:
        lines = [
            "| audio | backend | chunks | encoder max abs | states max abs | joiner max abs "
            "(top-1) | detections |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in report.files:
            r = _kws(f)
            same = "equal" if r.detections_equal else f"differ, {r.detections_added} added"
            lines.append(
                f"| {Path(r.audio).name} | {r.backend} | {r.chunks} | {r.encoder_max_abs:.1e} | "
                f"{r.state_max_abs:.1e} | {r.joiner_max_abs:.1e} ({r.joiner_top1:.3f}) | "
                f"{same} ({len(r.detections_reference)}) |"
            )
        return lines

    def card_sections(self, bundle: Path) -> list[str]:
        """The recall / false-alarm table of the bundle's last ``speechport eval kws``."""
        from speechport.evaluation.kws import card_lines

        return card_lines(bundle)

    def draw_plots(self, report: ParityReport, out: Path) -> list[Path]:
        return []

    # --- quantize ------------------------------------------------------------------------

    def score_variant(self, variant: VariantResult, report: ParityReport) -> None:
        results = [_kws(f) for f in report.files]
        variant.files = len(results)
        variant.token_exact_files = sum(r.detections_equal for r in results)
        total = sum(len(r.detections_reference) for r in results)
        kept = sum(r.detections_kept * len(r.detections_reference) for r in results)
        variant.token_agreement = kept / total if total else 1.0

    def ranking_columns(self) -> str:
        return f" {'kept':>6} {'equal':>7}"

    def ranking_cells(self, variant: VariantResult) -> str:
        v = variant
        kept = "-" if v.token_agreement is None else f"{v.token_agreement:.3f}"
        return f" {kept:>6} {v.token_exact_files:>3}/{v.files:<3}"

    def variant_text(self, variant: VariantResult) -> str:
        v = variant
        if v.token_agreement is None:
            return ""
        return f", detections kept {v.token_agreement:.3f}"


def _kws(result: FileResult) -> KwsFileResult:
    assert isinstance(result, KwsFileResult), type(result).__name__
    return result


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max(initial=0.0))


def _features(model: KeywordSpotterModel, audio: np.ndarray) -> np.ndarray:
    fbank = OnlineKaldiFbank(model.frontend)
    tail = np.zeros(round(model.spec.tail_padding_seconds * model.sample_rate), np.float32)
    parts = [fbank.accept(np.asarray(audio, dtype=np.float32)), fbank.accept(tail), fbank.finish()]
    return np.concatenate(parts)


def _chunks(model: KeywordSpotterModel, fbank: np.ndarray) -> list[np.ndarray]:
    spec = model.spec
    out = []
    start = 0
    while start + spec.chunk_frames < len(fbank):
        out.append(fbank[start : start + spec.chunk_frames])
        start += spec.chunk_shift
    return out


def _transcript_keywords(model: KeywordSpotterModel, frames: list[np.ndarray]) -> list[Keyword]:
    """Keywords from the reference's own transcript of the file (a beam-4 transducer search,
    one symbol per frame, as icefall's modified_beam_search): each pair of consecutive
    tokens, first seen first."""
    spec = model.spec
    start = (-1,) * (spec.context_size - 1) + (spec.blank_id,)
    beam: dict[tuple[int, ...], float] = {start: 0.0}
    for frame in (f for chunk in frames for f in chunk):
        hyps = list(beam.items())
        contexts = np.asarray([ys[-spec.context_size :] for ys, _ in hyps], dtype=np.int64)
        dec = model.decoder(contexts)
        logits = model.joiner(np.repeat(frame[None], len(hyps), axis=0), dec).astype(np.float64)
        logp = logits - logits.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        total = logp + np.array([score for _, score in hyps])[:, None]
        best = np.argsort(-total.reshape(-1), kind="stable")[:VERIFY_BEAM]
        new: dict[tuple[int, ...], float] = {}
        for index in best.tolist():
            ys, _ = hyps[index // total.shape[1]]
            token = index % total.shape[1]
            if token not in (spec.blank_id, spec.unk_id):
                ys = (*ys, token)
            score = float(total.reshape(-1)[index])
            new[ys] = float(np.logaddexp(new[ys], score)) if ys in new else score
        beam = new
    tokens = list(max(beam.items(), key=lambda item: item[1])[0][spec.context_size :])
    seen: dict[tuple[int, int], None] = {}
    for a, b in itertools.pairwise(tokens):
        seen.setdefault((a, b), None)
    pairs = list(seen)[:VERIFY_KEYWORDS]
    if not pairs:  # nothing heard: any keyword will do (the search still runs)
        pairs = [(spec.blank_id + 1, spec.blank_id + 1)]
    return [Keyword(p, "_".join(model.pieces[t] for t in p).replace("\u2581", "")) for p in pairs]


def _detect(
    model: KeywordSpotterModel,
    fbank: np.ndarray,
    keywords: list[Keyword],
    decoder: Any,
    joiner: Any,
) -> list[str]:
    d = model.spec.defaults
    graph = ContextGraph(
        keywords, default_boost=float(d["boost"]), default_threshold=float(d["threshold"])
    )
    settings = SearchSettings(
        semantics="sherpa",
        beam=int(d["beam"]),
        num_trailing_blanks=int(d["trailing_blanks"]),
        blank_id=model.spec.blank_id,
        unk_id=model.spec.unk_id,
        context_size=model.spec.context_size,
    )
    stream = KeywordStream(
        KeywordSearch(graph, decoder, joiner, settings),
        _ChunkEncoder(model.encoder),
        chunk_frames=model.spec.chunk_frames,
        chunk_shift=model.spec.chunk_shift,
    )
    hits = stream.accept(fbank) + stream.finish()
    return [f"{h.keyword}@{h.start_frame}-{h.end_frame}" for h in hits]


def _kept(reference: list[str], got: list[str]) -> tuple[float, int]:
    """The share of the reference's detections found, and how many were found besides."""
    remaining = list(got)
    kept = 0
    for hit in reference:
        if hit in remaining:
            remaining.remove(hit)
            kept += 1
    return (kept / len(reference) if reference else 1.0), len(remaining)
