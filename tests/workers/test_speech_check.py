"""The automatic speech check on the real Piper voice: good speech passes; loops, stalls, cuts and noise
fail; a failing sentence is made again with the next seed; a job that never passes fails clearly."""

from __future__ import annotations

import numpy as np
import pytest

from gen_server.errors import GenerationFailed
from workers.backends.base import GenRequest
from workers.backends.piper import PiperBackend
from workers.speech_check import MAX_RETRIES, Verdict, check_sentence, checked

SENTENCE = "At six in the morning the first boats leave the harbor, loaded with nets and ice."


def check(text: str, wave: np.ndarray, rate: int, speed: float = 1.0) -> Verdict:
    return check_sentence(text, wave, rate, speed, "en")


@pytest.fixture(scope="module")
def spoken(piper: PiperBackend) -> tuple[np.ndarray, int]:
    clip = piper.generate(GenRequest(SENTENCE, seed=1))
    return clip.samples[0], clip.sample_rate


def test_good_speech_passes(piper: PiperBackend, spoken: tuple[np.ndarray, int]) -> None:
    wave, rate = spoken
    verdict = check(SENTENCE, wave, rate)
    assert verdict.passed, verdict.problems
    assert verdict.wer is not None and verdict.wer <= 0.5
    short = piper.generate(GenRequest("Yes.", seed=1))
    assert check("Yes.", short.samples[0], short.sample_rate) == Verdict(
        (), None, 1
    )  # too short to judge words


def test_a_loop_is_caught(spoken: tuple[np.ndarray, int]) -> None:
    """The last 2 s said again right after themselves, as a looping model does."""
    wave, rate = spoken
    looped = np.concatenate([wave, wave[-2 * rate :]])
    verdict = check(SENTENCE, looped, rate)
    assert any("loop" in p for p in verdict.problems), verdict.problems


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (
            lambda w, r: np.concatenate([w[: w.size // 2], np.zeros(2 * r, np.float32), w[w.size // 2 :]]),
            "silence",
        ),
        (lambda w, r: w[: w.size // 5], "cut"),
        (lambda w, r: np.random.default_rng(1).normal(0, 0.1, w.size).astype(np.float32), "word error rate"),
    ],
    ids=["stall", "truncated", "noise"],
)
def test_stalls_cuts_and_noise_are_caught(spoken: tuple[np.ndarray, int], damage: object, words: str) -> None:
    wave, rate = spoken
    verdict = check(SENTENCE, damage(wave, rate), rate)  # type: ignore[operator]
    assert any(words in p for p in verdict.problems), verdict.problems


def test_a_failing_sentence_is_made_again_with_the_next_seed(spoken: tuple[np.ndarray, int]) -> None:
    wave, rate = spoken
    tries: list[int] = []

    def make(retry: int) -> np.ndarray:
        tries.append(retry)
        return np.concatenate([wave, wave[-2 * rate :]]) if retry == 0 else wave  # a loop the first time

    out, verdict, retries = checked(SENTENCE, make, check, rate, 1.0)
    assert tries == [0, 1] and retries == 1 and verdict is not None and verdict.passed
    assert np.array_equal(out, wave)


def test_a_sentence_that_never_passes_fails_the_job(spoken: tuple[np.ndarray, int]) -> None:
    wave, rate = spoken
    with pytest.raises(GenerationFailed) as info:
        checked(SENTENCE, lambda retry: wave[: wave.size // 5], check, rate, 1.0)
    assert f"failed {MAX_RETRIES + 1} times" in info.value.message and "cut" in info.value.message


def test_piper_records_the_check_and_repeats_with_it(piper: PiperBackend) -> None:
    text = f"{SENTENCE} Then the market opens, and the whole town comes down to buy fish."
    request = GenRequest(text, seed=4, check=check)
    first, again = piper.generate(request), piper.generate(request)
    assert first.qc is not None and first.qc.passed and first.qc.sentences == 2
    assert first.qc.wer is not None and first.qc.wer <= 0.5
    assert np.array_equal(first.samples, again.samples)  # checked speech still repeats from its seed
    assert piper.generate(GenRequest(text, seed=4)).qc is None  # no check asked for
