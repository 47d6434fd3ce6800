"""The sentence loop every speech backend shares: make, check, stream, time, join.

Each segment (:func:`workers.text.segment_text`) is made by the backend's ``make(segment, index,
retry)``, checked as it is made (:func:`workers.speech_check.checked`: made again on the next seed when
the check fails), handed to the stream with its pause, timed by the backend's ``words_of(segment,
wave)`` (after it was streamed, so timing never delays the stream), and the sentences are joined with
their pauses into one clip that carries its words and the check's summary.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from gen_server.audio import Audio, Word
from workers import timings
from workers.backends.base import GenRequest, ProgressFn
from workers.speech_check import Verdict, checked, summary
from workers.text import Segment, join_segments, pause_after, with_pause

Make = Callable[[Segment, int, int], npt.NDArray[np.float32]]
"""``(segment, index, retry) -> wave`` (retry 0 first; a retry draws from its own seed)."""
WordsOf = Callable[[Segment, npt.NDArray[np.float32]], list[Word]]
"""``(segment, accepted wave) -> its words``, timed from the start of the wave."""


def speak(
    segments: Sequence[Segment],
    make: Make,
    words_of: WordsOf,
    request: GenRequest,
    sample_rate: int,
    progress: ProgressFn | None = None,
) -> Audio:
    """The clip of ``segments``, made one by one (see the module docstring)."""
    waves: list[npt.NDArray[np.float32]] = []
    words: list[list[Word]] = []
    verdicts: list[Verdict | None] = []
    retries = 0
    for i, segment in enumerate(segments):
        speed = float(request.speed) * segment.speed
        wave, verdict, tries = checked(
            segment.text, functools.partial(make, segment, i), request.check, sample_rate, speed
        )
        waves.append(wave)
        verdicts.append(verdict)
        retries += tries
        if request.on_audio is not None:
            piece = with_pause(wave, pause_after(segment, wave, sample_rate), sample_rate)
            request.on_audio(Audio.mono(piece, sample_rate))
        words.append(words_of(segment, wave))
        if progress is not None:
            progress((i + 1) / len(segments))
    pauses = [pause_after(s, w, sample_rate) for s, w in zip(segments, waves, strict=True)]
    samples = join_segments(waves, pauses, sample_rate)
    placed = timings.place(words, waves, pauses, sample_rate)
    return Audio(samples.reshape(1, -1), sample_rate, placed, summary(verdicts, retries))
