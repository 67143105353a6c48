"""Speech synthesis (``tts``): a bundle opens as a ``Speaker`` (``.speak(text)`` -> 24 kHz
audio). ``verify`` feeds texts (default: ``VERIFY_PHONEMES``, phoneme strings, so it needs
no G2P) and compares, chunk by chunk, the text stage (durations, frames per token exactly,
token features), the acoustic stage (audio, F0, energy, spectral convergence, log-mel
distance) and the same chunk through the smallest and the largest frame bucket; quantize
ranks variants by ``1 - spectral convergence``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from speechport.parity.report import FileResult, ParityReport, TtsFileResult
from speechport.pipelines.speaker import Speaker, chunk_seed
from speechport.pipelines.synthesis import (
    ChunkAudio,
    TextStageResult,
    run_acoustic_stage,
    run_text_stage,
)
from speechport.tasks.base import GateLimits, Task, VerifyInput
from speechport.tasks.tts_spec import TtsSpec

if TYPE_CHECKING:
    from speechport.compression.results import VariantResult
    from speechport.manifest import Manifest
    from speechport.parity.run import VerifyRun
    from speechport.runtime.base import LoadedBundle

# Kokoro phonemes (espeak-ng 1.51, en-us) of four sentences, short to long. Kokoro-82M speaks
# 12-15 phonemes a second, so each fits the 5 s frame bucket and is run through the 15 s one
# too (a model whose chunk needs more frames is compared in the bucket that fits).
VERIFY_PHONEMES = (
    "həlˈO, wˈɜɹld!",
    "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ.",
    "ʃi pˈAd fˈIv dˈɑləɹz fˈɪfti sˈɛnts fɔɹ kˈɔfi — twˈIs!",
    "ɪts nˈIs.",
)
PHONEMES_PREFIX = "phonemes:"  # a verify text given as phonemes
VERIFY_SEED = 0


class TtsTask(Task):
    name = "tts"
    title = "speech synthesis"
    sections = ("tts",)
    file_result = TtsFileResult
    example_template = "tts_example.py"
    usage = 'speechport speak . "Hello there." --voice af_heart --out speech.wav'
    example_args = '"Hello there." --out speech.wav'
    example_input = "text through espeak-ng, or Kokoro phonemes with --phonemes"
    verify_usage = '`speechport verify .` (built-in sentences; `--text "..."` for others)'
    quality_label = "1 - spectral convergence"
    verifies_by_default = True

    def check_manifest(self, manifest: Manifest) -> None:
        super().check_manifest(manifest)
        TtsSpec.from_manifest(manifest)

    def open(self, bundle: LoadedBundle, **options: Any) -> Speaker:
        """A ``Speaker``: ``.speak(text, voice=, speed=, seed=, phonemes=)``, ``.voices``."""
        if options:
            raise TypeError(f"unknown speech-synthesis option(s): {', '.join(options)}")
        return Speaker(bundle, TtsSpec.from_manifest(bundle.manifest, bundle.path))

    # --- verify --------------------------------------------------------------------------

    def verify_inputs(
        self, audio: list[Path], texts: list[str], sample_rate: int
    ) -> Iterator[VerifyInput]:
        """The texts to speak (``phonemes:...`` for a phoneme string), or the built-in
        phoneme strings; audio files are refused."""
        from speechport.errors import SpeechportError

        if audio:
            raise SpeechportError(
                "speech synthesis is verified on texts, not audio",
                hint='pass --text "A sentence." (or none: built-in sentences)',
            )
        return iter(
            VerifyInput(text, text, 0.0)
            for text in texts or [PHONEMES_PREFIX + p for p in VERIFY_PHONEMES]
        )

    def gates(self, limits: GateLimits) -> dict[str, float]:
        """Frames per token exactly the reference's; F0 and energy within ``max_f0_diff``
        of the reference's peak; the audio's spectral convergence (against the reference,
        and between the smallest and the largest frame bucket) at most
        ``max_spectral_convergence``. The waveform is reported, not gated: the harmonic
        source integrates F0 into a phase, so a rounding-sized F0 difference becomes a
        slowly growing phase offset (and, where a source bin sits on the ±π cut of its
        STFT phase, a local step), which leaves the spectrum as it is."""
        return {
            "durations_equal": 1.0,
            "max_f0_diff": limits.max_f0_diff,
            "max_spectral_convergence": limits.max_spectral_convergence,
        }

    def verify_file(self, run: VerifyRun, audio: Any, path: str) -> None:
        """``audio`` is the text: every backend's stages against the reference's on each
        chunk the reference speaks it in, with the same voice row, speed and noise."""
        ref = Speaker(run.reference, TtsSpec.from_manifest(run.reference.manifest))
        text = str(audio)
        if text.startswith(PHONEMES_PREFIX):
            phonemes = " ".join(text[len(PHONEMES_PREFIX) :].split())
        else:
            phonemes = ref.phonemes(text)
        chunks: list[tuple[list[int], np.ndarray, TextStageResult, ChunkAudio]] = []
        planned = ref.plan(ref.pieces(phonemes), ref.voice_pack(), 1.0)
        for index, p in enumerate(planned):
            a = run_acoustic_stage(ref.stages, p.text, p.style, seed=_seed(index))
            chunks.append((p.ids, p.style, p.text, a))
        run.audio_seconds += sum(a.audio.size for *_, a in chunks) / ref.sample_rate
        for name, candidate in run.candidates.items():
            got = Speaker(candidate, TtsSpec.from_manifest(candidate.manifest))
            start = time.perf_counter()
            result = _compare(run, name, ref, got, chunks, path, phonemes)
            run.run_seconds[name] = run.run_seconds.get(name, 0.0) + (time.perf_counter() - start)
            run.report.files.append(result)

    def file_line(self, result: FileResult) -> str:
        r = _tts(result)
        buckets = (
            f"buckets {r.frame_buckets} SC {r.bucket_spectral_convergence:.1e}"
            if len(r.frame_buckets) > 1
            else f"only bucket {r.frame_buckets} fits"
        )
        return (
            f"durations {'exact' if r.durations_equal else 'DIFFER'} ({r.frames} frames, "
            f"{r.chunks} chunk(s)); F0 max|d| {r.f0_max_abs:.1e}, energy {r.energy_max_abs:.1e}; "
            f"audio SC {r.spectral_convergence:.1e}, mel {r.mel_distance_db:.2f} dB, |d|/peak "
            f"max {r.audio_rel:.1e} p99 {r.audio_p99_rel:.1e}; {buckets}"
        )

    def card_fidelity(self, report: ParityReport) -> list[str]:
        lines = [
            "| text | backend | frames | durations | F0 max abs | energy max abs | "
            "spectral conv. | mel dB | audio max abs (p99 / peak) | first frame | "
            "5 s vs 15 s bucket (SC, max abs) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for f in report.files:
            r = _tts(f)
            label = r.audio if len(r.audio) <= 40 else r.audio[:37] + "..."
            lines.append(
                f"| {label} | {r.backend} | {r.frames} | "
                f"{'exact' if r.durations_equal else 'differ'} | {r.f0_max_abs:.1e} | "
                f"{r.energy_max_abs:.1e} | {r.spectral_convergence:.1e} | "
                f"{r.mel_distance_db:.3f} | {r.audio_max_abs:.1e} ({r.audio_p99_rel:.1e}) | "
                f"{r.first_frame_max_abs:.1e} | {r.bucket_spectral_convergence:.1e}, "
                f"{r.bucket_max_abs:.1e} |"
            )
        lines += [
            "",
            "Gated: durations exact; F0 and energy against the reference's peak; spectral "
            "convergence of the audio and between the buckets. The waveform is reported: "
            "the harmonic source integrates F0 into a phase, so a rounding-sized F0 "
            "difference shifts the phase slowly (and where a source bin sits on the ±π cut "
            "of its STFT phase, steps it locally) without changing the spectrum. Audio "
            "figures skip each chunk's first frame (600 samples), reported on its own: "
            "upstream's iSTFT can flip that frame's phase between +π and −π.",
        ]
        return lines

    def draw_plots(self, report: ParityReport, out: Path) -> list[Path]:
        from speechport.parity import plots

        results = [_tts(f) for f in report.files[: plots.MAX_FILES_PLOTTED]]
        frame = 600 / 24000
        wave = {
            f"{r.backend} · {r.audio[:24]}": (
                [i * frame for i in range(len(r.wave_diff_per_frame))],
                [max(x, 1e-9) for x in r.wave_diff_per_frame],
            )
            for r in results
        }
        mel = {
            f"{r.backend} · {r.audio[:24]}": (
                [i * 256 / 24000 for i in range(len(r.mel_diff_per_frame))],
                [max(x, 1e-6) for x in r.mel_diff_per_frame],
            )
            for r in results
        }
        durations = {}
        for r in results:
            durations[f"reference · {r.audio[:24]}"] = (
                list(range(len(r.frames_reference))),
                r.frames_reference,
            )
            durations[f"{r.backend} · {r.audio[:24]}"] = (
                list(range(len(r.frames_got))),
                r.frames_got,
            )
        return [
            plots.line_plot(
                wave,
                out / "tts_waveform_diff.png",
                title="max |Δ audio| per frame against the torch reference (first chunk)",
                ylabel="max |Δ| (floor 1e-9)",
                log=True,
            ),
            plots.line_plot(
                mel,
                out / "tts_mel_diff.png",
                title="|Δ log-mel| per STFT frame (mean over bands, first chunk)",
                ylabel="dB (floor 1e-6)",
                log=True,
            ),
            plots.line_plot(
                durations,
                out / "tts_durations.png",
                title="frames per token, reference and backends (x: token index)",
                ylabel="frames",
            ),
        ]

    # --- quantize ------------------------------------------------------------------------

    def score_variant(self, variant: VariantResult, report: ParityReport) -> None:
        results = [_tts(f) for f in report.files]
        variant.files = len(results)
        variant.token_exact_files = sum(r.durations_equal for r in results)
        variant.spectral_convergence = max(r.spectral_convergence for r in results)
        variant.mel_distance_db = max(r.mel_distance_db for r in results)

    def ranking_columns(self) -> str:
        return f" {'SC':>8} {'mel dB':>7} {'dur':>7}"

    def ranking_cells(self, variant: VariantResult) -> str:
        v = variant
        sc = "-" if v.spectral_convergence is None else f"{v.spectral_convergence:.2e}"
        mel = "-" if v.mel_distance_db is None else f"{v.mel_distance_db:.2f}"
        return f" {sc:>8} {mel:>7} {v.token_exact_files:>3}/{v.files:<3}"

    def variant_text(self, variant: VariantResult) -> str:
        v = variant
        if v.spectral_convergence is None:
            return ""
        return (
            f", spectral convergence {v.spectral_convergence:.2e}, mel {v.mel_distance_db:.2f} dB"
        )


def _tts(result: FileResult) -> TtsFileResult:
    assert isinstance(result, TtsFileResult), type(result).__name__
    return result


def _seed(index: int) -> int | tuple[int, int]:
    """The noise seed of chunk ``index`` (as ``Speaker`` draws it)."""
    return chunk_seed(VERIFY_SEED, index)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a64 - b64).max(initial=0.0))


def _compare(
    run: VerifyRun,
    backend: str,
    ref: Speaker,
    got: Speaker,
    chunks: list[tuple[list[int], np.ndarray, TextStageResult, ChunkAudio]],
    label: str,
    phonemes: str,
) -> TtsFileResult:
    from speechport.parity.speech_metrics import mel_distance, spectral_convergence

    spf = ref.spec.samples_per_frame
    rate = ref.sample_rate
    figures: dict[str, float] = dict.fromkeys(
        (
            "durations",
            "prosody",
            "text_features",
            "audio",
            "first",
            "f0",
            "energy",
            "bucket",
            "rel",
            "f0_peak",
            "energy_peak",
            "bucket_sc",
        ),
        0.0,
    )
    exact = True
    ref_audio: list[np.ndarray] = []
    got_audio: list[np.ndarray] = []
    buckets: set[int] = set()
    first: dict[str, list[Any]] = {}
    rests: list[np.ndarray] = []  # |Δaudio| / peak after each chunk's first frame
    for index, (ids, style, t_ref, a_ref) in enumerate(chunks):
        t_got = run_text_stage(got.stages, ids, style, 1.0)
        length = len(ids) + 2
        same = bool(np.array_equal(t_got.frames, t_ref.frames))
        exact = exact and same
        figures["durations"] = max(figures["durations"], _max_abs(t_got.durations, t_ref.durations))
        figures["prosody"] = max(
            figures["prosody"],
            _max_abs(t_got.prosody[:, :length], t_ref.prosody[:, :length]),
        )
        figures["text_features"] = max(
            figures["text_features"],
            _max_abs(t_got.text_features[:, :, :length], t_ref.text_features[:, :, :length]),
        )
        # with exact durations the candidate runs end to end; otherwise its acoustic stage
        # gets the reference's text-stage result, so that its own error is still measured
        source = t_got if same else t_ref
        a_got = run_acoustic_stage(got.stages, source, style, seed=_seed(index))
        buckets.add(a_got.frame_bucket)
        largest = max(got.stages.acoustic)
        if a_got.frame_bucket != largest:
            a_big = run_acoustic_stage(
                got.stages, source, style, seed=_seed(index), frame_bucket=largest
            )
            buckets.add(largest)
            figures["bucket"] = max(figures["bucket"], _max_abs(a_big.audio, a_got.audio))
            figures["bucket_sc"] = max(
                figures["bucket_sc"], spectral_convergence(a_got.audio, a_big.audio, rate)
            )
        diff = np.abs(a_got.audio.astype(np.float64) - a_ref.audio)
        figures["first"] = max(figures["first"], float(diff[:spf].max(initial=0.0)))
        rest = float(diff[spf:].max(initial=0.0))
        peak = float(np.abs(a_ref.audio[spf:]).max(initial=0.0))
        figures["audio"] = max(figures["audio"], rest)
        rests.append(diff[spf:] / peak if peak > 0 else diff[spf:])
        figures["rel"] = max(figures["rel"], rest / peak if peak > 0 else rest)
        figures["f0"] = max(figures["f0"], _max_abs(a_got.f0, a_ref.f0))
        figures["energy"] = max(figures["energy"], _max_abs(a_got.energy, a_ref.energy))
        figures["f0_peak"] = max(figures["f0_peak"], float(np.abs(a_ref.f0).max(initial=0.0)))
        figures["energy_peak"] = max(
            figures["energy_peak"], float(np.abs(a_ref.energy).max(initial=0.0))
        )
        ref_audio.append(a_ref.audio)
        got_audio.append(a_got.audio)
        if index == 0:
            frames = diff.size // spf
            first = {
                "frames_reference": t_ref.frames.tolist(),
                "frames_got": t_got.frames.tolist(),
                "wave": diff[: frames * spf].reshape(frames, spf).max(axis=1).tolist(),
                "mel": mel_distance(a_ref.audio, a_got.audio, rate)[1].tolist(),
            }
    reference_all = np.concatenate(ref_audio)
    got_all = np.concatenate(got_audio)
    mel_db = mel_distance(reference_all, got_all, rate)[0]
    sc = spectral_convergence(reference_all, got_all, rate)
    failures = []
    if not exact:
        failures.append("durations differ from the reference's")
    limit_f0 = run.limits.max_f0_diff
    for name in ("f0", "energy"):
        relative = figures[name] / max(figures[f"{name}_peak"], 1e-12)
        if relative > limit_f0:
            failures.append(f"{name} |d|/peak {relative:.2e} > {limit_f0:g}")
    limit_sc = run.limits.max_spectral_convergence
    if sc > limit_sc:
        failures.append(f"audio spectral convergence {sc:.2e} > {limit_sc:g}")
    if figures["bucket_sc"] > limit_sc:
        failures.append(
            f"frame buckets differ: spectral convergence {figures['bucket_sc']:.2e} > {limit_sc:g}"
        )
    rest_all = np.concatenate(rests) if rests else np.zeros(1)
    return TtsFileResult(
        audio=label,
        backend=backend,
        failures=failures,
        phonemes=phonemes,
        chunks=len(chunks),
        frames=int(sum(t.total_frames for _, _, t, _ in chunks)),
        frame_buckets=sorted(buckets),
        durations_equal=exact,
        durations_max_abs=figures["durations"],
        prosody_max_abs=figures["prosody"],
        text_features_max_abs=figures["text_features"],
        audio_max_abs=figures["audio"],
        audio_rel=figures["rel"],
        audio_p99_rel=float(np.quantile(rest_all, 0.99)),
        first_frame_max_abs=figures["first"],
        f0_max_abs=figures["f0"],
        energy_max_abs=figures["energy"],
        mel_distance_db=mel_db,
        spectral_convergence=sc,
        bucket_max_abs=figures["bucket"],
        bucket_spectral_convergence=figures["bucket_sc"],
        seconds=reference_all.size / rate,
        frames_reference=first.get("frames_reference", []),
        frames_got=first.get("frames_got", []),
        wave_diff_per_frame=first.get("wave", []),
        mel_diff_per_frame=first.get("mel", []),
    )
