"""The Audio value type that crosses every boundary inside a worker, and the word timings it carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

WordSource = Literal["model", "aligned", "estimated"]
"""Where a word's timing came from: the model's own durations, a forced alignment of the audio against
the text, or an estimate spread over the sentence's sound by the words' lengths."""


@dataclass(frozen=True, slots=True)
class Word:
    """One spoken word and when it sounds, seconds from the start of its clip."""

    text: str
    start_s: float
    end_s: float
    source: WordSource

    def shifted(self, by_s: float) -> Word:
        return replace(self, start_s=self.start_s + by_s, end_s=self.end_s + by_s)


def shift_words(words: Sequence[Word], by_s: float, duration_s: float) -> tuple[Word, ...]:
    """``words`` moved by ``by_s`` and kept inside ``[0, duration_s]`` (trimming cuts only silence, so a
    word never falls outside entirely; one that would is dropped)."""
    out: list[Word] = []
    for word in words:
        w = word.shifted(by_s)
        start, end = max(0.0, w.start_s), min(duration_s, w.end_s)
        if end > start:
            out.append(replace(w, start_s=start, end_s=end))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SpeechQc:
    """The automatic speech check of a clip (``workers/speech_check.py``): the word error rate over the
    sentences whose words were compared, whether it passed, and how many sentences had to be made again."""

    wer: float | None
    passed: bool
    retries: int
    sentences: int


@dataclass(frozen=True, slots=True)
class Audio:
    """Float audio.

    Attributes:
        samples: ``[channels, frames]`` float32 in [-1, 1].
        sample_rate: Frames per second (Hz).
        words: Speech only: each word's timing in this clip (post-processing keeps them in step).
        qc: Speech only: the automatic check's outcome (``None``: not checked).
    """

    samples: npt.NDArray[np.float32]
    sample_rate: int
    words: tuple[Word, ...] = ()
    qc: SpeechQc | None = None

    def __post_init__(self) -> None:
        if self.samples.ndim != 2:
            raise ValueError(f"Audio.samples must be [channels, frames], got shape {self.samples.shape}")
        if self.samples.dtype != np.float32:
            object.__setattr__(self, "samples", self.samples.astype(np.float32))
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @classmethod
    def mono(cls, samples: npt.ArrayLike, sample_rate: int, words: Sequence[Word] = ()) -> Audio:
        """Wrap a 1-D signal as one channel."""
        return cls(np.asarray(samples, dtype=np.float32).reshape(1, -1), sample_rate, tuple(words))

    def with_samples(self, samples: npt.ArrayLike, sample_rate: int | None = None) -> Audio:
        """The same clip (and words) with new samples: a processing step that keeps the timeline."""
        data = np.ascontiguousarray(samples, dtype=np.float32)
        return Audio(data, sample_rate or self.sample_rate, self.words, self.qc)

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate
