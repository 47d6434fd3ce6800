"""Directed speech through the real Piper voice: breaks, rate and pronunciations change the audio as asked."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import transcribe, words
from workers.backends.base import GenRequest
from workers.backends.piper import PiperBackend


def longest_silence_s(samples: np.ndarray, rate: int, db: float = -40.0) -> float:
    """The longest run of 10 ms windows quieter than ``db`` below the loudest, between sounds."""
    hop = rate // 100
    n = samples.size // hop
    power = (samples[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1)
    loud = np.flatnonzero(power >= power.max() * 10 ** (db / 10))
    return float(np.diff(loud).max() - 1) / 100 if loud.size > 1 else 0.0


@pytest.mark.parametrize(
    "marked",
    [
        "The cat sat [pause 500ms] on the mat.",
        '<speak>The cat sat <break time="500ms"/> on the mat.</speak>',
        '<speak>The cat sat <break time="0.5s"/> on the mat.</speak>',
    ],
)
def test_a_500_ms_break_is_heard_as_half_a_second(piper: PiperBackend, marked: str) -> None:
    """Measured: 0.54-0.57 s of silence at the break (the voice's own gap between words: 0.05-0.08 s)."""
    for seed in (1, 2):
        plain = piper.generate(GenRequest("The cat sat on the mat.", seed=seed))
        paused = piper.generate(GenRequest(marked, seed=seed))
        gap = longest_silence_s(paused.samples[0], paused.sample_rate)
        assert longest_silence_s(plain.samples[0], plain.sample_rate) < 0.15
        assert 0.45 <= gap <= 0.6, gap
        assert 0.35 <= paused.duration_s - plain.duration_s <= 0.75
        assert [w.text for w in paused.words] == [w.text for w in plain.words]


def test_prosody_rate_slows_only_its_part(piper: PiperBackend) -> None:
    text = "Counting one two three four five six."
    normal = piper.generate(GenRequest(f"<speak>{text}</speak>", seed=1))
    slow = piper.generate(GenRequest(f'<speak><prosody rate="slow">{text}</prosody></speak>', seed=1))
    fast = piper.generate(GenRequest(f'<speak><prosody rate="150%">{text}</prosody></speak>', seed=1))
    # rate 0.8 and 1.5 scale the voiced part (its silent edges stay): measured 1.14x and 0.72x
    assert slow.duration_s > 1.1 * normal.duration_s and fast.duration_s < normal.duration_s / 1.2


def test_say_as_and_sub_are_spoken_as_written_out(piper: PiperBackend) -> None:
    clip = piper.generate(
        GenRequest(
            '<speak>Chapter <say-as interpret-as="ordinal">3</say-as>, <sub alias="page">p.</sub> 9.</speak>',
            seed=1,
        )
    )
    assert [w.text for w in clip.words] == ["Chapter", "third,", "page", "nine."]


def test_a_lexicon_entry_changes_what_is_said(piper: PiperBackend) -> None:
    """pocketsphinx hears the respelling: 'red' said as 'green'."""
    text = "I like red apples and red cars."
    plain = words(transcribe(piper.generate(GenRequest(text, seed=1)).samples[0], 22050))
    respelled_clip = piper.generate(GenRequest(text, seed=1, lexicon=(("red", "green"),)))
    respelled = words(transcribe(respelled_clip.samples[0], respelled_clip.sample_rate))
    assert "red" in plain and "green" not in plain, plain
    assert "green" in respelled and "red" not in respelled, respelled
