"""Captions from a speech result's word timings: cues, then SRT, WebVTT or JSON; and character timings.

Cue rules (the usual subtitle conventions, e.g. the BBC's and Netflix's guidelines): a cue ends at
every sentence end; a cue that would be longer than two lines of :data:`MAX_LINE` characters or
:data:`MAX_CUE_S` seconds is cut, preferably after a clause mark (comma, semicolon, colon, dash),
else between words; each cue is shown at least :data:`MIN_CUE_S` seconds where the next cue leaves
room; its text is broken into at most two lines, as balanced as the words allow.

The files are written by maintained libraries: ``srt`` (SubRip) and ``webvtt-py`` (WebVTT). Neither
(nor any other maintained package found) groups timed words into cues, hence :func:`cues` here.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from gen_server.contract.result import WordTiming
from gen_server.speech_markup import CLAUSE_END, SENTENCE_END

CaptionFormat = Literal["srt", "vtt", "json"]
MEDIA_TYPES: dict[str, str] = {"srt": "application/x-subrip", "vtt": "text/vtt", "json": "application/json"}

MAX_LINE = 42
"""Characters per caption line."""
MAX_LINES = 2
MAX_CUE_S = 7.0
MIN_CUE_S = 1.0
SENTENCE_GAP_S = 0.15
"""Silence after end punctuation that marks a sentence end (the backends pause 0.3 s between sentences)."""


@dataclass(frozen=True, slots=True)
class Cue:
    start_s: float
    end_s: float
    lines: tuple[str, ...]
    words: tuple[WordTiming, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _text(words: Sequence[WordTiming]) -> str:
    return " ".join(w.text for w in words)


def _lines(words: Sequence[WordTiming]) -> tuple[str, ...]:
    """The cue's words on one line, or on two split where the longer line is shortest."""
    text = _text(words)
    if len(text) <= MAX_LINE or len(words) < 2:
        return (text,)
    best = min(
        range(1, len(words)),
        key=lambda k: (max(len(_text(words[:k])), len(_text(words[k:]))), k),
    )
    return (_text(words[:best]), _text(words[best:]))


def _fits(words: Sequence[WordTiming]) -> bool:
    if words[-1].end_s - words[0].start_s > MAX_CUE_S:
        return False
    lines = _lines(words)
    return len(lines) <= MAX_LINES and all(len(line) <= MAX_LINE for line in lines)


def _sentence_ends(word: WordTiming, following: WordTiming | None) -> bool:
    """A sentence ends here: end punctuation followed by the pause the speech backends put between
    sentences (so "p.m." or "Dr." inside a sentence does not end a cue), or by nothing."""
    if not SENTENCE_END.search(word.text):
        return False
    return following is None or following.start_s - word.end_s >= SENTENCE_GAP_S


def _groups(words: Sequence[WordTiming]) -> list[list[WordTiming]]:
    """Words grouped into cues (sentence ends always cut; long runs cut at clauses, else words)."""
    groups: list[list[WordTiming]] = []
    current: list[WordTiming] = []
    for i, word in enumerate(words):
        if current and not _fits([*current, word]):
            # cut after the last clause mark in the cue when at least three words come before it
            cut = max((k + 1 for k, w in enumerate(current[:-1]) if CLAUSE_END.search(w.text)), default=0)
            groups.append(current[:cut] if cut >= 3 else current)
            current = current[cut:] if cut >= 3 else []
        current.append(word)
        if _sentence_ends(word, words[i + 1] if i + 1 < len(words) else None):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def cues(words: Sequence[WordTiming]) -> list[Cue]:
    """The caption cues of ``words`` (in order, non-overlapping)."""
    groups = _groups(words)
    out: list[Cue] = []
    for i, group in enumerate(groups):
        start, end = group[0].start_s, group[-1].end_s
        limit = groups[i + 1][0].start_s if i + 1 < len(groups) else end + MIN_CUE_S
        end = max(end, min(start + MIN_CUE_S, limit))
        out.append(Cue(round(start, 3), round(end, 3), _lines(group), tuple(group)))
    return out


def _td(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=round(seconds * 1000))


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def render(words: Sequence[WordTiming], fmt: CaptionFormat) -> str:
    """The captions of ``words`` as one file in ``fmt``."""
    found = cues(words)
    if fmt == "srt":
        import srt

        return str(
            srt.compose(
                [srt.Subtitle(i + 1, _td(c.start_s), _td(c.end_s), c.text) for i, c in enumerate(found)]
            )
        )
    if fmt == "vtt":
        import webvtt

        vtt = webvtt.WebVTT(
            captions=[webvtt.Caption(_vtt_time(c.start_s), _vtt_time(c.end_s), list(c.lines)) for c in found]
        )
        return str(vtt.content)
    return json.dumps(
        {
            "cues": [
                {
                    "start_s": c.start_s,
                    "end_s": c.end_s,
                    "text": c.text,
                    "words": [w.model_dump() for w in c.words],
                }
                for c in found
            ],
            "words": [w.model_dump() for w in words],
        },
        indent=2,
    )


class CharacterAlignment(BaseModel):
    """One entry per character of a text, with when it is spoken (ElevenLabs' ``alignment`` shape)."""

    characters: list[str]
    character_start_times_seconds: list[float]
    character_end_times_seconds: list[float]


def character_alignment(text: str, words: Sequence[WordTiming]) -> CharacterAlignment:
    """Character timings of ``text`` from word timings.

    Each word's characters share its span evenly; the characters between two words (spaces,
    punctuation) take the gap between them. When ``text`` has as many words as were spoken, they pair
    one to one; otherwise (numbers the voice spelled out) the text's words are spread over the speech
    by their lengths.
    """
    tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if not tokens or not words:
        return CharacterAlignment(
            characters=list(text),
            character_start_times_seconds=[0.0] * len(text),
            character_end_times_seconds=[0.0] * len(text),
        )
    if len(tokens) == len(words):
        spans = [(w.start_s, w.end_s) for w in words]
    else:
        first, last = words[0].start_s, words[-1].end_s
        total = sum(b - a for a, b in tokens)
        spans, at = [], first
        for a, b in tokens:
            step = (last - first) * (b - a) / total
            spans.append((at, at + step))
            at += step
    starts = [0.0] * len(text)
    ends = [0.0] * len(text)
    previous_end = 0.0
    cursor = 0
    for (a, b), (start_s, end_s) in zip(tokens, spans, strict=True):
        for i in range(cursor, a):  # what lies between the previous word and this one
            starts[i], ends[i] = previous_end, start_s
        per = (end_s - start_s) / (b - a)
        for k, i in enumerate(range(a, b)):
            starts[i], ends[i] = start_s + k * per, start_s + (k + 1) * per
        previous_end, cursor = end_s, b
    for i in range(cursor, len(text)):
        starts[i] = ends[i] = previous_end
    return CharacterAlignment(
        characters=list(text),
        character_start_times_seconds=[round(x, 3) for x in starts],
        character_end_times_seconds=[round(x, 3) for x in ends],
    )
