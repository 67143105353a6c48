"""``speechport eval kws``: recall and false alarms of a keyword-spotting bundle on a
labelled set, with a sweep of the detection threshold.

The set is a JSON-lines manifest, one utterance per line::

    {"audio": "pos/01.flac", "keywords": ["LIGHTS ON", "STOP"]}
    {"audio": "neg/01.flac", "keywords": []}

``audio`` is relative to the manifest's folder; ``keywords`` lists the keywords spoken in
it (as often as spoken; empty, null or absent: a negative utterance). The keyword list
searched for is ``--keywords`` (any form ``speechport spot`` takes) or, without it, every
keyword of the manifest in order of first appearance; a keyword the manifest names must be
in it. Each utterance runs through its own session of the bundle's spotter (as
``speechport spot`` runs a file), once at the chosen threshold (the details are kept) and
once per threshold of the sweep; a threshold is the default for keywords that set none.
Scoring: ``speechport.evaluation.kws_scores``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechport.decoding.context_graph import KeywordError
from speechport.evaluation.kws_scores import KwsScores, UtteranceOutcome, score
from speechport.fsutil import atomic_write_text

if TYPE_CHECKING:
    from speechport.pipelines.kws import Detection, KeywordsInput, KeywordSpotterModel
    from speechport.progress import Progress

RESULTS_FILE = "kws_eval.json"
PLOT_FILE = "kws_recall_false_alarms.png"
BUNDLE_FOLDER = "eval"  # where results go inside the bundle (the model card reads them)
DEFAULT_SWEEP = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)


@dataclass(frozen=True)
class LabelledUtterance:
    audio: Path
    keywords: tuple[str, ...]
    line: int


def read_manifest(path: Path) -> list[LabelledUtterance]:
    """The utterances of a JSON-lines manifest (see the module's docstring); a bad line is
    an error naming the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeywordError(f"cannot read the evaluation manifest ({exc})", path=path) from exc
    hint = 'each line must be {"audio": "file.wav", "keywords": ["KEYWORD", ...]}'
    items: list[LabelledUtterance] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KeywordError(
                f"line {number}: not JSON ({exc.msg})", path=path, hint=hint
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("audio"), str):
            raise KeywordError(f"line {number}: no audio path", path=path, hint=hint)
        spoken = data.get("keywords") or []
        if not isinstance(spoken, list) or not all(isinstance(k, str) for k in spoken):
            raise KeywordError(
                f"line {number}: keywords must be a list of phrases", path=path, hint=hint
            )
        audio = path.parent / data["audio"]
        if not audio.is_file():
            raise KeywordError(
                f"line {number}: audio file not found: {audio}",
                path=path,
                hint="audio paths are relative to the manifest's folder",
            )
        items.append(LabelledUtterance(audio, tuple(" ".join(k.split()) for k in spoken), number))
    if not items:
        raise KeywordError("the evaluation manifest has no utterances", path=path)
    return items


@dataclass
class KwsEvaluation:
    """One evaluation: where and how it ran, the scores at the chosen threshold, each
    utterance's detections and the sweep (threshold -> recall, false alarms)."""

    manifest: str
    engine: str
    settings: dict[str, Any]
    scores: KwsScores
    utterances: list[dict[str, Any]]
    sweep: list[dict[str, Any]]
    plot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "engine": self.engine,
            "settings": self.settings,
            "scores": self.scores.to_dict(),
            "sweep": self.sweep,
            "plot": self.plot,
            "utterances": self.utterances,
        }


def _sweep_point(threshold: float, scores: KwsScores) -> dict[str, Any]:
    return {
        "threshold": threshold,
        "recall": scores.recall,
        "found": scores.found,
        "false_alarms": scores.false_alarms,
        "false_alarms_per_utterance": scores.false_alarms_per_utterance,
        "false_alarms_per_hour": scores.false_alarms_per_hour,
    }


def evaluate_kws(
    model: KeywordSpotterModel,
    manifest: Path,
    keywords: KeywordsInput | None = None,
    *,
    threshold: float | None = None,
    sweep: Sequence[float] = DEFAULT_SWEEP,
    progress: Progress | None = None,
    **options: Any,
) -> KwsEvaluation:
    """Run ``model`` on every utterance of ``manifest`` at ``threshold`` (default: the
    bundle's) and at each threshold of ``sweep``; ``options`` are ``spotter``'s (boost,
    trailing_blanks, beam, search)."""
    from speechport.audio import load_audio

    items = read_manifest(manifest)
    if keywords is None:
        keywords = list(dict.fromkeys(k for item in items for k in item.keywords))
        if not keywords:
            raise KeywordError(
                "the manifest names no keyword and no keyword list was given",
                path=manifest,
                hint="pass --keywords",
            )
    listed = model.keywords(keywords)
    phrases = list(dict.fromkeys(k.phrase for k in listed))
    for item in items:
        missing = [k for k in item.keywords if k not in phrases]
        if missing:
            raise KeywordError(
                f"line {item.line}: {', '.join(map(repr, missing))} is not in the keyword list",
                path=manifest,
                hint="add it to --keywords (or leave --keywords out to search for every "
                "keyword the manifest names)",
            )
    chosen = float(threshold if threshold is not None else model.spec.defaults["threshold"])
    audio = [load_audio(item.audio, sample_rate=model.sample_rate).samples for item in items]
    runs = list(dict.fromkeys([chosen, *(float(t) for t in sweep)]))
    results: dict[float, list[list[Detection]]] = {}
    settings: dict[str, Any] = {}
    for t in runs:
        if progress is not None:
            progress.start(f"threshold {t:g}: {len(items)} utterances")
        per_file: list[list[Detection]] = []
        for samples in audio:
            session = model.spotter(listed, threshold=t, **options)
            per_file.append(session.feed(samples) + session.finish())
            settings = {
                "search": session.settings.semantics,
                "beam": session.settings.beam,
                "trailing_blanks": session.settings.num_trailing_blanks,
                "boost": session.graph.default_boost,
            }
        results[t] = per_file
    if progress is not None:
        progress.finish()
    seconds = [a.size / model.sample_rate for a in audio]

    def outcomes(per_file: list[list[Detection]]) -> list[UtteranceOutcome]:
        return [
            UtteranceOutcome(
                audio=_relative(item.audio, manifest),
                spoken=item.keywords,
                detected=tuple(d.keyword for d in found),
                seconds=s,
            )
            for item, found, s in zip(items, per_file, seconds, strict=True)
        ]

    scores = score(outcomes(results[chosen]), phrases)
    points = [_sweep_point(t, score(outcomes(results[t]), phrases)) for t in sorted(set(sweep))]
    utterances = [
        {
            "audio": o.audio,
            "seconds": round(o.seconds, 6),
            "spoken": list(o.spoken),
            "detections": [
                {"keyword": d.keyword, "start": d.start, "end": d.end, "score": round(d.score, 6)}
                for d in found
            ],
            "false_alarms": sorted(o.false_alarms().elements()),
            "missed": sorted(o.missed().elements()),
        }
        for o, found in zip(outcomes(results[chosen]), results[chosen], strict=True)
    ]
    return KwsEvaluation(
        manifest=str(manifest),
        engine=model.bundle.engine,
        settings={**settings, "threshold": chosen, "keywords": phrases},
        scores=scores,
        utterances=utterances,
        sweep=points,
    )


def _relative(path: Path, manifest: Path) -> str:
    try:
        return path.relative_to(manifest.parent).as_posix()
    except ValueError:
        return str(path)


def write_evaluation(evaluation: KwsEvaluation, out: Path) -> Path:
    """``out/kws_eval.json`` and, with matplotlib and two sweep points or more, the plot of
    recall against false alarms per hour (``out/kws_recall_false_alarms.png``)."""
    from speechport.parity import plots

    out.mkdir(parents=True, exist_ok=True)
    evaluation.plot = None
    if plots.available() and len(evaluation.sweep) >= 2:
        plot_sweep(evaluation.sweep, out / PLOT_FILE, title=f"{evaluation.engine}")
        evaluation.plot = PLOT_FILE
    target = out / RESULTS_FILE
    atomic_write_text(target, json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return target


def plot_sweep(points: Sequence[dict[str, Any]], path: Path, *, title: str) -> Path:
    """Recall against false alarms per hour, one point per threshold, labelled with it."""
    from speechport.parity import plots

    fig, ax = plots.figure(6.4, 4.2)
    xs = [float(p["false_alarms_per_hour"]) for p in points]
    ys = [float(p["recall"] or 0.0) for p in points]
    ax.plot(xs, ys, marker="o", linewidth=1.0)
    labels: dict[tuple[float, float], list[str]] = {}
    for x, y, p in zip(xs, ys, points, strict=True):  # thresholds that give the same point
        labels.setdefault((x, y), []).append(f"{p['threshold']:g}")
    for (x, y), names in labels.items():
        ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)  # fmt: skip
    ax.set_xlabel("false alarms per hour")
    ax.set_ylabel("recall")
    ax.set_xlim(left=0.0, right=max(xs, default=0.0) * 1.15 + 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"recall against false alarms, threshold swept\n{title}", fontsize=9)
    ax.grid(alpha=0.3)
    return plots.save(fig, path)


def card_lines(bundle: Path) -> list[str]:
    """The model card's section on the bundle's last ``speechport eval kws`` run (none
    before one)."""
    path = bundle / BUNDLE_FOLDER / RESULTS_FILE
    if not path.is_file():
        return []
    title = ["## Recall and false alarms", ""]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        scores = KwsScores.from_dict(data["scores"])
        settings = data["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [*title, f"The stored results could not be read ({exc}): run `speechport eval "
                "kws` again.", ""]  # fmt: skip
    from speechport.evaluation.kws_scores import markdown_lines

    lines = [
        *title,
        f"`speechport eval kws` on `{Path(str(data['manifest'])).name}` ({data['engine']}; "
        f"search {settings['search']}, threshold {settings['threshold']:g}, boost "
        f"{settings['boost']:g}, beam {settings['beam']}, {settings['trailing_blanks']} "
        "trailing blank(s)). N: times the keyword is spoken; found: of those, detected in "
        "the same utterance; false alarms: detections of a keyword the utterance does not "
        "hold (or more often than it holds it).",
        "",
        *markdown_lines(scores),
    ]
    sweep = data.get("sweep") or []
    if sweep:
        lines += [
            "",
            "Threshold sweep: "
            + ", ".join(
                f"{p['threshold']:g} → recall {p['recall']:.2f}, "
                f"{p['false_alarms_per_hour']:.1f} FA/h"
                for p in sweep
                if p["recall"] is not None
            )
            + ".",
        ]
    if data.get("plot"):
        lines += ["", f"![recall against false alarms]({BUNDLE_FOLDER}/{data['plot']})"]
    return [*lines, ""]
