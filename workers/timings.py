"""Word timings of synthesized speech: from a voice's own phoneme durations, or estimated.

Speech backends synthesize one text segment at a time (:mod:`workers.text`) and join the waves with
pauses; the words of each segment are timed relative to its wave, then placed on the joined timeline
by :func:`place` (the same offsets as :func:`workers.text.join_segments`).

* :func:`from_phonemes`: Piper voices report how many samples each phoneme lasted (the duration
  predictor's output, exposed by ``piper.patch_voice_with_alignment``); espeak-ng separates words with
  a space phoneme, so the groups between spaces are the spoken words. When the groups and the text's
  words do not pair up one to one (espeak joins or splits a word now and then), the segment falls back
  to the estimate, so a timing is never attached to the wrong word.
* :func:`aligned_or_estimated`: for models without durations, English words force-aligned to the
  audio by pocketsphinx (:mod:`workers.align`, ``source: "aligned"``), else the estimate.
* :func:`estimate`: the segment's sound (from its first to its last window above -40 dB of its
  loudest) shared among the words by their letter counts. ``source: "estimated"``.

No maintained library maps Piper's phoneme alignments to words (piper stops at phonemes), hence this
module; it is small and pure numpy.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from gen_server.audio import Word

_SOUND_DB = -40.0
"""A 10 ms window counts as sound when within this many dB of the segment's loudest window."""
_SPACE = " "
_PADS = frozenset({"_", "<BLNK>"})
"""Symbols between a model's input symbols: Piper's pad, coqui's blank."""


def words_in(text: str) -> list[str]:
    """The words of ``text`` as captions show them: whitespace-separated, punctuation kept attached,
    tokens with no letter or digit (a lone dash) left out."""
    return [t for t in text.split() if any(c.isalnum() for c in t)]


def _letters(word: str) -> int:
    return max(1, sum(1 for c in word if c.isalnum()))


def sounding(wave: npt.NDArray[np.floating], rate: int) -> tuple[int, npt.NDArray[np.intp]]:
    """The length of a 10 ms window (samples) and the indices of the windows of ``wave`` within
    ``_SOUND_DB`` of its loudest (none when it is silent)."""
    hop = max(1, rate // 100)
    n = wave.size // hop
    if n == 0:
        return hop, np.zeros(0, dtype=np.intp)
    power = (wave[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1)
    loudest = float(power.max())
    if loudest <= 0:
        return hop, np.zeros(0, dtype=np.intp)
    return hop, np.flatnonzero(power >= loudest * 10 ** (_SOUND_DB / 10))


def sound_span(wave: npt.NDArray[np.floating], rate: int) -> tuple[float, float]:
    """First and last sounding moment of ``wave`` (seconds); the whole wave when it is silent."""
    hop, windows = sounding(wave, rate)
    if windows.size == 0:
        return 0.0, wave.size / rate
    return int(windows[0]) * hop / rate, min(wave.size, (int(windows[-1]) + 1) * hop) / rate


def estimate(text: str, wave: npt.NDArray[np.floating], rate: int) -> list[Word]:
    """The words of ``text`` spread over the sound in ``wave`` by their letter counts."""
    words = words_in(text)
    if not words:
        return []
    start, end = sound_span(np.asarray(wave).reshape(-1), rate)
    total = sum(_letters(w) for w in words)
    out: list[Word] = []
    at = start
    for w in words:
        span = (end - start) * _letters(w) / total
        out.append(Word(w, at, at + span, "estimated"))
        at += span
    return out


def _is_sound(phoneme: str) -> bool:
    """A phoneme or letter that is heard (not a pad, blank, BOS/EOS marker or punctuation)."""
    return phoneme not in _PADS and any(unicodedata.category(c)[0] == "L" for c in phoneme)


def from_symbols(
    text: str, symbols: Iterable[tuple[str, int]], wave: npt.NDArray[np.floating], rate: int
) -> list[Word]:
    """Word timings of one segment from a model's per-input-symbol durations.

    Args:
        text: The segment's text.
        symbols: ``(symbol, samples)`` per model input id, in order: ``" "`` separates words, symbols
            with a letter are heard, pads (``_``, ``<BLNK>``) and punctuation only take time. A word starts
            right after the space before it (the pad or blank there is the transition into its first
            sound) and ends after its last heard symbol and the pad right after it.
        wave: The segment's wave (for the estimate when the groups cannot be paired with words).
        rate: Its sample rate.
    """
    words = words_in(text)
    groups: list[tuple[int, int]] = []  # (first sample, last sample) of each spoken word
    sounds: list[int] = []  # heard symbols per group
    at = 0
    word_start: int | None = None  # where the next word starts, once a space was seen
    in_word = after_sound = False
    for symbol, samples in symbols:
        begin, at = at, at + samples
        if symbol == _SPACE:
            in_word, word_start = False, at
        elif _is_sound(symbol):
            if not in_word:
                groups.append((begin if word_start is None else word_start, at))
                sounds.append(1)
                in_word = True
            else:
                groups[-1] = (groups[-1][0], at)
                sounds[-1] += 1
        elif after_sound and symbol in _PADS:
            groups[-1] = (groups[-1][0], at)  # the heard symbol's own pad or blank
        after_sound = _is_sound(symbol)
    if not groups:
        return estimate(text, wave, rate)
    return _paired(words, groups, sounds, rate)


def piper_symbols(chunks: Sequence[Any]) -> list[tuple[str, int]] | None:
    """``(symbol, samples)`` per phoneme id of a Piper segment's chunks (``None`` without alignments).

    Each of Piper's phoneme alignments covers its phoneme's id and the pad id after it; the pad is
    labelled ``_``. Chunks follow each other: a chunk's audio beyond its phonemes is time too.
    """
    out: list[tuple[str, int]] = []
    for chunk in chunks:
        alignments = getattr(chunk, "phoneme_alignments", None)
        per_id = getattr(chunk, "phoneme_id_samples", None)
        if not alignments or per_id is None:
            return None
        index = used = 0
        for a in alignments:
            for k in range(len(a.phoneme_ids)):
                samples = int(per_id[index])
                out.append((a.phoneme if k == 0 else "_", samples))
                index, used = index + 1, used + samples
        rest = int(np.asarray(chunk.audio_float_array).size) - used
        if rest > 0:
            out.append(("_", rest))
    return out


def from_phonemes(text: str, chunks: Sequence[Any], wave: npt.NDArray[np.floating], rate: int) -> list[Word]:
    """Word timings of one Piper segment (:func:`piper_symbols`, then :func:`from_symbols`)."""
    symbols = piper_symbols(chunks)
    return estimate(text, wave, rate) if symbols is None else from_symbols(text, symbols, wave, rate)


def _paired(words: list[str], groups: list[tuple[int, int]], sounds: list[int], rate: int) -> list[Word]:
    """The text's words on the model's word groups (one to one, or partitioned by size)."""
    if len(groups) == len(words):
        return [Word(w, a / rate, b / rate, "model") for w, (a, b) in zip(words, groups, strict=True)]
    out: list[Word] = []
    if len(groups) < len(words):  # espeak spoke some words as one ("on the" -> "ɔnðə")
        runs = _partition([_letters(w) for w in words], sounds)
        for (i, j), (a, b) in zip(runs, groups, strict=True):
            part = words[i:j]
            if len(part) == 1:
                out.append(Word(part[0], a / rate, b / rate, "model"))
                continue
            total, at = sum(_letters(w) for w in part), float(a)
            for w in part:  # the group's span shared by letters: the inner boundaries are estimates
                step = (b - a) * _letters(w) / total
                out.append(Word(w, at / rate, (at + step) / rate, "estimated"))
                at += step
        return out
    runs = _partition(sounds, [_letters(w) for w in words])  # a word spoken as several groups
    return [
        Word(w, groups[i][0] / rate, groups[j - 1][1] / rate, "model")
        for w, (i, j) in zip(words, runs, strict=True)
    ]


def _partition(longer: Sequence[int], shorter: Sequence[int]) -> list[tuple[int, int]]:
    """Split ``longer`` into ``len(shorter)`` consecutive non-empty runs whose sizes best follow
    ``shorter`` (least squared log ratio): the ``[i, j)`` index range of each run."""
    n, m = len(longer), len(shorter)
    prefix = np.concatenate([[0], np.cumsum(longer)]).astype(float)
    inf = float("inf")
    cost = np.full((n + 1, m + 1), inf)
    back = np.zeros((n + 1, m + 1), dtype=int)
    cost[0, 0] = 0.0
    for j in range(1, m + 1):
        for i in range(j, n - (m - j) + 1):
            for k in range(j - 1, i):
                if cost[k, j - 1] == inf:
                    continue
                c = cost[k, j - 1] + np.log((prefix[i] - prefix[k]) / max(shorter[j - 1], 1)) ** 2
                if c < cost[i, j]:
                    cost[i, j], back[i, j] = c, k
    runs: list[tuple[int, int]] = []
    i = n
    for j in range(m, 0, -1):
        k = int(back[i, j])
        runs.append((k, i))
        i = k
    return runs[::-1]


def aligned_or_estimated(
    text: str, wave: npt.NDArray[np.floating], rate: int, language: str | None
) -> list[Word]:
    """English: the words force-aligned to ``wave`` (:mod:`workers.align`); otherwise, or when that
    fails, :func:`estimate`."""
    words = words_in(text)
    if words and (language or "en").lower().startswith("en"):
        from workers.align import align

        spans = align(wave, rate, words)
        if spans is not None:
            return [Word(w, a, b, "aligned") for w, (a, b) in zip(words, spans, strict=True)]
    return estimate(text, wave, rate)


def place(
    per_segment: Sequence[Sequence[Word]],
    waves: Sequence[npt.ArrayLike],
    pauses_s: Sequence[float],
    rate: int,
) -> tuple[Word, ...]:
    """Each segment's words moved to where its wave starts in the joined clip (waves and pauses as given
    to :func:`workers.text.join_segments`)."""
    out: list[Word] = []
    at = 0
    for words, wave, pause in zip(per_segment, waves, pauses_s, strict=True):
        out.extend(w.shifted(at / rate) for w in words)
        at += int(np.asarray(wave).size) + round(max(pause, 0.0) * rate)
    return tuple(out)
