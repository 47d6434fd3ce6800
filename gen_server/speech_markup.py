"""Directing speech: an SSML subset and light inline tags, turned into spans a speech backend reads.

Two ways to write a speech job's ``text``:

* SSML (text starting with ``<speak``, or with an XML declaration): ``<speak>``, ``<p>``, ``<s>``,
  ``<break time="500ms"/>`` (or ``strength="none|x-weak|weak|medium|strong|x-strong"``), ``<say-as
  interpret-as="characters|spell-out|cardinal|number|ordinal|date" format="mdy|dmy|ymd">``, ``<sub
  alias="...">``, ``<prosody rate="x-slow|slow|medium|fast|x-fast|80%|1.2">``. Anything else is
  refused with its line and column (no silent drops).
* Plain text with inline tags: ``[pause 0.8s]`` / ``[pause 300ms]`` (a pause of that length).

:func:`parse` returns :class:`Span` s: text to speak at one rate, then what follows it (a pause of a
given length, or a sentence/paragraph end). ``workers.text.segment_text`` splits each span into
sentences as usual. The API calls :func:`parse` when a job is submitted, so bad markup is a 422 naming
the position before anything is queued.

Parsing: the standard library's expat (the XML parser ElementTree uses), driven event by event so
that every element's position is known; documents with a DOCTYPE or entity declarations are refused
first (no entity expansion, no external resources). No maintained package maps SSML onto a speech
model's calls (``ssml``-named packages on PyPI build SSML for cloud services), hence the interpretation
here.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from gen_server.errors import InvalidInput

Boundary = Literal["sentence", "paragraph"]

MAX_BREAK_S = 10.0
"""Longest pause one break or tag may ask for, seconds."""
_STRENGTH_S = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.7, "x-strong": 1.2}
_RATES = {"x-slow": 0.6, "slow": 0.8, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.6}
_MIN_RATE, _MAX_RATE = 0.5, 2.0
_PAUSE_TAG = re.compile(r"\[\s*pause\b([^\]]*)\]", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*$", re.IGNORECASE)
SENTENCE_END = re.compile(r"[.!?…。．！？][\"'”’»)\]]*$")
"""Text ending a sentence: end punctuation, then closing quotes or brackets (spoken text, captions)."""
CLAUSE_END = re.compile(r"[,;:—–][\"'”’»)\]]*$")
"""Text ending a clause: a comma, semicolon, colon or dash, then closing quotes or brackets."""
_SPACE_BEFORE_MARK = re.compile(r"[ \t]+([.,;:!?])")
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


@dataclass(slots=True)
class Span:
    """Text spoken at one rate, then a pause (``pause_s``) or a sentence/paragraph end (``boundary``)."""

    text: str
    rate: float = 1.0
    pause_s: float | None = None
    boundary: Boundary | None = None


def is_ssml(text: str) -> bool:
    """SSML: the text starts with ``<speak`` (or an XML declaration or DOCTYPE, which is then refused)."""
    return re.match(r"\s*<(?:speak\b|\?xml|!DOCTYPE)", text, re.IGNORECASE) is not None


def parse(text: str, language: str = "en") -> list[Span]:
    """The spans of a job's ``text`` (SSML or plain text with inline tags).

    Raises:
        InvalidInput: bad markup (``field="text"``; the message gives line and column).
    """
    if is_ssml(text):
        return _Ssml(text, language).spans()
    return _inline(text)


def apply_lexicon(text: str, lexicon: Mapping[str, str]) -> str:
    """``text`` with each lexicon word (whole word, any case) replaced by its respelling."""
    if not lexicon:
        return text
    lowered = {word.lower(): say for word, say in lexicon.items()}
    pattern = re.compile(
        r"(?<![\w'])(" + "|".join(map(re.escape, sorted(lowered, key=len, reverse=True))) + r")(?![\w'])",
        re.IGNORECASE,
    )
    return pattern.sub(lambda m: lowered[m.group(1).lower()], text)


def words_used(text: str, words: Iterable[str]) -> set[str]:
    """Which of ``words`` occur in ``text`` as whole words, in any case (one pass over the text)."""
    wanted = {w.lower(): w for w in words}
    if not wanted:
        return set()
    tokens = {t.strip('.,;:!?"()[]{}<>').lower() for t in text.split()}
    tokens |= {t.lower() for t in re.findall(r"[\w']+", text)}
    return {w for key, w in wanted.items() if key in tokens}


def plain_text(text: str, language: str = "en") -> str:
    """What will be spoken, without markup (for length checks and the lexicon)."""
    return " ".join(s.text for s in parse(text, language))


def _fail(message: str, line: int | None = None, column: int | None = None) -> InvalidInput:
    where = f"line {line}, column {column}: " if line is not None else ""
    return InvalidInput(f"text: {where}{message}", field="text")


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _seconds(value: str, where: tuple[int, int]) -> float:
    m = _DURATION.match(value)
    if not m:
        raise _fail(f"a pause needs a length such as 500ms or 1.5s, not {value.strip()!r}", *where)
    seconds = float(m.group(1)) / (1000.0 if m.group(2).lower() == "ms" else 1.0)
    if seconds > MAX_BREAK_S:
        raise _fail(f"a pause may last at most {MAX_BREAK_S:g} s, not {seconds:g} s", *where)
    return seconds


def _inline(text: str) -> list[Span]:
    spans: list[Span] = []
    at = 0
    for m in _PAUSE_TAG.finditer(text):
        seconds = _seconds(m.group(1), _line_col(text, m.start()))
        spans.append(Span(text[at : m.start()], pause_s=seconds))
        at = m.end()
    spans.append(Span(text[at:]))
    return spans


def _rate(value: str, where: tuple[int, int]) -> float:
    value = value.strip().lower()
    if value in _RATES:
        return _RATES[value]
    try:
        rate = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        rate = -1.0
    if not _MIN_RATE <= rate <= _MAX_RATE:
        words = ", ".join(_RATES)
        raise _fail(
            f"prosody rate must be one of {words}, or {_MIN_RATE:g}-{_MAX_RATE:g} (or 50%-200%)", *where
        )
    return rate


def _number_words(value: str, language: str, to: str, where: tuple[int, int]) -> str:
    from num2words import num2words

    digits = value.strip().replace(",", "")
    if not re.fullmatch(r"-?\d+(?:\.\d+)?", digits) or (to == "ordinal" and not digits.isdigit()):
        kind = "a whole number" if to == "ordinal" else "a number"
        raise _fail(f"say-as {to} needs {kind}, not {value.strip()!r}", *where)
    if len(digits.lstrip("-").split(".")[0]) > 15:
        raise _fail(f"say-as {to} reads numbers up to 15 digits; write longer ones out", *where)
    number = float(digits) if "." in digits else int(digits)
    try:
        return str(num2words(number, lang=language.split("-")[0].split("_")[0], to=to))
    except (NotImplementedError, OverflowError):
        return str(num2words(number, lang="en", to=to))


def _date_words(value: str, fmt: str, language: str, where: tuple[int, int]) -> str:
    parts = re.split(r"[-/.\s]+", value.strip())
    order = {"ymd": "ymd", "mdy": "mdy", "dmy": "dmy", "": "ymd" if len(parts[0]) == 4 else "mdy"}.get(fmt)
    if order is None:
        raise _fail(f"say-as date format must be ymd, mdy or dmy, not {fmt!r}", *where)
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise _fail(f"say-as date needs a date such as 2024-05-03, not {value.strip()!r}", *where)
    d = dict(zip(order, (int(p) for p in parts), strict=True))
    if not (1 <= d["m"] <= 12 and 1 <= d["d"] <= 31):
        raise _fail(f"say-as date {value.strip()!r} is not a date (month {d['m']}, day {d['d']})", *where)
    day = _number_words(str(d["d"]), language, "ordinal", where)
    year = _number_words(str(d["y"]), language, "year", where) if language.startswith("en") else str(d["y"])
    return f"{_MONTHS[d['m'] - 1]} {day}, {year}"


@dataclass(slots=True)
class _Frame:
    tag: str
    rate: float
    where: tuple[int, int]
    text: list[str] = field(default_factory=list)  # say-as / sub: the content, transformed at the end
    attrs: dict[str, str] = field(default_factory=dict)


_ALLOWED = {
    "speak": set(),
    "p": set(),
    "s": set(),
    "break": {"time", "strength"},
    "say-as": {"interpret-as", "format", "detail"},
    "sub": {"alias"},
    "prosody": {"rate"},
}
_CONTAINERS = {"speak", "p", "s", "prosody"}
_INTERPRET = {"characters", "spell-out", "cardinal", "number", "ordinal", "date"}


class _Ssml:
    def __init__(self, text: str, language: str) -> None:
        self.text = text
        self.language = language
        self.out: list[Span] = [Span("")]
        self.stack: list[_Frame] = []
        self.parser = xml.parsers.expat.ParserCreate()
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._data
        self.parser.StartDoctypeDeclHandler = self._forbidden
        self.parser.EntityDeclHandler = self._forbidden

    def spans(self) -> list[Span]:
        try:
            self.parser.Parse(self.text, True)
        except xml.parsers.expat.ExpatError as e:
            message = xml.parsers.expat.errors.messages[e.code] if e.code else str(e)
            raise _fail(f"not valid SSML ({message})", e.lineno, e.offset + 1) from None
        for span in self.out:  # say-as and sub are padded with spaces: none before a mark
            span.text = _SPACE_BEFORE_MARK.sub(r"\1", span.text)
        return [s for s in self.out if s.text.strip() or s.pause_s]

    def _where(self) -> tuple[int, int]:
        return self.parser.CurrentLineNumber, self.parser.CurrentColumnNumber + 1

    def _forbidden(self, *args: object) -> None:
        raise _fail("SSML may not declare a DOCTYPE or entities", *self._where())

    def _span(self, rate: float) -> Span:
        last = self.out[-1]
        if last.pause_s is not None or last.boundary is not None or (last.rate != rate and last.text.strip()):
            last = Span("", rate)
            self.out.append(last)
        last.rate = rate
        return last

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        where = self._where()
        if tag not in _ALLOWED:
            raise _fail(
                f"unknown SSML element <{tag}>; supported: {', '.join('<' + t + '>' for t in _ALLOWED)}",
                *where,
            )
        if not self.stack and tag != "speak":
            raise _fail("SSML must be one <speak> element", *where)
        if self.stack and tag == "speak":
            raise _fail("<speak> may not contain another <speak>", *where)
        if self.stack and self.stack[-1].tag in ("say-as", "sub"):
            raise _fail(f"<{self.stack[-1].tag}> may contain only text, not <{tag}>", *where)
        extra = set(attrs) - _ALLOWED[tag]
        if extra:
            raise _fail(f"<{tag}> has no attribute {sorted(extra)[0]!r}", *where)
        rate = self.stack[-1].rate if self.stack else 1.0
        if tag == "prosody" and "rate" in attrs:
            rate = rate * _rate(attrs["rate"], where)
            rate = min(max(rate, _MIN_RATE * _MIN_RATE), _MAX_RATE * _MAX_RATE)
        if tag == "break":
            if "time" in attrs:
                pause = _seconds(attrs["time"], where)
            else:
                strength = attrs.get("strength", "medium")
                if strength not in _STRENGTH_S:
                    raise _fail(f"break strength must be one of {', '.join(_STRENGTH_S)}", *where)
                pause = _STRENGTH_S[strength]
            span = self._span(rate)
            span.pause_s = (span.pause_s or 0.0) + pause
        if tag in ("p", "s"):  # what came before ends there
            last = self.out[-1]
            if last.text.strip() and last.pause_s is None and last.boundary is None:
                last.boundary = "paragraph" if tag == "p" else "sentence"
        if tag == "say-as" and attrs.get("interpret-as") not in _INTERPRET:
            raise _fail(f"say-as interpret-as must be one of {', '.join(sorted(_INTERPRET))}", *where)
        if tag == "sub" and not attrs.get("alias", "").strip():
            raise _fail("<sub> needs an alias (what to say)", *where)
        self.stack.append(_Frame(tag, rate, where, attrs=dict(attrs)))

    def _data(self, data: str) -> None:
        if not self.stack:
            return
        frame = self.stack[-1]
        if frame.tag in ("say-as", "sub"):
            frame.text.append(data)
        elif frame.tag == "break":
            if data.strip():
                raise _fail("<break> must be empty", *self._where())
        else:
            span = self._span(frame.rate)
            span.text += data

    def _end(self, tag: str) -> None:
        frame = self.stack.pop()
        content = "".join(frame.text)
        if tag == "sub":
            self._span(frame.rate).text += f" {frame.attrs['alias'].strip()} "
        elif tag == "say-as":
            self._span(frame.rate).text += f" {self._say_as(frame, content)} "
        elif tag in ("p", "s"):
            span = self._span(frame.rate)
            if span.pause_s is None:
                span.boundary = "paragraph" if tag == "p" else "sentence"
        elif tag in _CONTAINERS:
            self._span(frame.rate)  # text after a rate change starts a new span

    def _say_as(self, frame: _Frame, content: str) -> str:
        how = frame.attrs["interpret-as"]
        if how in ("characters", "spell-out"):
            return " ".join(ch for ch in content if not ch.isspace())
        if how in ("cardinal", "number"):
            return _number_words(content, self.language, "cardinal", frame.where)
        if how == "ordinal":
            return _number_words(content, self.language, "ordinal", frame.where)
        return _date_words(content, frame.attrs.get("format", ""), self.language, frame.where)
