"""Forced alignment of English speech to its text with pocketsphinx (offline, its bundled US English model).

For speech models that report no durations (XTTS, coqui's VITS through ``tts()``): the known words are
aligned to the audio (``Decoder.set_align_text``), giving each word's start and end. Words the
pronunciation dictionary does not know are spelled as letters would not help; such a sentence, a
language other than English, or an alignment that fails returns ``None`` and the caller estimates.

pocketsphinx works on 16 kHz 16-bit audio in 10 ms frames; its word boundaries are within a frame or
two of where a listener hears them on clean synthetic speech.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

RATE = 16000
FRAME_S = 0.01
_FILLERS = {"<s>", "</s>", "<sil>", "(NULL)", "[NOISE]"}
_LOCK = threading.Lock()


def _key(word: str) -> str:
    return re.sub(r"[^a-z']", "", word.lower())


@functools.cache
def _dictionary() -> frozenset[str]:
    from pocketsphinx import get_model_path

    words = set()
    with open(f"{get_model_path()}/en-us/cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            words.add(line.split(" ", 1)[0].split("(", 1)[0])
    return frozenset(words)


@functools.cache
def _decoder() -> Any:
    from pocketsphinx import Decoder

    return Decoder(samprate=RATE, bestpath=False, loglevel="FATAL")


def align(samples: npt.ArrayLike, rate: int, words: Sequence[str]) -> list[tuple[float, float]] | None:
    """(start_s, end_s) of each of ``words`` in ``samples`` (mono), or ``None`` when it cannot align them."""
    import soxr

    keys = [_key(w) for w in words]
    if not keys or not all(k in _dictionary() for k in keys):
        return None
    mono = np.asarray(samples, dtype=np.float32).reshape(-1)
    pcm = (np.clip(soxr.resample(mono, rate, RATE), -1, 1) * 32767).astype(np.int16).tobytes()
    with _LOCK:  # one decoder per process, used by one thread at a time
        decoder = _decoder()
        try:
            decoder.set_align_text(" ".join(keys))
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            segments = decoder.seg()  # None: no alignment found
            found = [
                (s.word.split("(", 1)[0], s.start_frame * FRAME_S, (s.end_frame + 1) * FRAME_S)
                for s in segments or ()
                if s.word not in _FILLERS
            ]
        except RuntimeError as error:  # no alignment found
            logger.debug("alignment failed: %s", error)
            return None
    if [w for w, _, _ in found] != keys:
        return None
    return [(a, b) for _, a, b in found]
