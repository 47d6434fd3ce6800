"""Text preparation for speech backends: number normalisation, sentence splitting, pauses.

Pure functions (no model imports). Speech models read long inputs badly and mispronounce digits,
so every speech backend synthesizes one :class:`Segment` at a time and joins the waves with
:func:`join_segments`, inserting natural pauses between sentences and paragraphs.

Sentence boundaries come from pysbd (the maintained Python port of the Pragmatic Segmenter, with
rules and abbreviation lists for 23 languages), not from rules written here: a hand-written splitter
keeps meeting one more "Dr.", "3 p.m.", "U.S." or German "3. Mai" it cuts in the wrong place, and each
fix is one more list to maintain. What this module adds on top is small, and each part is tested
against a case pysbd 0.3.4 gets wrong: a few titles missing from its lists, sentences ending in "!!!"
or in a French "« ... »" quotation, closing marks left at the start of the next sentence, and a
linear way to map its sentences back onto the text (its own ``segment()`` takes quadratic time).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pysbd
from pysbd.languages import LANGUAGE_CODES as _PYSBD_LANGUAGES

from gen_server.speech_markup import CLAUSE_END, SENTENCE_END, apply_lexicon
from gen_server.speech_markup import parse as parse_markup
from workers.timings import sound_span

logger = logging.getLogger(__name__)

SENTENCE_PAUSE_S = 0.3
"""Silence after a sentence, seconds."""
PARAGRAPH_PAUSE_S = 0.4
"""Silence after a paragraph (blank line), seconds."""
CLAUSE_PAUSE_S = 0.15
"""Silence where an over-long sentence was cut at a comma or semicolon, seconds."""
DEFAULT_MAX_CHARS = 250
"""Longest segment handed to a model in one call (XTTS, for one, refuses much longer English)."""

_CLAUSE_BREAK = re.compile(r"(?<=[,;:—–])\s+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_WHITESPACE = re.compile(r"\s+")

_MISSING_TITLES: dict[str, tuple[str, ...]] = {
    "en": ("hon", "pres", "fr"),
    "es": ("sr", "sres", "dra", "dña", "ing", "gral", "sto", "sta"),
    "fr": ("mm",),
    "de": ("hr", "hrn", "fr", "frl"),
    "nl": ("dhr", "mevr", "dr", "prof", "mr", "ir", "drs", "ing", "st"),
    "pl": ("prof", "inż", "ks", "św", "płk"),
    "da": ("prof",),
}
"""Titles written before a name that pysbd 0.3.4's lists lack, so "El Sr. | García llegó." was cut
after the title. They are added to its own abbreviation lists (lower case, without the dot)."""
_RUN_OF_MARKS_MID_SENTENCE = r"(?<=\S)[!?]{3,}(?=\s+[a-z])"
"""pysbd never ends a sentence at three or more ``!``/``?`` ("I love it!!! Do you?" stayed one
sentence). This narrows that rule to a run followed by a lower-case word, the test its own rule for a
single ``!`` uses; :data:`_SENTENCE_TAIL` then joins the marks it splits between into one run."""
_QUOTE_ENDS_SENTENCE = r"[!?.-]\s?[\"'“”»]\s[A-Z]"
_SPACE_AFTER_QUOTE_ENDING_SENTENCE = r"(?<=[!?.-][\"'“”»])\s(?=[A-Z])|(?<=[!?.-]\s»)\s(?=[A-Z])"
"""pysbd's rule for a quotation that ends a sentence ('He said "Stop." Then he left.'), extended to
``»`` and to the French space before it: it kept 'Il a dit « Arrête. » Puis il est parti.' whole."""
_SENTENCE_TAIL = frozenset(".!?…。．！？" + "\"'”’»«」』）》〉】)]")
"""Marks that belong to the sentence they directly follow (no space between): pysbd 0.3.4 leaves a
closing quote after a CJK full stop, the ``«`` closing a German ``»...«`` quote, or the ``？`` of a
Japanese ``！？`` at the start of the next sentence."""

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
    speed: float = 1.0
    """Rate relative to the job's speed (SSML ``<prosody rate>``)."""
    exact_pause: bool = False
    """The pause was asked for (a break or ``[pause]``): :func:`pause_after` makes it the silence heard."""


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


def _pysbd_language(language: str) -> str:
    """pysbd's code for ``language`` (``zh-cn`` -> ``zh``); English rules for languages it lacks."""
    code = language.lower().replace("_", "-").split("-")[0]
    return code if code in _PYSBD_LANGUAGES else "en"


@functools.cache
def _segmenter(code: str) -> Any:
    """One pysbd segmenter per language, its rules amended as the constants above describe.

    Only its ``processor()`` is used, which keeps no state on the segmenter, so one instance is safe
    to share between threads (``segment()`` stores the text on the instance and would not be).
    """
    segmenter = pysbd.Segmenter(language=code, clean=False)
    base = segmenter.language_module
    titles = list(_MISSING_TITLES.get(code, ()))
    abbreviation = type(
        "Abbreviation",
        (base.Abbreviation,),
        {
            "ABBREVIATIONS": [*base.Abbreviation.ABBREVIATIONS, *titles],
            "PREPOSITIVE_ABBREVIATIONS": [*base.Abbreviation.PREPOSITIVE_ABBREVIATIONS, *titles],
        },
    )
    segmenter.language_module = type(
        base.__name__,
        (base,),
        {
            "Abbreviation": abbreviation,
            "CONTINUOUS_PUNCTUATION_REGEX": _RUN_OF_MARKS_MID_SENTENCE,
            "QUOTATION_AT_END_OF_SENTENCE_REGEX": _QUOTE_ENDS_SENTENCE,
            "SPLIT_SPACE_QUOTATION_AT_END_OF_SENTENCE_REGEX": _SPACE_AFTER_QUOTE_ENDING_SENTENCE,
        },
    )
    return segmenter


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Split one paragraph into sentences (whitespace collapsed), with pysbd's rules for ``language``.

    Abbreviations (``Dr.``, ``e.g.``, ``U.S.``, ``3 p.m.``), initials (``J. R. R. Tolkien``), decimals,
    German ordinals (``3. Mai``), URLs and e-mail addresses do not end a sentence; CJK full stops do
    without a following space. Languages pysbd lacks use its English rules.

    pysbd's sentences are found back in the text in order and the text is cut after each one, so
    nothing is ever dropped or changed even where pysbd rewrites a sentence (its own ``segment()``
    does the same search from the start each time: 0.2 s for 5000 characters of short sentences).

    Args:
        text: A paragraph.
        language: Language code such as ``en``, ``de`` or ``zh-cn``.

    Returns:
        The sentences, in order, without empty ones.
    """
    text = _WHITESPACE.sub(" ", text).strip()
    if not text:
        return []
    cuts: list[int] = []
    pos = 0
    for sentence in _segmenter(_pysbd_language(language)).processor(text).process():
        sentence = sentence.strip()
        start = text.find(sentence, pos) if sentence else -1
        if start < 0:
            continue
        pos = end = start + len(sentence)
        while end < len(text) and text[end] in _SENTENCE_TAIL:
            end += 1
        if not cuts or end > cuts[-1]:
            cuts.append(end)
    pieces = (text[a:b].strip() for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True))
    return [p for p in pieces if p]


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def segment_text(
    text: str,
    *,
    language: str = "en",
    max_chars: int = DEFAULT_MAX_CHARS,
    lexicon: Mapping[str, str] | None = None,
) -> list[Segment]:
    """Prepare ``text`` for a speech model: one segment per sentence, numbers as words, pauses.

    ``text`` may be SSML or carry inline tags (:mod:`gen_server.speech_markup`): each span it gives is
    split on its own, its rate becomes the segments' ``speed`` and its break the pause after its last
    segment. Blank lines separate paragraphs; single newlines count as spaces (hard-wrapped text).
    Sentences are split before numbers become words: the full stop of "3 p.m.", of a German ordinal
    ("3. Mai") or of "$3.50" is pysbd's to judge, and "drei. Mai" would look like a sentence end.

    Args:
        text: The text to speak.
        language: Language code (sentence rules, see :func:`split_sentences`; number words, see
            :func:`normalize_numbers`).
        max_chars: Longest segment; longer sentences are cut at clause marks or spaces.
        lexicon: Word -> respelling (the job's pronunciations), applied to the spoken text only.

    Returns:
        Segments in order; the last one has ``pause_after_s == 0``. Empty when nothing is speakable.

    Raises:
        InvalidInput: bad markup (the API refuses it at submission already).
    """
    if max_chars < 20:
        raise ValueError(f"max_chars must be at least 20, got {max_chars}")
    segments: list[Segment] = []
    for span in parse_markup(text, language):
        found = _split_span(apply_lexicon(span.text, lexicon or {}), language, max_chars, span.rate)
        if not found:
            if span.pause_s and segments:  # a pause after text that ended an earlier span
                last = segments[-1]
                segments[-1] = Segment(last.text, last.pause_after_s + span.pause_s, last.speed, True)
            continue
        last = found[-1]
        exact = span.pause_s is not None
        if span.pause_s is not None:
            pause = span.pause_s
        elif span.boundary == "paragraph":
            pause = PARAGRAPH_PAUSE_S
        elif span.boundary == "sentence" or SENTENCE_END.search(last.text):
            pause = SENTENCE_PAUSE_S
        else:
            pause = CLAUSE_PAUSE_S if CLAUSE_END.search(last.text) else 0.0
        found[-1] = Segment(last.text, pause, last.speed, exact)
        segments.extend(found)
    if segments:
        segments[-1] = Segment(segments[-1].text, 0.0, segments[-1].speed)
    return segments


def pause_after(segment: Segment, wave: npt.ArrayLike, sample_rate: int) -> float:
    """The silence to insert after ``segment``'s wave: its pause, less the quiet tail the model already
    left when the pause was asked for (a 500 ms break then sounds like half a second)."""
    if not segment.exact_pause:
        return segment.pause_after_s
    samples = np.asarray(wave, dtype=np.float32).reshape(-1)
    _, end_s = sound_span(samples, sample_rate)
    return max(0.0, segment.pause_after_s - (samples.size / sample_rate - end_s))


def _split_span(text: str, language: str, max_chars: int, speed: float) -> list[Segment]:
    segments: list[Segment] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        para: list[Segment] = []
        for sentence in split_sentences(paragraph, language):
            spoken = normalize_numbers(sentence, language)
            pieces = [p for p in _split_long(spoken, max_chars) if _speakable(p)]
            for i, piece in enumerate(pieces):
                pause = CLAUSE_PAUSE_S if i < len(pieces) - 1 else SENTENCE_PAUSE_S
                para.append(Segment(piece, pause, speed))
        if para:
            para[-1] = Segment(para[-1].text, PARAGRAPH_PAUSE_S, speed)
            segments.extend(para)
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
    parts = [with_pause(wave, pause, sample_rate) for wave, pause in zip(waves, pauses_s, strict=True)]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts)


def with_pause(wave: npt.ArrayLike, pause_s: float, sample_rate: int) -> npt.NDArray[np.float32]:
    """One segment's wave followed by its pause: the piece a streamed job sends per sentence."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    return np.concatenate([wave, np.zeros(round(max(pause_s, 0.0) * sample_rate), dtype=np.float32)])
