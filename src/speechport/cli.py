"""The ``speechport`` command: convert, transcribe, info, export, vad, spot, verify, eval, bench.

Errors a user can cause print one clear line (file, component, what to do) and exit with
status 2; a bundle that fails its parity gate exits with status 1; stdout carries only
results, progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechport.errors import GateError, SpeechportError
from speechport.families import FAMILIES
from speechport.tasks import GateLimits
from speechport.version import __version__

if TYPE_CHECKING:
    from speechport.parity.report import ParityReport

OUTPUTS = ("text", "json", "srt", "vtt")


def _number(
    low: float | None = None,
    high: float | None = None,
    *,
    above: bool = False,
    integer: bool = False,
    infinite: bool = False,
) -> Callable[[str], Any]:
    """An argparse ``type=``: a finite number (``infinite``: +inf too) at least ``low``
    (``above``: more than it) and at most ``high``, with a message saying the range."""
    kind = "an integer" if integer else "a number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if above else '>='} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    wanted = f"{kind} {' and '.join(bounds)}".strip()

    def parse(text: str) -> float | int:
        try:
            value: float | int = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if math.isnan(value) or (math.isinf(value) and not (infinite and value > 0)):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        if low is not None and (value <= low if above else value < low):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted  # argparse names the type in its messages
    return parse


_PROBABILITY = _number(0.0, 1.0)
_MILLISECONDS = _number(0.0)
_SECONDS = _number(0.0, above=True)
_RUNS = _number(1, integer=True)
_TOLERANCE = _number(0.0)
_THREADS = _number(1, integer=True)
_THREADS_HELP = "ONNX Runtime threads for encoders and front ends (default: every CPU)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechport",
        description="Take speech models onto devices: convert, prove and run Core ML / ONNX "
        "bundles.",
    )
    parser.add_argument("--version", action="version", version=f"speechport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = sub.add_parser("convert", help="convert an upstream checkpoint into a bundle")
    convert.add_argument("family", choices=FAMILIES, help="model family")
    convert.add_argument(
        "--checkpoint",
        type=Path,
        help="upstream checkpoint (silero-vad: default is the installed package's weights)",
    )
    convert.add_argument("--tokenizer", type=Path, help="SentencePiece model (e2e variants)")
    convert.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    convert.add_argument(
        "--format", default="coreml,onnx", help="comma-separated: coreml, onnx (default: both)"
    )
    convert.add_argument(
        "--precision",
        choices=["fp16", "fp32"],
        default="fp16",
        help="Core ML compute precision (ONNX is fp32)",
    )
    convert.add_argument(
        "--window", type=_SECONDS, help="ASR encoder window in seconds (default 30)"
    )
    convert.add_argument(
        "--encoder-buckets",
        type=_seconds_list,
        metavar="SECONDS",
        help="ASR: the audio lengths the Core ML encoder runs at, comma-separated, the "
        "largest the window; a clip is padded to the shortest that holds it (default "
        "5,10,15 and the window; the window alone: one fixed shape)",
    )
    convert.add_argument(
        "--lookaheads",
        type=_lookaheads,
        help="streaming models: the attention lookaheads to export, comma-separated, the "
        "first the default (default: the model's first)",
    )
    convert.add_argument(
        "--config", type=Path, help="kokoro: the model's config.json (default: beside --checkpoint)"
    )
    convert.add_argument(
        "--voices", type=Path, help="kokoro: directory of voice packs (voices/*.pt)"
    )
    convert.add_argument(
        "--token-buckets",
        type=_positive_list,
        help="kokoro: text-stage token buckets, comma-separated (default 128,512)",
    )
    convert.add_argument(
        "--frame-buckets",
        type=_positive_list,
        help="kokoro: acoustic-stage frame buckets (600 samples each), comma-separated "
        "(default 200,600: 5 s and 15 s)",
    )
    convert.add_argument("--force", action="store_true", help="replace --out if it exists")
    convert.add_argument(
        "--verify",
        type=Path,
        nargs="*",
        metavar="AUDIO",
        help="verify the new bundle on these audio files or directories before keeping it "
        "(speech synthesis: on its built-in sentences, no AUDIO); a bundle that fails the "
        "gate is not written",
    )
    _add_gate_options(convert)
    convert.add_argument("--quiet", action="store_true", help="no progress on stderr")

    transcribe = sub.add_parser("transcribe", help="transcribe audio files with a bundle")
    transcribe.add_argument("bundle", type=Path)
    transcribe.add_argument(
        "audio", type=Path, nargs="+", help="audio files, or directories of them"
    )
    transcribe.add_argument("--backend", choices=["onnx", "coreml", "torch"], default="onnx")
    transcribe.add_argument(
        "--threads",
        type=_THREADS,
        help=f"{_THREADS_HELP}; with --jobs, per job (default: the cores shared out)",
    )
    transcribe.add_argument(
        "--jobs",
        type=_number(1, integer=True),
        default=1,
        help="transcribe this many files at once, in worker threads that each load the "
        "bundle (default 1); results are printed in input order",
    )
    transcribe.add_argument(
        "--quiet", action="store_true", help="no progress or throughput on stderr"
    )
    transcribe.add_argument(
        "--steps",
        choices=["auto", "numpy", "onnx"],
        help="ONNX backend: the decoder step and joint in numpy where their graph is "
        "recognised and a step timed at load is faster (auto, the default), wherever "
        "recognised (numpy), or always in ONNX Runtime (onnx)",
    )
    _add_ort_options(transcribe)
    transcribe.add_argument(
        "--checkpoint",
        type=Path,
        help="source checkpoint for --backend torch (default: provenance)",
    )
    transcribe.add_argument(
        "--timestamps", action="store_true", help="word (and token, in json) timestamps"
    )
    transcribe.add_argument("--output", choices=OUTPUTS, default="text")
    transcribe.add_argument(
        "--save-dir", type=Path, help="write <audio name>.<ext> files here instead of stdout"
    )
    transcribe.add_argument(
        "--vad",
        type=Path,
        metavar="VAD_BUNDLE",
        help="segment with this voice-activity bundle first (windows built from its speech "
        "segments; silence between them is skipped)",
    )
    transcribe.add_argument(
        "--overlap",
        type=_number(0.0),
        metavar="SECONDS",
        help="long audio in windows overlapping by SECONDS, merged at the seams so that no "
        "word is lost or repeated; 0 cuts at pauses (default: the bundle's, else 0)",
    )
    transcribe.add_argument(
        "--window",
        type=_SECONDS,
        metavar="SECONDS",
        help="cut long audio into windows of SECONDS, at most the encoder's (default: it)",
    )

    vad = sub.add_parser("vad", help="speech segments of audio files with a VAD bundle")
    vad.add_argument("bundle", type=Path)
    vad.add_argument("audio", type=Path, nargs="+")
    vad.add_argument("--backend", choices=["onnx", "coreml", "torch"], default="onnx")
    vad.add_argument("--threads", type=_THREADS, help=_THREADS_HELP)
    _add_ort_options(vad)
    vad.add_argument("--checkpoint", type=Path, help="source weights for --backend torch")
    vad.add_argument("--output", choices=OUTPUTS, default="text")
    vad.add_argument(
        "--threshold", type=_PROBABILITY, help="speech probability to enter speech, in [0, 1]"
    )
    vad.add_argument(
        "--neg-threshold",
        type=_PROBABILITY,
        help="probability to leave speech, in [0, 1], at most --threshold",
    )
    vad.add_argument("--min-speech-ms", type=_MILLISECONDS)
    vad.add_argument("--min-silence-ms", type=_MILLISECONDS)
    vad.add_argument("--speech-pad-ms", type=_MILLISECONDS)
    vad.add_argument(
        "--max-speech-s", type=_number(0.0, above=True, infinite=True), help="> 0; inf: no limit"
    )
    vad.add_argument("--probs", action="store_true", help="include per-chunk probabilities (json)")
    vad.add_argument(
        "--stream", action="store_true", help="feed the audio as a stream; print start/end events"
    )

    spot = sub.add_parser("spot", help="keywords heard in audio, with a keyword-spotting bundle")
    spot.add_argument("bundle", type=Path)
    spot.add_argument("audio", nargs="+", help="audio files; - reads 16 kHz 16-bit PCM from stdin")
    spot.add_argument(
        "--keywords",
        required=True,
        help="a keyword file (sherpa-onnx syntax, or one phrase per line) or phrases "
        'separated by commas: "HEY COMPUTER,LIGHTS ON"',
    )
    spot.add_argument("--boost", type=float, help="boost per keyword token (default: bundle's)")
    spot.add_argument("--threshold", type=float, help="mean token probability to trigger")
    spot.add_argument("--trailing-blanks", type=int, help="blank frames needed after a keyword")
    spot.add_argument("--beam", type=int, help="active paths of the search")
    spot.add_argument("--search", choices=["sherpa", "icefall"], help="search semantics")
    spot.add_argument("--backend", choices=["onnx", "coreml", "torch"], default="onnx")
    spot.add_argument("--threads", type=_THREADS, help=_THREADS_HELP)
    _add_ort_options(spot)
    spot.add_argument("--checkpoint", type=Path, help="source weights for --backend torch")
    spot.add_argument("--output", choices=["text", "json"], default="text")

    speak = sub.add_parser("speak", help="speak text with a text-to-speech bundle into a WAV file")
    speak.add_argument("bundle", type=Path)
    speak.add_argument("text", help="what to say (phonemes with --phonemes); - reads stdin")
    speak.add_argument("--out", type=Path, required=True, help="the WAV file to write")
    speak.add_argument("--voice", help="a voice of the bundle (default: the bundle's)")
    speak.add_argument("--speed", type=float, default=1.0, help="speaking rate, 0.5-2 (default 1)")
    speak.add_argument("--seed", type=int, default=0, help="seed of the voice's noise (default 0)")
    speak.add_argument(
        "--phonemes", action="store_true", help="TEXT is Kokoro phonemes: no G2P (espeak-ng)"
    )
    speak.add_argument("--backend", choices=["onnx", "coreml", "torch"], default="onnx")
    speak.add_argument("--threads", type=_THREADS, help=_THREADS_HELP)
    _add_ort_options(speak)
    speak.add_argument("--checkpoint", type=Path, help="source weights for --backend torch")
    evaluate = sub.add_parser("eval", help="task quality of a bundle on a labelled set")
    eval_sub = evaluate.add_subparsers(dest="evaluation", required=True, metavar="TASK")
    eval_kws = eval_sub.add_parser(
        "kws",
        help="keyword spotting: per-keyword recall, false alarms per utterance and per hour, "
        "and recall against false alarms over a threshold sweep",
    )
    eval_kws.add_argument("bundle", type=Path)
    eval_kws.add_argument(
        "--set",
        dest="manifest",
        type=Path,
        required=True,
        metavar="MANIFEST",
        help='JSON lines: {"audio": "a.wav", "keywords": ["LIGHTS ON"]} (keywords spoken in '
        "it; [] for none), audio paths relative to the manifest",
    )
    eval_kws.add_argument(
        "--keywords",
        help="keywords to search for, as spot takes them (default: every keyword the "
        "manifest names)",
    )
    eval_kws.add_argument(
        "--threshold", type=_PROBABILITY, help="default trigger threshold (default: bundle's)"
    )
    eval_kws.add_argument(
        "--sweep",
        type=_thresholds,
        default=None,
        metavar="T1,T2,...",
        help="thresholds to sweep for the recall / false-alarm curve (default "
        "0.05,0.1,0.15,0.2,0.25,0.3,0.4,0.5,0.6; none: no sweep)",
    )
    eval_kws.add_argument("--boost", type=float, help="boost per keyword token (default: bundle's)")
    eval_kws.add_argument("--trailing-blanks", type=int, help="blank frames needed after a keyword")
    eval_kws.add_argument("--beam", type=int, help="active paths of the search")
    eval_kws.add_argument("--search", choices=["sherpa", "icefall"], help="search semantics")
    eval_kws.add_argument("--backend", choices=["onnx", "coreml", "torch"], default="onnx")
    eval_kws.add_argument("--threads", type=_THREADS, help=_THREADS_HELP)
    _add_ort_options(eval_kws)
    eval_kws.add_argument("--checkpoint", type=Path, help="source weights for --backend torch")
    eval_kws.add_argument(
        "--out",
        type=Path,
        help="write kws_eval.json and the plot here (default: the bundle's eval/ folder, and "
        "the model card shows the table)",
    )
    eval_kws.add_argument("--json", action="store_true", help="print the results as JSON")
    eval_kws.add_argument("--quiet", action="store_true", help="no progress on stderr")

    verify = sub.add_parser("verify", help="parity of a bundle against its torch reference")
    verify.add_argument("bundle", type=Path)
    verify.add_argument("--audio", type=Path, nargs="+", help="audio files or directories")
    verify.add_argument(
        "--text",
        nargs="+",
        default=[],
        help="texts to speak (speech synthesis; 'phonemes:...' for phonemes; default: built-in)",
    )
    _add_gate_options(verify)
    _add_verify_keywords(verify)
    verify.add_argument("--reference", type=Path, help="source checkpoint (default: provenance)")
    verify.add_argument(
        "--latency-runs", type=_RUNS, default=20, help="warm calls timed per component (default 20)"
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")

    quantize = sub.add_parser(
        "quantize",
        help="sweep weight compression of the Core ML components, scored against the fp32 "
        "reference on audio; emit the chosen variant as a bundle",
        epilog=_strategies_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    quantize.add_argument("bundle", type=Path)
    quantize.add_argument("--out", type=Path, required=True, help="directory for the sweep")
    quantize.add_argument("--reference", type=Path, help="source checkpoint (default: provenance)")
    quantize.add_argument(
        "--strategies",
        help="comma-separated strategies, presets or recipes like "
        "encoder=pal6-kmeans+joint=int8-channel (default: all, see below)",
    )
    quantize.add_argument(
        "--components",
        help="compress only these components (roles or names, comma-separated; default: all "
        "but the front ends)",
    )
    quantize.add_argument("--audio", type=Path, nargs="+", help="audio files or directories")
    quantize.add_argument(
        "--text",
        nargs="+",
        default=[],
        help="texts to score speech synthesis on (default: built-in)",
    )
    quantize.add_argument("--emit", metavar="NAME", help="write this variant as OUT/NAME")
    quantize.add_argument(
        "--weight-threshold",
        type=_number(0, integer=True),
        default=2048,
        help="leave tensors with fewer elements uncompressed (default 2048, as coremltools)",
    )
    quantize.add_argument(
        "--max-cer", type=_TOLERANCE, default=0.0, help="ASR gate: largest CER allowed (default 0)"
    )
    quantize.add_argument(
        "--max-prob-diff",
        type=_TOLERANCE,
        default=1e-3,
        help="VAD gate: largest |dp| (default 1e-3)",
    )
    _add_tts_gate_options(quantize)
    _add_kws_gate_options(quantize)
    _add_verify_keywords(quantize)
    quantize.add_argument(
        "--latency-runs",
        type=_RUNS,
        default=5,
        help="warm calls timed per component, at least (the scoring's own count; default 5)",
    )
    quantize.add_argument(
        "--jobs",
        type=_number(1, integer=True),
        help="worker processes that build and score variants side by side (default: the "
        "usable cores; latency figures then share them)",
    )
    quantize.add_argument("--force", action="store_true", help="replace OUT/NAME if it exists")
    quantize.add_argument("--quiet", action="store_true", help="no progress on stderr")
    quantize.add_argument("--json", action="store_true", help="print the summary as JSON")

    stream = sub.add_parser(
        "stream", help="transcribe audio as it arrives with a streaming bundle (partials)"
    )
    stream.add_argument("bundle", type=Path)
    stream.add_argument("audio", help="an audio file, or - for 16-bit PCM on stdin")
    stream.add_argument("--backend", choices=["onnx", "coreml", "torch"], default="onnx")
    stream.add_argument("--threads", type=_THREADS, help=_THREADS_HELP)
    _add_ort_options(stream)
    stream.add_argument("--checkpoint", type=Path, help="source checkpoint for --backend torch")
    stream.add_argument("--lookahead", type=int, help="one of the bundle's (default: its first)")
    stream.add_argument("--language", help="the prompt of a multilingual model (en-US, auto...)")
    stream.add_argument(
        "--packet-ms", type=float, default=20.0, help="audio per feed in ms (default 20)"
    )
    stream.add_argument("--realtime", action="store_true", help="feed at the audio's pace")
    stream.add_argument("--output", choices=["text", "jsonl"], default="text")
    stream.add_argument(
        "--stats", action="store_true", help="per-chunk latency and RTFx on stderr at the end"
    )

    info = sub.add_parser("info", help="describe a bundle")
    info.add_argument("bundle", type=Path)
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")

    export = sub.add_parser("export", help="a bundle's files in another runtime's layout")
    export_sub = export.add_subparsers(dest="layout", required=True, metavar="LAYOUT")
    sherpa = export_sub.add_parser(
        "sherpa-onnx",
        help="encoder/decoder/joiner.onnx (or model.onnx for CTC) and tokens.txt that "
        "sherpa-onnx's NeMo loaders read unchanged (GigaAM bundles)",
    )
    sherpa.add_argument("bundle", type=Path)
    sherpa.add_argument("--out", type=Path, required=True, help="directory to write")
    sherpa.add_argument("--force", action="store_true", help="replace --out if it exists")

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    decode = bench_sub.add_parser(
        "decode-loop",
        help="full-size GigaAM v3 (random weights): decode-loop steps/s and time outside "
        "the encoder, ONNX backend",
    )
    decode.add_argument("--variant", default="v3_e2e_rnnt")
    decode.add_argument("--seconds", type=float, default=60.0, help="clip length")
    decode.add_argument("--work-dir", type=Path, help="where to keep the bundle (default: temp)")
    decode.add_argument("--json", action="store_true")
    from speechport.bench.random_models import EMISSIONS, RANDOM_MODELS, SIZES

    compare = bench_sub.add_parser(
        "compare",
        help="speechport against onnx-asr and sherpa-onnx on the same ONNX files: RTFx, "
        "ratios, speechport's front end / encoder / decode loop split, transcript agreement; "
        "without a bundle, on full-size random-weight models built on the fly",
    )
    compare.add_argument(
        "paths",
        type=Path,
        nargs="*",
        metavar="[BUNDLE] [AUDIO]",
        help="a bundle, then audio files or directories (needed with a bundle); without a "
        "bundle: the audio for the random models (default: synthetic speech, --seconds)",
    )
    compare.add_argument(
        "--model",
        action="append",
        choices=list(RANDOM_MODELS),
        help="without a bundle: a random model to build (repeatable; default: all): "
        + "; ".join(f"{m.name}, {m.description}" for m in RANDOM_MODELS.values()),
    )
    compare.add_argument(
        "--emission",
        choices=[*EMISSIONS, "both"],
        default="both",
        help="random models: blank biased as in a real model (realistic), random weights "
        "where nearly every step emits (worst), or both",
    )
    compare.add_argument(
        "--seconds",
        default="4,60,600",
        help="random models: lengths of synthetic speech, comma-separated (default: 4,60,600)",
    )
    compare.add_argument("--size", choices=SIZES, default="full", help="random models' size")
    compare.add_argument("--work-dir", type=Path, help="keep (and reuse) the random bundles here")
    compare.add_argument("--threads", type=_THREADS, help="for every engine (default: every CPU)")
    compare.add_argument("--runs", type=_RUNS, default=3, help="timed rounds (median)")
    compare.add_argument("--onnx-asr-model", help="onnx-asr's model type (default: guessed)")
    compare.add_argument("--json", action="store_true")
    parakeet = bench_sub.add_parser(
        "convert-parakeet",
        help="full-size Parakeet-TDT-0.6B-v3 (random weights): Core ML and ONNX conversion "
        "time and peak memory per component",
    )
    parakeet.add_argument("--format", default="coreml,onnx", help="comma-separated formats")
    parakeet.add_argument("--precision", choices=["fp16", "fp32"], default="fp16")
    parakeet.add_argument("--work-dir", type=Path, help="keep the converted files here")
    parakeet.add_argument("--json", action="store_true")
    coreml = bench_sub.add_parser(
        "coreml-encoder",
        help="full-size GigaAM v3 encoder (random weights, 30 s window) converted to Core ML "
        "and run by the MIL interpreter: conversion time, time per window, RTFx, peak memory",
    )
    coreml.add_argument("--variant", default="v3_rnnt")
    coreml.add_argument("--precision", choices=["fp16", "fp32", "both"], default="both")
    coreml.add_argument("--runs", type=int, default=2, help="windows to time (best is kept)")
    coreml.add_argument("--work-dir", type=Path, help="where to keep the packages (default: temp)")
    coreml.add_argument("--json", action="store_true")
    bench_q = bench_sub.add_parser(
        "quantize",
        help="full-size GigaAM v3 (random weights) in Core ML fp16, every quantize strategy: "
        "sizes and ratios against fp16, conversion time, one call of each component",
    )
    bench_q.add_argument("--variant", default="v3_rnnt")
    bench_q.add_argument("--strategies", help="as quantize --strategies (default: all)")
    bench_q.add_argument("--window", type=float, default=30.0, help="encoder window, seconds")
    bench_q.add_argument("--work-dir", type=Path, help="keep the bundle and sweep here")
    bench_q.add_argument("--json", action="store_true")
    bench_t = bench_sub.add_parser(
        "tts",
        help="full-size Kokoro-82M (random weights): conversion time and memory, package "
        "sizes, per-bucket latency and RTFx under ONNX Runtime",
    )
    bench_t.add_argument("--format", default="onnx", help="comma-separated formats")
    bench_t.add_argument("--runs", type=_RUNS, default=3, help="timed calls per stage (median)")
    bench_t.add_argument("--threads", type=_THREADS, help="ONNX Runtime threads")
    bench_t.add_argument("--work-dir", type=Path, help="keep the converted files here")
    bench_t.add_argument("--json", action="store_true")
    bench_s = bench_sub.add_parser(
        "streaming",
        help="full-size cache-aware streaming models (random weights): conversion time and "
        "memory, package sizes, encoder latency per chunk under ONNX Runtime and the Core ML "
        "interpreter, RTFx",
    )
    bench_s.add_argument(
        "--architecture", choices=["eou-120m", "nemotron-0.6b"], default="eou-120m"
    )
    bench_s.add_argument("--format", default="onnx,coreml", help="comma-separated formats")
    bench_s.add_argument("--chunks", type=int, default=20, help="chunks timed under ONNX Runtime")
    bench_s.add_argument(
        "--interpreter-chunks", type=int, default=3, help="chunks timed under the interpreter"
    )
    bench_s.add_argument("--work-dir", type=Path, help="keep the bundle here")
    bench_s.add_argument("--json", action="store_true")
    bench_k = bench_sub.add_parser(
        "kws",
        help="full-size keyword spotter (3.49M-parameter Zipformer2, random weights): "
        "conversion time and memory, package sizes, encoder latency per 320 ms chunk under "
        "ONNX Runtime and the Core ML interpreter, RTFx",
    )
    bench_k.add_argument("--format", default="onnx,coreml", help="comma-separated formats")
    bench_k.add_argument("--chunks", type=_RUNS, default=20, help="chunks timed under ONNX Runtime")
    bench_k.add_argument(
        "--interpreter-chunks", type=_RUNS, default=3, help="chunks timed under the interpreter"
    )
    bench_k.add_argument("--work-dir", type=Path, help="keep the bundle here")
    bench_k.add_argument("--json", action="store_true")
    return parser


def _add_ort_options(parser: argparse.ArgumentParser) -> None:
    """ONNX Runtime's session options, beside ``--threads``."""
    from speechport.runtime.onnx_backend import GRAPH_OPTIMIZATIONS

    parser.add_argument(
        "--ort-graph-opt",
        choices=list(GRAPH_OPTIMIZATIONS),
        help="ONNX backend: how far ONNX Runtime optimises each graph at load (default: all)",
    )
    parser.add_argument(
        "--ort-arena",
        action=argparse.BooleanOptionalAction,
        help="ONNX backend: serve tensors from ONNX Runtime's CPU memory arena (default: on; "
        "off holds less memory between runs of varying shapes)",
    )


def _ort_options(args: argparse.Namespace) -> dict[str, Any]:
    """``speechport.load``'s ONNX Runtime settings from ``_add_ort_options``' flags."""
    return {"graph_optimization": args.ort_graph_opt, "memory_arena": args.ort_arena}


def _add_gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backends", default="onnx", help="backends to verify, comma-separated (default onnx)"
    )
    parser.add_argument(
        "--max-cer", type=_TOLERANCE, default=0.0, help="ASR gate: largest CER allowed (default 0)"
    )
    parser.add_argument(
        "--max-prob-diff",
        type=_TOLERANCE,
        default=1e-3,
        help="VAD gate: largest |dp| (default 1e-3)",
    )
    _add_tts_gate_options(parser)
    _add_kws_gate_options(parser)


def _add_kws_gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-agreement",
        type=_PROBABILITY,
        default=1.0,
        help="keyword-spotting gate: share of utterances whose detections must equal the "
        "reference's (default 1: all)",
    )


def _add_verify_keywords(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keywords",
        help="keyword spotting: what to search for, as spot takes them (a file or "
        '"HEY COMPUTER,LIGHTS ON"; default: pairs of tokens the reference hears in each file)',
    )


def _add_tts_gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-spectral-convergence",
        type=_TOLERANCE,
        default=0.05,
        help="speech-synthesis gate: largest spectral convergence of the audio (default 0.05)",
    )
    parser.add_argument(
        "--max-f0-diff",
        type=_TOLERANCE,
        default=1e-3,
        help="speech-synthesis gate: largest |d F0|, |d energy| / the reference's peak "
        "(default 1e-3)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    from speechport import interrupts

    args = build_parser().parse_args(argv)
    interrupts.install()
    commands = {
        "convert": _convert,
        "transcribe": _transcribe,
        "info": _info,
        "export": _export,
        "vad": _vad,
        "stream": _stream,
        "spot": _spot,
        "speak": _speak,
        "verify": _verify,
        "eval": _eval,
        "quantize": _quantize,
        "bench": _bench,
    }
    try:
        status = commands[args.command](args)
        interrupts.check()  # a signal whose exception a library swallowed
        return status
    except GateError as exc:
        print(f"speechport: {exc}", file=sys.stderr)
        return 1
    except SpeechportError as exc:
        print(f"speechport: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("speechport: interrupted", file=sys.stderr)
        return 130
    except interrupts.Terminated as exc:
        print("speechport: terminated", file=sys.stderr)
        return interrupts.exit_status(exc.signum)
    except BrokenPipeError:  # e.g. `speechport info BUNDLE | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # a full disk, a read-only place: say where and why
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"speechport: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except RecursionError:
        print("speechport: error: an input nests too deeply to read", file=sys.stderr)
        return 2


def _convert(args: argparse.Namespace) -> int:
    from speechport.conversion import convert

    gate = None
    if args.verify is not None:
        from speechport.audio import collect_audio
        from speechport.parity.run import Gate

        gate = Gate(
            collect_audio(list(args.verify)) if args.verify else [],
            _backends(args.backends),
            limits=GateLimits.of(args),
        )
    manifest = convert(
        args.family,
        args.checkpoint,
        args.out,
        tokenizer=args.tokenizer or args.config,
        formats=args.format,
        precision=args.precision,
        window_seconds=args.window,
        overwrite=args.force,
        quiet=args.quiet,
        gate=gate,
        on_report=_print_report,
        plan_options={
            "lookaheads": args.lookaheads,
            "encoder_buckets": args.encoder_buckets,
            "voices": None if args.voices is None else str(args.voices),
            "token_buckets": args.token_buckets,
            "frame_buckets": args.frame_buckets,
        },
    )
    files = sorted({f.path for c in manifest.components.values() for f in c.files.values()})
    print(f"wrote {args.out} ({manifest.family} {manifest.variant}: {', '.join(files)})")
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    from speechport.api import load
    from speechport.audio import collect_audio
    from speechport.pipelines.batch import LoadRecipe, transcribe_many
    from speechport.pipelines.captions import to_srt, to_vtt
    from speechport.pipelines.transcriber import Transcript
    from speechport.progress import Progress

    files = collect_audio(list(args.audio))
    jobs = min(args.jobs, len(files))
    options: dict[str, Any] = {
        "vad": args.vad,
        "overlap": args.overlap,
        "window_seconds": args.window,
    }
    if _streaming(args.bundle):  # one session over the whole file: no windows to choose
        given = [f"--{k.split('_')[0]}" for k, v in options.items() if v is not None]
        if given:
            raise SpeechportError(
                f"a streaming bundle is fed chunk by chunk: it takes no {', '.join(given)}",
                path=args.bundle,
            )
        options = {}
    engine = {"threads": args.threads, "steps": args.steps, **_ort_options(args)}
    recipe = LoadRecipe(
        load,
        args.bundle,
        args.backend,
        args.checkpoint if args.backend == "torch" else None,
        {k: v for k, v in engine.items() if v is not None},
        {k: v for k, v in options.items() if v is not None},
    )
    tasks = ("asr", "streaming-asr")
    model = None
    if jobs == 1:  # here, now: a bad bundle is reported before any file is read
        detector = None if args.vad is None else _open_vad(args.vad, args.threads)
        here = {k: (detector if k == "vad" else v) for k, v in options.items()}
        model = _open(
            args.bundle,
            args.backend,
            args.checkpoint,
            tasks,
            args.threads,
            steps=args.steps,
            ort=_ort_options(args),
            **here,
        )
    else:  # each job opens its own: check here what can be checked without loading
        _check_task(args.bundle, tasks)
        if args.vad is not None:
            _check_task(args.vad, "vad")

    def render(t: Transcript) -> str:
        if args.output == "json":
            data = t.to_dict()
            if not args.timestamps:
                for seg in data["segments"]:
                    seg.pop("words")
                    seg.pop("tokens")
            return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        if args.output == "srt":
            return to_srt(t)
        if args.output == "vtt":
            return to_vtt(t)
        if args.timestamps:
            return "".join(f"{w.start:8.3f} {w.end:8.3f}  {w.text}\n" for w in t.words)
        return t.text + "\n"

    many = len(files) > 1
    ext = {"text": "txt"}.get(args.output, args.output)
    targets = _save_targets(args.save_dir, files, ext) if args.save_dir else {}

    def emit(index: int, transcript: Transcript) -> None:
        path = files[index]
        text = render(transcript)
        if args.save_dir:
            from speechport.fsutil import atomic_write_text

            target = targets[path]
            try:
                atomic_write_text(target, text)
            except OSError as exc:
                raise SpeechportError(
                    f"cannot write the transcript ({exc.strerror or exc})",
                    path=target,
                    hint="free some space or choose another --save-dir",
                ) from exc
            print(f"{path} -> {target}", file=sys.stderr)
        else:
            if many:
                sys.stdout.write(f"==> {path} <==\n")
            sys.stdout.write(text)
            sys.stdout.flush()

    progress = Progress(len(files), quiet=args.quiet or not many)

    def done(index: int, transcript: Transcript) -> None:
        progress.advance(f"{files[index]} ({transcript.duration:.1f} s)")

    result = transcribe_many(recipe, files, jobs=jobs, model=model, on_done=done, on_ready=emit)
    progress.finish(result.throughput.summary())
    return 0


def _open_vad(bundle: Path, threads: int | None) -> Any:
    try:
        return _open(bundle, "onnx", None, "vad", threads)
    except SpeechportError as exc:
        raise SpeechportError(
            f"--vad bundle: {exc}",
            hint="the VAD runs with ONNX Runtime: convert it with --format onnx",
        ) from exc


def _save_targets(save_dir: Path, audio: list[Path], ext: str) -> dict[Path, Path]:
    """Where each input's transcript goes, checked before any work: the directory can be
    created and written, and no two inputs write the same file."""
    import os
    import tempfile

    if save_dir.exists() and not save_dir.is_dir():
        raise SpeechportError("--save-dir is a file, not a directory", path=save_dir)
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=save_dir):
            pass
    except OSError as exc:
        raise SpeechportError(
            f"--save-dir cannot be written ({exc.strerror or exc})",
            path=save_dir,
            hint="choose a writable directory",
        ) from exc
    if not os.access(save_dir, os.W_OK):  # pragma: no cover - the probe above fails first
        raise SpeechportError("--save-dir cannot be written", path=save_dir)
    targets: dict[Path, Path] = {}
    writers: dict[Path, Path] = {}
    for path in audio:
        target = save_dir / f"{path.stem}.{ext}"
        if target in writers and writers[target] != path:
            raise SpeechportError(
                f"{writers[target]} and {path} would both be saved as {target.name}",
                path=save_dir,
                hint="rename one of them, or transcribe them into different --save-dir",
            )
        writers[target] = path
        targets[path] = target
    return targets


def _vad(args: argparse.Namespace) -> int:
    from speechport.audio import open_audio
    from speechport.pipelines.captions import Cue, cues_to_srt, cues_to_vtt

    offline_only = (args.probs, args.min_speech_ms is not None, args.max_speech_s is not None)
    if args.stream and (args.output != "text" or any(offline_only)):
        raise SpeechportError(
            "--stream prints start/end events as they happen: it takes no --output, --probs, "
            "--min-speech-ms or --max-speech-s (those shape offline segments)"
        )
    if args.probs and args.output != "json":
        raise SpeechportError("--probs needs --output json")
    if args.threshold is not None:
        _check_thresholds(args, None)
    detector = _open(
        args.bundle, args.backend, args.checkpoint, "vad", args.threads, ort=_ort_options(args)
    )
    _check_thresholds(args, detector.defaults)
    params = detector.params(
        threshold=args.threshold,
        neg_threshold=args.neg_threshold,
        min_speech_ms=args.min_speech_ms,
        min_silence_ms=args.min_silence_ms,
        speech_pad_ms=args.speech_pad_ms,
        max_speech_s=args.max_speech_s,
    )
    sr = detector.sample_rate
    many = len(args.audio) > 1
    for path in args.audio:
        source = open_audio(path, target_rate=sr)
        if many:
            sys.stdout.write(f"==> {path} <==\n")
        if args.stream:
            stream = detector.stream(params)
            piece = sr // 10  # 100 ms at a time, as a microphone would deliver it
            for block in source.blocks():
                for start in range(0, block.size, piece):
                    for event in stream.feed(block[start : start + piece]):
                        print(f"{event.kind:<5} {event.seconds(sr):8.3f}")
            for event in stream.flush():
                print(f"{event.kind:<5} {event.seconds(sr):8.3f}")
            continue
        probs, total = detector.scan(source)
        segments = detector.segments_from(probs, total, params)
        spans = [s.seconds(sr) for s in segments]
        if args.output == "json":
            data: dict[str, object] = {
                "source": str(path),
                "duration": round(total / sr, 3),
                "engine": detector.bundle.engine,
                "params": {  # JSON has no infinity: an unlimited length is null
                    k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in params.__dict__.items()
                },
                "segments": [{"start": round(a, 3), "end": round(b, 3)} for a, b in spans],
            }
            if args.probs:
                data["chunk_seconds"] = detector.spec.chunk_samples / sr
                data["probabilities"] = [round(float(p), 4) for p in probs]
            print(json.dumps(data, indent=2, allow_nan=False))
        elif args.output in ("srt", "vtt"):
            cues = [Cue(a, b, "[speech]") for a, b in spans]
            sys.stdout.write(cues_to_srt(cues) if args.output == "srt" else cues_to_vtt(cues))
        else:
            for a, b in spans:
                print(f"{a:8.3f} {b:8.3f}")
    return 0


def _check_thresholds(args: argparse.Namespace, defaults: Any) -> None:
    """``--neg-threshold`` at most the entry threshold (given, or the bundle's default)."""
    threshold = args.threshold if args.threshold is not None else defaults.threshold
    if args.neg_threshold is not None and not args.neg_threshold <= threshold:
        raise SpeechportError(
            f"--neg-threshold {args.neg_threshold:g} must not be above the threshold {threshold:g}",
            hint="speech ends when the probability falls below --neg-threshold",
        )


def _search_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword search's settings that spot and eval kws share (None: the bundle's)."""
    return {
        "boost": args.boost,
        "trailing_blanks": args.trailing_blanks,
        "beam": args.beam,
        "search": args.search,
    }


def _spot(args: argparse.Namespace) -> int:
    import numpy as np

    from speechport.audio import load_audio

    model = _open(
        args.bundle, args.backend, args.checkpoint, "kws", args.threads, ort=_ort_options(args)
    )
    options = {**_search_options(args), "threshold": args.threshold}
    keywords = model.keywords(args.keywords)  # checked before any audio is read
    many = len(args.audio) > 1
    for source in args.audio:
        session = model.spotter(keywords, **options)
        if many and args.output == "text":
            sys.stdout.write(f"==> {source} <==\n")
        found: list[Any] = []

        def emit(detections: list[Any], found: list[Any] = found) -> None:
            found.extend(detections)
            if args.output == "text":
                for d in detections:
                    print(f"{d.start:8.2f} {d.end:8.2f}  {d.keyword}  ({d.score:.2f})", flush=True)

        if source == "-":  # raw PCM as it arrives: detections print as they happen
            rest = b""
            while block := sys.stdin.buffer.read(3200):
                block, rest = rest + block, b""
                if len(block) % 2:
                    block, rest = block[:-1], block[-1:]
                emit(session.feed(np.frombuffer(block, dtype="<i2").astype(np.float32) / 32768))
        else:
            emit(session.feed(load_audio(source, sample_rate=model.sample_rate).samples))
        emit(session.finish())
        if args.output == "json":
            data = {
                "source": source,
                "engine": model.bundle.engine,
                "search": session.settings.semantics,
                "detections": [d.to_dict() for d in found],
            }
            print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0


def _speak(args: argparse.Namespace) -> int:
    from speechport.audio import write_wav_stream
    from speechport.pipelines.speaker import SpokenChunk

    text = sys.stdin.read() if args.text == "-" else args.text
    speaker = _open(
        args.bundle, args.backend, args.checkpoint, "tts", args.threads, ort=_ort_options(args)
    )
    chunks: list[SpokenChunk] = []

    def audio() -> Iterator[np.ndarray]:
        for part in parts:
            if part.chunk is not None:
                chunks.append(part.chunk)
            yield part.samples

    # input is checked when the stream is made, before the file is opened
    parts = speaker.stream(
        text, voice=args.voice, speed=args.speed, seed=args.seed, phonemes=args.phonemes
    )
    samples = write_wav_stream(args.out, audio(), speaker.sample_rate)
    seconds = samples / speaker.sample_rate
    voice = args.voice or speaker.spec.default_voice
    print(
        f"{args.out}: {seconds:.2f} s at {speaker.sample_rate} Hz, voice {voice}, "
        f"{len(chunks)} chunk(s)"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from speechport.evaluation import kws as kws_eval
    from speechport.evaluation.kws_scores import table_lines
    from speechport.progress import Progress

    model = _open(
        args.bundle, args.backend, args.checkpoint, "kws", args.threads, ort=_ort_options(args)
    )
    options = _search_options(args)
    evaluation = kws_eval.evaluate_kws(
        model,
        args.manifest,
        args.keywords,
        threshold=args.threshold,
        sweep=kws_eval.DEFAULT_SWEEP if args.sweep is None else args.sweep,
        progress=Progress(0, quiet=args.quiet),
        **options,
    )
    out = args.out if args.out is not None else args.bundle / kws_eval.BUNDLE_FOLDER
    written = kws_eval.write_evaluation(evaluation, out)
    if args.out is None:
        from speechport.export.card import render_card
        from speechport.fsutil import atomic_write_text
        from speechport.manifest import read_manifest

        card = render_card(read_manifest(args.bundle), args.bundle)
        atomic_write_text(args.bundle / "README.md", card)
    if args.json:
        print(json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False))
        return 0
    s = evaluation.settings
    print(
        f"engine: {evaluation.engine}; search {s['search']}, threshold {s['threshold']:g}, "
        f"boost {s['boost']:g}, beam {s['beam']}, trailing blanks {s['trailing_blanks']}"
    )
    print("\n".join(table_lines(evaluation.scores)))
    for p in evaluation.sweep:
        recall = "-" if p["recall"] is None else f"{p['recall']:.3f}"
        print(
            f"threshold {p['threshold']:<5g} recall {recall}  false alarms "
            f"{p['false_alarms']} ({p['false_alarms_per_utterance']:.3f} / utterance, "
            f"{p['false_alarms_per_hour']:.1f} / hour)"
        )
    plot = f"; plot: {written.parent / evaluation.plot}" if evaluation.plot else ""
    print(f"results: {written}{plot}")
    return 0


def _thresholds(text: str) -> tuple[float, ...]:
    if text.strip().lower() == "none":
        return ()
    values = tuple(_PROBABILITY(v) for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected thresholds like 0.1,0.2 or none, got {text!r}")
    return values


def _verify(args: argparse.Namespace) -> int:
    from speechport.audio import collect_audio
    from speechport.parity.run import verify_bundle, write_report

    report = verify_bundle(
        args.bundle,
        collect_audio(list(args.audio)) if args.audio else [],
        backends=_backends(args.backends),
        checkpoint=args.reference,
        limits=GateLimits.of(args),
        keywords=args.keywords,
        latency_runs=args.latency_runs,
        texts=list(args.text),
    )
    written = write_report(report, args.bundle)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_report(report)
        print(f"report: {written}, plots in {written.parent} (and the model card)")
        print("verify: " + ("passed" if report.passed else "FAILED"))
    return 0 if report.passed else 1


def _strategies_epilog() -> str:
    from speechport.compression.strategies import CATALOGUE, PRESETS

    lines = ["strategies:"]
    lines += [f"  {name:<16} {s.description}" for name, s in CATALOGUE.items()]
    lines += [f"  {name:<16} {recipe}" for name, recipe in PRESETS.items()]
    return "\n".join(lines)


def _quantize(args: argparse.Namespace) -> int:
    from speechport.audio import collect_audio
    from speechport.compression import quantize_sweep
    from speechport.compression.results import SUMMARY_FILE
    from speechport.progress import Progress

    summary = quantize_sweep(
        args.bundle,
        args.out,
        strategies=args.strategies,
        components=_backends(args.components) if args.components else None,
        audio=collect_audio(list(args.audio)) if args.audio else None,
        reference=args.reference,
        weight_threshold=args.weight_threshold,
        limits=GateLimits.of(args),
        keywords=args.keywords,
        texts=list(args.text),
        latency_runs=args.latency_runs,
        emit=args.emit,
        overwrite=args.force,
        jobs=args.jobs,
        progress=Progress(0, quiet=args.quiet) if args.quiet else None,
    )
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(f"engine: {summary.engine}")
    from speechport.render import ranking_table

    for line in ranking_table(summary):
        print(line)
    print(f"Pareto front (size against quality): {', '.join(summary.pareto)}")
    print(f"summary: {args.out / SUMMARY_FILE}; plots: {', '.join(summary.plots) or 'none'}")
    if summary.emitted:
        print(f"emitted: {summary.emitted}")
    return 0


def _open(
    bundle: Path,
    backend: str,
    checkpoint: Path | None,
    task_names: str | tuple[str, ...],
    threads: int | None = None,
    steps: str | None = None,
    ort: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """``speechport.load`` for a command that serves the tasks ``task_names``: a bundle of
    another task is refused before anything is loaded, naming both. ``ort``: ONNX Runtime
    settings (``_ort_options``)."""
    from speechport.api import load

    _check_task(bundle, task_names)
    reference = checkpoint if backend == "torch" else None
    engine = {k: v for k, v in (ort or {}).items() if v is not None}
    return load(
        bundle, backend, checkpoint=reference, threads=threads, steps=steps, **engine, **options
    )


def _check_task(bundle: Path, task_names: str | tuple[str, ...]) -> None:
    """A bundle of another task than ``task_names`` is refused, naming both."""
    from speechport.manifest import read_manifest
    from speechport.tasks import get_task, task_for

    manifest = read_manifest(bundle)
    wanted = [get_task(n) for n in ((task_names,) if isinstance(task_names, str) else task_names)]
    if task_for(manifest, bundle) not in wanted:
        raise manifest.wrong_task(" or ".join(t.title for t in wanted), bundle)


def _streaming(bundle: Path) -> bool:
    from speechport.manifest import read_manifest

    return read_manifest(bundle).streaming is not None


def _stream(args: argparse.Namespace) -> int:
    from speechport.pipelines.streaming import StreamingRecognizer
    from speechport.render import StreamPrinter

    recognizer: StreamingRecognizer = _open(
        args.bundle,
        args.backend,
        args.checkpoint,
        "streaming-asr",
        args.threads,
        ort=_ort_options(args),
    )
    session = recognizer.stream(language=args.language, lookahead=args.lookahead)
    rate = recognizer.sample_rate
    packet = max(1, round(args.packet_ms * rate / 1000))
    printer = StreamPrinter(sys.stdout, args.output, rate)
    started = time.perf_counter()
    fed = 0
    for samples in _packets(args.audio, rate, packet):
        if args.realtime:
            ahead = fed / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
        fed += samples.size
        printer.update(session.feed(samples), fed)
    printer.update(session.finish(), fed)
    printer.close()
    if args.stats:
        from speechport.render import stream_stats

        wall = time.perf_counter() - started
        print(stream_stats(session, fed / rate, wall), file=sys.stderr)
    return 0


def _packets(source: str, rate: int, packet: int) -> Iterator[np.ndarray]:
    """Audio in packets of ``packet`` samples: from a file, or ``-`` for 16-bit PCM on
    standard input at the bundle's rate."""
    if source == "-":
        stream = sys.stdin.buffer
        while True:
            data = stream.read(2 * packet)
            if not data:
                return
            if len(data) % 2:
                data = data[:-1]
            yield np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    else:
        from speechport.audio import open_audio

        pending = np.zeros(0, dtype=np.float32)
        source_audio = open_audio(Path(source), target_rate=rate)
        for block in source_audio.blocks(keep=False):  # one pass, bounded memory
            pending = np.concatenate([pending, block])
            full = pending.size - pending.size % packet
            for start in range(0, full, packet):
                yield pending[start : start + packet]
            pending = pending[full:]
        if pending.size:
            yield pending


def _lookaheads(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"lookaheads must be >= 0, got {text!r}")
    return values


def _seconds_list(text: str) -> tuple[float, ...]:
    values = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            values.append(_SECONDS(part))
    if not values:
        raise argparse.ArgumentTypeError(f"expected seconds, comma-separated, got {text!r}")
    return tuple(values)


def _positive_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"buckets must be > 0, got {text!r}")
    return values


def _backends(text: str) -> list[str]:
    return [b.strip() for b in text.split(",") if b.strip()]


def _print_report(report: ParityReport) -> None:
    from speechport.render import report_lines

    print("\n".join(report_lines(report)))


def _export(args: argparse.Namespace) -> int:
    from speechport.export.sherpa import write_sherpa_layout

    layout = write_sherpa_layout(args.bundle, args.out, overwrite=args.force)
    files = ", ".join(sorted(p.name for p in layout.files.values()))
    print(f"wrote {layout.directory} (sherpa-onnx {layout.model_type}: {files})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from speechport.fsutil import human_size, path_size
    from speechport.manifest import read_manifest

    manifest = read_manifest(args.bundle)
    if args.json:
        print(manifest.to_json(), end="")
        return 0
    m = manifest
    print(f"{m.family} {m.variant}  task={m.task}  sample_rate={m.sample_rate}")
    if m.window is not None:
        print(
            f"window: {m.window.seconds(m.sample_rate):g} s = {m.window.samples} samples, "
            f"{m.window.feature_frames} feature frames, {m.window.encoder_frames} encoder frames"
        )
    if m.decoding is not None and m.tokenizer is not None:
        d = m.decoding
        print(
            f"decoding: {d.algorithm}, blank {d.blank_id}, {d.vocab_size} tokens "
            f"({m.tokenizer.kind}), max {d.max_symbols_per_frame} symbols/frame"
        )
    if m.vad is not None:
        print(
            f"vad: {m.vad.context_samples} context + {m.vad.chunk_samples} new samples per call, "
            f"{m.vad.sub_chunks} per long call; defaults {m.vad.defaults}"
        )
    if m.streaming is not None:
        st, hop = m.streaming, m.frontend.get("hop_length", 160) / m.sample_rate
        chunks = ", ".join(
            f"{c.lookahead} ({1000 * c.step_frames * hop:.0f} ms chunks)" for c in st.chunkings
        )
        print(f"streaming: lookaheads {chunks}, the first the default; left context "
              f"{st.left_context} encoder frames")  # fmt: skip
        if st.prompts:
            print(f"languages: {', '.join(st.prompts)}")
        if st.end_of_utterance is not None:
            print(f"end-of-utterance token: {st.end_of_utterance}")
    if m.tts is not None:
        from speechport.tasks.tts_spec import TtsSpec

        tts = TtsSpec.from_manifest(m, args.bundle)
        g2p = tts.g2p
        spf = tts.samples_per_frame
        seconds = ", ".join(f"{f * spf / m.sample_rate:g} s" for f in tts.frame_buckets)
        print(
            f"tts: token buckets {list(tts.token_buckets)}, frame buckets "
            f"{list(tts.frame_buckets)} ({seconds}), up to {tts.max_phonemes} phonemes per "
            f"chunk, {len(tts.vocab)} phonemes"
        )
        print(f"voices: {', '.join(tts.voices)} (default {tts.default_voice})")
        print(f"g2p: {g2p['engine']} {g2p['version']} ({g2p['language']})")
    for comp in m.components.values():
        print(f"{comp.name} ({comp.role}):")
        for t in comp.inputs:
            print(f"    in  {t.name:<12} {t.dtype:<8} {list(t.shape)}")
        for t in comp.outputs:
            print(f"    out {t.name:<12} {t.dtype:<8} {list(t.shape)}")
        for fmt, f in comp.files.items():
            size = human_size(path_size(args.bundle / f.path))
            weights = f", weights {f.compression}" if f.compression else ""
            buckets = "".join(
                f", {t.name} buckets {'|'.join(map(str, sizes))}"
                for t in f.inputs
                for sizes in t.buckets.values()
            )
            print(f"    {fmt:<6} {f.path} ({f.precision}{weights}, {size}{buckets})")
    prov = m.provenance
    print(f"source: {prov.get('source_checkpoint')} sha256 {prov.get('checkpoint_sha256')}")
    return 0


Figures = tuple[dict[str, Any], list[str] | None]  # a benchmark's result, and its table


def _bench_compare(args: argparse.Namespace) -> Figures:
    """``bench compare`` on the bundle given first, else on random models built for it."""
    from speechport.bench.compare import bench_compare
    from speechport.bench.compare import table as compare_table
    from speechport.bench.compare_models import bench_compare_models
    from speechport.bench.compare_models import table as models_table
    from speechport.bench.random_models import EMISSIONS, RANDOM_MODELS
    from speechport.manifest import MANIFEST_NAME

    paths = list(args.paths)
    if paths and (paths[0] / MANIFEST_NAME).is_file():
        if len(paths) < 2:
            raise SpeechportError(
                "bench compare: no audio after the bundle", hint="name audio files or directories"
            )
        result = bench_compare(
            paths[0],
            paths[1:],
            threads=args.threads,
            runs=args.runs,
            onnx_asr_model=args.onnx_asr_model,
        )
        return result, compare_table(result)
    try:
        seconds = list(_seconds_list(args.seconds))
    except argparse.ArgumentTypeError:
        seconds = []
    if not seconds:
        raise SpeechportError(
            f"bench compare: --seconds {args.seconds!r} is not a list of positive lengths",
            hint="e.g. --seconds 4,60,600",
        )
    result = bench_compare_models(
        args.model or list(RANDOM_MODELS),
        list(EMISSIONS) if args.emission == "both" else [args.emission],
        seconds=seconds,
        audio=paths or None,
        size=args.size,
        threads=args.threads,
        runs=args.runs,
        work_dir=args.work_dir,
    )
    return result, models_table(result)


def _bench_convert_parakeet(args: argparse.Namespace) -> Figures:
    from speechport.bench.convert_parakeet import bench_convert_parakeet
    from speechport.export.bundle import parse_formats

    result = bench_convert_parakeet(
        formats=tuple(parse_formats(args.format)),
        precision=args.precision,
        work_dir=args.work_dir,
    )
    return result, None


def _bench_tts(args: argparse.Namespace) -> Figures:
    from speechport.bench.tts import bench_tts, table
    from speechport.export.bundle import parse_formats

    result = bench_tts(
        formats=tuple(parse_formats(args.format)),
        runs=args.runs,
        threads=args.threads,
        work_dir=args.work_dir,
    )
    return result, table(result)


def _bench_streaming(args: argparse.Namespace) -> Figures:
    from speechport.bench.streaming import bench_streaming
    from speechport.export.bundle import parse_formats

    result = bench_streaming(
        args.architecture,
        formats=tuple(parse_formats(args.format)),
        chunks=args.chunks,
        interpreter_chunks=args.interpreter_chunks,
        work_dir=args.work_dir,
    )
    return result, None


def _bench_kws(args: argparse.Namespace) -> Figures:
    from speechport.bench.kws import bench_kws
    from speechport.export.bundle import parse_formats

    result = bench_kws(
        formats=tuple(parse_formats(args.format)),
        chunks=args.chunks,
        interpreter_chunks=args.interpreter_chunks,
        work_dir=args.work_dir,
    )
    return result, None


def _bench_coreml_encoder(args: argparse.Namespace) -> Figures:
    from speechport.bench.coreml_encoder import bench_coreml_encoder

    precisions = ("fp16", "fp32") if args.precision == "both" else (args.precision,)
    result = bench_coreml_encoder(
        args.variant, precisions=precisions, runs=args.runs, work_dir=args.work_dir
    )
    return result, None


def _bench_quantize(args: argparse.Namespace) -> Figures:
    from speechport.bench.quantize import bench_quantize, table

    result = bench_quantize(
        args.variant,
        strategies=args.strategies,
        window_seconds=args.window,
        work_dir=args.work_dir,
    )
    return result, table(result)


def _bench_decode_loop(args: argparse.Namespace) -> Figures:
    from speechport.bench.decode_loop import bench_decode_loop

    return bench_decode_loop(args.variant, seconds=args.seconds, work_dir=args.work_dir), None


# Each ``bench`` subcommand's runner: its figures, and a table to print (None: the figures
# as ``key value`` lines).
BENCHES: dict[str, Callable[[argparse.Namespace], Figures]] = {
    "compare": _bench_compare,
    "convert-parakeet": _bench_convert_parakeet,
    "coreml-encoder": _bench_coreml_encoder,
    "decode-loop": _bench_decode_loop,
    "kws": _bench_kws,
    "quantize": _bench_quantize,
    "streaming": _bench_streaming,
    "tts": _bench_tts,
}


def _bench(args: argparse.Namespace) -> int:
    result, lines = BENCHES[args.bench](args)
    if args.json:
        print(json.dumps(result, indent=2))
    elif lines is not None:
        print("\n".join(lines))
    else:
        for key, value in result.items():
            if isinstance(value, list):
                print(f"{key}:")
                for row in value:
                    print("    " + "  ".join(f"{k}={v}" for k, v in dict(row).items()))
            else:
                print(f"{key:<32} {value}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
