"""Consent phrases: a short English sentence of consent with a one-time code spoken in it.

The person whose voice is cloned reads the phrase aloud; the worker's offline recognizer
(pocketsphinx's US English model, :func:`workers.consent.verify_consent`) must hear every word of the
code, in order. The code is :data:`CODE_DIGITS` digits spoken as words ("four seven two ..."): a
closed, acoustically distinct set that the worker decodes with a grammar of this sentence's words and
any digits (free recognition merges digits into other words: "six two" -> "sixty"), and 10**6 codes,
each valid once for minutes, make a replayed old recording useless. The sentence around it is fixed
common words (it makes the clip a statement of consent and gives the speaker check a few seconds of
speech); the recognizer is judged on it only loosely (a tolerant word error rate).

Pure Python: the API makes phrases, workers check them.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

CODE_DIGITS = 6
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SENTENCE = "I agree that this server may copy my voice. My code is {code}."
"""The fixed part of every phrase (``{code}``: the code's digits as words)."""


@dataclass(frozen=True)
class ConsentPhrase:
    """``code``: the digits ("472916"); ``text``: what is read aloud, the digits as words."""

    code: str
    text: str

    @property
    def code_words(self) -> tuple[str, ...]:
        """The code as the words the recognizer must hear ("four", "seven", ...)."""
        return tuple(DIGIT_WORDS[int(d)] for d in self.code)


def phrase_for(code: str) -> ConsentPhrase:
    """The phrase that carries ``code`` (digits only)."""
    if not code.isdigit() or not code.isascii():
        raise ValueError(f"a consent code is digits, not {code!r}")
    return ConsentPhrase(code=code, text=SENTENCE.format(code=" ".join(DIGIT_WORDS[int(d)] for d in code)))


def new_phrase(rng: random.Random | None = None) -> ConsentPhrase:
    """A fresh phrase; its code from :mod:`secrets` unless ``rng`` is given (tests)."""
    pick = rng.randrange if rng is not None else secrets.randbelow
    return phrase_for("".join(str(pick(10)) for _ in range(CODE_DIGITS)))
