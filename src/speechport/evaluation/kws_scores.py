"""Recall and false alarms of a keyword spotter, from what each utterance holds and what
was detected in it. Plain Python, no model.

Counting is per utterance, without times (a manifest says which keywords an utterance
holds, not when): of a keyword spoken ``n`` times and detected ``d`` times in one
utterance, ``min(n, d)`` occurrences are found, ``n - min(n, d)`` missed and
``d - min(n, d)`` detections are false alarms. A detection of a keyword the utterance does
not hold is a false alarm, in positive and negative utterances alike. Recall is found /
spoken, per keyword and in total; false alarms are given per utterance and per hour of
audio, over the whole set and over the negative utterances alone (the figure published KWS
model cards give).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class UtteranceOutcome:
    """One utterance: the keywords spoken in it (repeated as often as spoken), the
    keywords detected (one entry per detection) and its length in seconds."""

    audio: str
    spoken: tuple[str, ...]
    detected: tuple[str, ...]
    seconds: float

    @property
    def negative(self) -> bool:
        return not self.spoken

    def found(self) -> Counter[str]:
        return Counter(self.spoken) & Counter(self.detected)

    def missed(self) -> Counter[str]:
        return Counter(self.spoken) - Counter(self.detected)

    def false_alarms(self) -> Counter[str]:
        return Counter(self.detected) - Counter(self.spoken)


@dataclass(frozen=True)
class KeywordRow:
    keyword: str
    spoken: int
    found: int
    false_alarms: int

    @property
    def recall(self) -> float | None:
        return self.found / self.spoken if self.spoken else None


@dataclass(frozen=True)
class KwsScores:
    """Per-keyword rows (in the keyword list's order) and the totals."""

    rows: list[KeywordRow]
    utterances: int
    negative_utterances: int
    seconds: float
    negative_seconds: float
    false_alarms: int
    negative_false_alarms: int

    @property
    def spoken(self) -> int:
        return sum(r.spoken for r in self.rows)

    @property
    def found(self) -> int:
        return sum(r.found for r in self.rows)

    @property
    def recall(self) -> float | None:
        return self.found / self.spoken if self.spoken else None

    @property
    def false_alarms_per_utterance(self) -> float:
        return self.false_alarms / self.utterances if self.utterances else 0.0

    @property
    def false_alarms_per_hour(self) -> float:
        return _per_hour(self.false_alarms, self.seconds)

    @property
    def negative_false_alarms_per_utterance(self) -> float | None:
        if not self.negative_utterances:
            return None
        return self.negative_false_alarms / self.negative_utterances

    @property
    def negative_false_alarms_per_hour(self) -> float | None:
        if not self.negative_utterances:
            return None
        return _per_hour(self.negative_false_alarms, self.negative_seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "keywords": [
                {
                    "keyword": r.keyword,
                    "spoken": r.spoken,
                    "found": r.found,
                    "recall": r.recall,
                    "false_alarms": r.false_alarms,
                }
                for r in self.rows
            ],
            "spoken": self.spoken,
            "found": self.found,
            "recall": self.recall,
            "utterances": self.utterances,
            "seconds": round(self.seconds, 6),
            "false_alarms": self.false_alarms,
            "false_alarms_per_utterance": self.false_alarms_per_utterance,
            "false_alarms_per_hour": self.false_alarms_per_hour,
            "negative_utterances": self.negative_utterances,
            "negative_seconds": round(self.negative_seconds, 6),
            "negative_false_alarms": self.negative_false_alarms,
            "negative_false_alarms_per_utterance": self.negative_false_alarms_per_utterance,
            "negative_false_alarms_per_hour": self.negative_false_alarms_per_hour,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KwsScores:
        rows = [
            KeywordRow(str(r["keyword"]), int(r["spoken"]), int(r["found"]), int(r["false_alarms"]))
            for r in data["keywords"]
        ]
        return cls(
            rows=rows,
            utterances=int(data["utterances"]),
            negative_utterances=int(data["negative_utterances"]),
            seconds=float(data["seconds"]),
            negative_seconds=float(data["negative_seconds"]),
            false_alarms=int(data["false_alarms"]),
            negative_false_alarms=int(data["negative_false_alarms"]),
        )


def _per_hour(count: int, seconds: float) -> float:
    return count * SECONDS_PER_HOUR / seconds if seconds > 0 else 0.0


def score(outcomes: Sequence[UtteranceOutcome], keywords: Sequence[str]) -> KwsScores:
    """Recall and false alarms of ``outcomes`` (see the module's docstring); one row per
    keyword of ``keywords``, in order. A keyword spoken or detected but not listed is an
    error (the caller checks the manifest against the list)."""
    listed = set(keywords)
    spoken: Counter[str] = Counter()
    found: Counter[str] = Counter()
    alarms: Counter[str] = Counter()
    negative_alarms = 0
    for u in outcomes:
        unknown = (set(u.spoken) | set(u.detected)) - listed
        if unknown:
            raise ValueError(f"{u.audio}: keywords not in the list: {sorted(unknown)}")
        spoken.update(u.spoken)
        found.update(u.found())
        extra = u.false_alarms()
        alarms.update(extra)
        if u.negative:
            negative_alarms += sum(extra.values())
    rows = [KeywordRow(k, spoken[k], found[k], alarms[k]) for k in keywords]
    negatives = [u for u in outcomes if u.negative]
    return KwsScores(
        rows=rows,
        utterances=len(outcomes),
        negative_utterances=len(negatives),
        seconds=sum(u.seconds for u in outcomes),
        negative_seconds=sum(u.seconds for u in negatives),
        false_alarms=sum(alarms.values()),
        negative_false_alarms=negative_alarms,
    )


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_lines(scores: KwsScores) -> list[str]:
    """The published KWS model cards' table (keyword, N, recall) with found and false
    alarms, then the false-alarm figures."""
    width = max([len("keyword"), len("TOTAL"), *(len(r.keyword) for r in scores.rows)])
    lines = [f"{'keyword':<{width}} {'N':>4} {'found':>5} {'recall':>6} {'FA':>4}"]
    for r in scores.rows:
        lines.append(
            f"{r.keyword:<{width}} {r.spoken:>4} {r.found:>5} {_number(r.recall):>6} "
            f"{r.false_alarms:>4}"
        )
    lines.append(
        f"{'TOTAL':<{width}} {scores.spoken:>4} {scores.found:>5} {_number(scores.recall):>6} "
        f"{scores.false_alarms:>4}"
    )
    lines.append(false_alarm_line(scores))
    return lines


def false_alarm_line(scores: KwsScores) -> str:
    s = scores
    text = (
        f"false alarms: {s.false_alarms} in {s.utterances} utterances, "
        f"{s.seconds / 60:.1f} min ({s.false_alarms_per_utterance:.3f} / utterance, "
        f"{s.false_alarms_per_hour:.1f} / hour)"
    )
    if s.negative_utterances:
        text += (
            f"; on the {s.negative_utterances} negative utterances: {s.negative_false_alarms} "
            f"({_number(s.negative_false_alarms_per_utterance, 3)} / utterance, "
            f"{_number(s.negative_false_alarms_per_hour, 1)} / hour)"
        )
    return text


def markdown_lines(scores: KwsScores) -> list[str]:
    """The table of ``table_lines`` in Markdown, for the model card."""
    lines = ["| keyword | N | found | recall | false alarms |", "|---|---|---|---|---|"]
    for r in scores.rows:
        lines.append(
            f"| {r.keyword} | {r.spoken} | {r.found} | {_number(r.recall)} | {r.false_alarms} |"
        )
    lines.append(
        f"| **TOTAL** | {scores.spoken} | {scores.found} | {_number(scores.recall)} | "
        f"{scores.false_alarms} |"
    )
    return [*lines, "", false_alarm_line(scores)[:1].upper() + false_alarm_line(scores)[1:] + "."]
