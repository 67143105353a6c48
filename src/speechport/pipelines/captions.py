"""Transcripts as subtitles (SRT, WebVTT): words grouped into short cues."""

from __future__ import annotations

from dataclasses import dataclass

from speechport.pipelines.transcriber import Transcript

MAX_CUE_SECONDS = 7.0
MAX_CUE_CHARS = 84
PAUSE_SECONDS = 0.6


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def cues(transcript: Transcript) -> list[Cue]:
    """Cues of at most ``MAX_CUE_SECONDS`` and ``MAX_CUE_CHARS``, broken at pauses longer
    than ``PAUSE_SECONDS``; segments without word times become one cue each."""
    out: list[Cue] = []
    for segment in transcript.segments:
        if not segment.text:
            continue
        if not segment.words:
            out.append(Cue(segment.start, segment.end, segment.text))
            continue
        group = [segment.words[0]]
        for word in segment.words[1:]:
            text = " ".join(w.text for w in [*group, word])
            if (
                word.start - group[-1].end > PAUSE_SECONDS
                or word.end - group[0].start > MAX_CUE_SECONDS
                or len(text) > MAX_CUE_CHARS
            ):
                out.append(Cue(group[0].start, group[-1].end, " ".join(w.text for w in group)))
                group = [word]
            else:
                group.append(word)
        out.append(Cue(group[0].start, group[-1].end, " ".join(w.text for w in group)))
    return out


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def cues_to_srt(items: list[Cue]) -> str:
    blocks = [
        f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{c.text}\n"
        for i, c in enumerate(items, start=1)
    ]
    return "\n".join(blocks)


def cues_to_vtt(items: list[Cue]) -> str:
    blocks = [f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{c.text}\n" for c in items]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_srt(transcript: Transcript) -> str:
    return cues_to_srt(cues(transcript))


def to_vtt(transcript: Transcript) -> str:
    return cues_to_vtt(cues(transcript))
