"""Text preparation for speech backends: number normalisation, sentence splitting, pauses.

Pure functions (no model imports). Speech models read long inputs badly and mispronounce digits,
so every speech backend synthesizes one :class:`Segment` at a time and joins the waves with
:func:`join_segments`, inserting natural pauses between sentences and paragraphs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

SENTENCE_PAUSE_S = 0.3
"""Silence after a sentence, seconds."""
PARAGRAPH_PAUSE_S = 0.4
"""Silence after a paragraph (blank line), seconds."""
CLAUSE_PAUSE_S = 0.15
"""Silence where an over-long sentence was cut at a comma or semicolon, seconds."""
DEFAULT_MAX_CHARS = 250
"""Longest segment handed to a model in one call (XTTS, for one, refuses much longer English)."""

_ABBREVIATIONS = frozenset(
    (
        *("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no", "nos", "fig"),
        *("figs", "approx", "inc", "ltd", "co", "corp", "dept", "est", "mt", "ft", "jan", "feb", "mar"),
        *("apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu"),
        *("fri", "sat", "sun"),
    )
)
_SENTENCE_END = re.compile(r"([.!?…][\"'”’)\]]*)\s+")
_CJK_SENTENCE_END = re.compile(r"(?<=[。！？])")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:—–])\s+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_WHITESPACE = re.compile(r"\s+")

_CURRENCY = re.compile(r"([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?(?!\d)")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_YEAR = re.compile(r"(?<![\w.,-])(1[1-9]\d\d|20\d\d)(?!\d)(?![.,]\d)")
_DECIMAL_COMMA = frozenset(("de", "fr", "es", "it", "pt", "nl", "pl", "cs", "ru", "tr", "hu"))
"""Languages written with a decimal comma and a thousands dot (``3,5``; ``1.234``)."""


def _number_pattern(thousands: str, decimal: str) -> re.Pattern[str]:
    t, d = re.escape(thousands), re.escape(decimal)
    return re.compile(rf"(?:(?<![\w.,-])-)?(?<![\w.,])(?:\d{{1,3}}(?:{t}\d{{3}})+|\d+)(?:{d}\d+)?(?!{d}\d)")


_NUMBER = {",": _number_pattern(",", "."), ".": _number_pattern(".", ",")}

_CURRENCY_WORDS = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}
_PERCENT_WORDS = {
    "en": "percent",
    "es": "por ciento",
    "fr": "pour cent",
    "de": "Prozent",
    "it": "per cento",
    "pt": "por cento",
    "nl": "procent",
    "pl": "procent",
    "cs": "procent",
    "tr": "yüzde",
}
_MAX_SPELLED_DIGITS = 15


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of text a speech model synthesizes in one call.

    Attributes:
        text: The text to speak (numbers already written as words where the language allows).
        pause_after_s: Silence to insert after this segment's audio, seconds (0 after the last one).
    """

    text: str
    pause_after_s: float


def _num2words_lang(language: str) -> str:
    return language.lower().replace("-", "_").split("_")[0]


def _words(value: int | float, language: str, **kwargs: str) -> str | None:
    """``num2words`` without its commas, or ``None`` when the language is not supported."""
    from num2words import num2words

    try:
        text = num2words(value, lang=_num2words_lang(language), **kwargs)
    except (NotImplementedError, OverflowError, ValueError, TypeError):
        return None
    return str(text).replace(",", "")


def _spell_number(token: str, language: str, thousands: str = ",", decimal: str = ".") -> str:
    """Words for a plain number token such as ``-1,234.5``; the token itself when unsupported."""
    clean = token.replace(thousands, "").replace(decimal, ".")
    digits = clean.lstrip("-").replace(".", "")
    if len(digits) > _MAX_SPELLED_DIGITS:
        spelled = [_words(int(d), language) for d in digits]
        return token if any(s is None for s in spelled) else " ".join(s for s in spelled if s)
    value: int | float = float(clean) if "." in clean else int(clean)
    words = _words(value, language)
    return token if words is None else words


def normalize_numbers(text: str, language: str = "en") -> str:
    """Write the numbers in ``text`` as words.

    Handles thousands separators, decimals and negative numbers in every language ``num2words``
    knows; English also gets currencies (``$``, ``€``, ``£``), ordinals (``21st``) and years
    (``1999`` -> "nineteen ninety-nine"). Numbers in unsupported languages are left as digits.

    Args:
        text: Input text.
        language: Language code such as ``en``, ``de`` or ``zh-cn``.

    Returns:
        The text with numbers spelled out.
    """
    lang = _num2words_lang(language)
    if _words(1, lang) is None:
        return text
    if lang == "en":

        def currency(m: re.Match[str]) -> str:
            one, many, sub_one, sub_many = _CURRENCY_WORDS[m.group(1)]
            whole = int(m.group(2).replace(",", ""))
            cents = int((m.group(3) or "0").ljust(2, "0"))
            out = f"{_words(whole, 'en')} {one if whole == 1 else many}"
            if cents:
                out += f" and {_words(cents, 'en')} {sub_one if cents == 1 else sub_many}"
            return out

        text = _CURRENCY.sub(currency, text)
    percent = _PERCENT_WORDS.get(lang)
    if percent is not None:
        text = _PERCENT.sub(lambda m: f"{m.group(1)} {percent}", text)
    if lang == "en":
        text = _ORDINAL.sub(lambda m: _words(int(m.group(1)), "en", to="ordinal") or m.group(0), text)
        text = _YEAR.sub(lambda m: _words(int(m.group(1)), "en", to="year") or m.group(0), text)
    thousands, decimal = (".", ",") if lang in _DECIMAL_COMMA else (",", ".")
    return _NUMBER[thousands].sub(lambda m: _spell_number(m.group(0), lang, thousands, decimal), text)


def _is_abbreviation(chunk: str) -> bool:
    """Whether ``chunk`` (text before a split point) ends with an abbreviation or an initial."""
    words = chunk.rstrip().split()
    if not words:
        return False
    last = words[-1].rstrip(".").lstrip("(\"'").lower()
    return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Cut ``sentence`` into pieces of at most ``max_chars``: at clause marks, else at spaces."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    rest = sentence
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cut = max((m.start() for m in _CLAUSE_BREAK.finditer(window)), default=-1)
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = max_chars
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return [p for p in pieces if p]


def split_sentences(text: str) -> list[str]:
    """Split one paragraph into sentences (whitespace collapsed).

    A full stop after an abbreviation (``Dr.``, ``e.g.``) or an initial (``J. Smith``) does not end a
    sentence; decimals (``3.14``) never do. CJK full stops split without a following space.

    Args:
        text: A paragraph.

    Returns:
        The sentences, in order, without empty ones.
    """
    text = _WHITESPACE.sub(" ", text).strip()
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    pending = ""
    for m in _SENTENCE_END.finditer(text):
        chunk = pending + text[start : m.end(1)]
        start = m.end()
        if _is_abbreviation(chunk):
            pending = chunk + " "
            continue
        sentences.append(chunk)
        pending = ""
    sentences.append(pending + text[start:])
    out: list[str] = []
    for sentence in sentences:
        out.extend(s.strip() for s in _CJK_SENTENCE_END.split(sentence) if s.strip())
    return out


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def segment_text(text: str, *, language: str = "en", max_chars: int = DEFAULT_MAX_CHARS) -> list[Segment]:
    """Prepare ``text`` for a speech model: numbers as words, one segment per sentence, pauses.

    Blank lines separate paragraphs; single newlines count as spaces (hard-wrapped text).

    Args:
        text: The text to speak.
        language: Language code (number words, see :func:`normalize_numbers`).
        max_chars: Longest segment; longer sentences are cut at clause marks or spaces.

    Returns:
        Segments in order; the last one has ``pause_after_s == 0``. Empty when nothing is speakable.
    """
    if max_chars < 20:
        raise ValueError(f"max_chars must be at least 20, got {max_chars}")
    segments: list[Segment] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        sentences = split_sentences(normalize_numbers(paragraph, language))
        para: list[Segment] = []
        for sentence in sentences:
            pieces = [p for p in _split_long(sentence, max_chars) if _speakable(p)]
            for i, piece in enumerate(pieces):
                pause = CLAUSE_PAUSE_S if i < len(pieces) - 1 else SENTENCE_PAUSE_S
                para.append(Segment(piece, pause))
        if para:
            para[-1] = Segment(para[-1].text, PARAGRAPH_PAUSE_S)
            segments.extend(para)
    if segments:
        segments[-1] = Segment(segments[-1].text, 0.0)
    return segments


def join_segments(
    waves: Sequence[npt.ArrayLike], pauses_s: Sequence[float], sample_rate: int
) -> npt.NDArray[np.float32]:
    """Concatenate mono waves with silences between them.

    Args:
        waves: One 1-D wave per segment, at ``sample_rate``.
        pauses_s: Silence after each wave, seconds (same length as ``waves``).
        sample_rate: Hz.

    Returns:
        One 1-D float32 wave.
    """
    if len(waves) != len(pauses_s):
        raise ValueError(f"{len(waves)} waves but {len(pauses_s)} pauses")
    parts: list[npt.NDArray[np.float32]] = []
    for wave, pause in zip(waves, pauses_s, strict=True):
        parts.append(np.asarray(wave, dtype=np.float32).reshape(-1))
        frames = round(max(pause, 0.0) * sample_rate)
        if frames:
            parts.append(np.zeros(frames, dtype=np.float32))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts)
