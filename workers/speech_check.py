"""The automatic check of synthesized speech, sentence by sentence, with retries on the next seed.

Speech models sometimes loop, hallucinate, cut a sentence short or stall (XTTS users report all four on
long text). Each sentence a speech backend makes is checked before it is kept (and streamed):

* **words** (English, sentences of :data:`MIN_WORDS_FOR_WER` words or more): pocketsphinx's bundled US
  English model transcribes the sentence; the word error rate against the text (``jiwer``) must be at
  most :data:`MAX_WER`. pocketsphinx is a weak judge of good speech: on the bundled Piper voice fine
  sentences measure 0-0.78 ("of a long narration" heard as "bubble longer ration"; 5 of 40 sentences
  of one test text above 0.7), noise and wrong speech 1.0 or more; so the check fails only what the
  recogniser finds almost nothing of. Shorter sentences are too few words to judge and get the other
  checks only.
* **length** (every language): the sound must last between :data:`MIN_LENGTH_RATIO` and
  :data:`MAX_LENGTH_RATIO` times what the text needs at a natural rate (letters / 14 per second, at the
  job's speed): too long is a loop or babble, too short a truncation.
* **silence**: no pause inside the sentence longer than :data:`MAX_SILENCE_S` (stalls).
* **loop**: no stretch of :data:`LOOP_MIN_S` or more that repeats the audio just before it (log-mel
  frames with cosine similarity >= :data:`LOOP_SIMILARITY` at a fixed lag; the pauses between repeated
  words repeat too), unless the text itself repeats words. Measured: a 2 s repeat is found as 1.9 s;
  clean sentences of the bundled voice have at most 0.5 s.

A sentence that fails is made again with the next seed (the same seed sequence for the same job, so the
result still repeats), at most :data:`MAX_RETRIES` times; one that never passes fails the job with the
checks it failed. The result records ``qc`` (``wer`` over the checked sentences, ``passed``,
``retries``). ``SOUNDRY_SPEECH_QC=off`` skips all of it; random-weight dev models (noise by design)
are not checked.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gen_server.audio import SpeechQc
from gen_server.errors import GenerationFailed
from workers.timings import sound_span, sounding

logger = logging.getLogger(__name__)

MAX_WER = 0.95
MIN_WORDS_FOR_WER = 6
CHARS_PER_S = 14.0
"""Letters per second of natural English-like speech (LJSpeech and the bundled voice: ~14)."""
MIN_LENGTH_RATIO, MAX_LENGTH_RATIO = 0.3, 3.0
MIN_EXPECTED_S = 1.0
"""Sentences expected to last less than this get no length check (a word or two varies too much)."""
MAX_SILENCE_S = 1.5
LOOP_MIN_S = 1.2
LOOP_SIMILARITY = 0.95
MAX_RETRIES = 2
RETRY_SEED_STEP = 1_000_003
"""A retry's seed: the job's seed plus this times the retry number (a prime: far from the job's seed)."""

_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Verdict:
    """One sentence's check: ``problems`` empty when it passed; ``wer`` when words were compared."""

    problems: tuple[str, ...]
    wer: float | None
    words: int

    @property
    def passed(self) -> bool:
        return not self.problems


Checker = Callable[[str, npt.NDArray[np.floating], int, float], Verdict]
"""``(text, wave, sample_rate, speed) -> Verdict``."""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@functools.cache
def _recogniser() -> object:
    from pocketsphinx import Decoder

    return Decoder(samprate=16000, loglevel="FATAL")


def transcribe(wave: npt.NDArray[np.floating], rate: int) -> str:
    """Offline English transcription (pocketsphinx's US English model), lower case."""
    with _LOCK:
        return decode_utterance(_recogniser(), wave, rate)


def decode_utterance(decoder: Any, wave: npt.NDArray[np.floating], rate: int) -> str:
    """One utterance through a pocketsphinx ``decoder`` (the caller holds its lock): ``wave`` (mono, at
    ``rate``) as 16 kHz 16-bit PCM; the hypothesis, lower case ("" when there is none)."""
    import soxr

    pcm = (np.clip(soxr.resample(np.asarray(wave, np.float32), rate, 16000), -1, 1) * 32767).astype(np.int16)
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return str(hyp.hypstr).lower() if hyp else ""


def _longest_silence_s(wave: npt.NDArray[np.floating], rate: int) -> float:
    """The longest run of quiet 10 ms windows between sounding ones (:func:`workers.timings.sounding`)."""
    _, windows = sounding(wave, rate)
    return float(np.diff(windows).max() - 1) / 100 if windows.size > 1 else 0.0


def _loop_s(wave: npt.NDArray[np.floating], rate: int) -> float:
    """The longest stretch repeating the audio right before it (seconds), from log-mel frames."""
    import librosa

    hop = rate // 100
    mel = librosa.feature.melspectrogram(
        y=np.asarray(wave, np.float32), sr=rate, n_fft=8 * hop, hop_length=hop, n_mels=24
    )
    frames = np.log(mel + 1e-8).T
    frames = frames - frames.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(frames, axis=1) + 1e-9
    loud = norms > np.percentile(norms, 30)
    best = 0
    for lag in range(50, frames.shape[0] // 2):  # 0.5 s up to half the sentence
        a, b = frames[:-lag], frames[lag:]
        sim = (a * b).sum(axis=1) / (norms[:-lag] * norms[lag:])
        both_quiet = ~loud[:-lag] & ~loud[lag:]
        run = sounding = 0
        for same, quiet in zip(sim >= LOOP_SIMILARITY, both_quiet, strict=True):
            if same or quiet:  # the pauses between repeated words repeat too
                run, sounding = run + 1, sounding + int(same and not quiet)
                if sounding * 2 >= run:
                    best = max(best, run)
            else:
                run = sounding = 0
    return best / 100


def _repeats_words(words: list[str]) -> bool:
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return len(trigrams) != len(set(trigrams))


def check_sentence(
    text: str, wave: npt.NDArray[np.floating], rate: int, speed: float, language: str
) -> Verdict:
    """The checks above on one sentence's ``wave``."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    words = _words(text)
    problems: list[str] = []
    letters = sum(1 for c in text if c.isalnum())
    expected_s = letters / (CHARS_PER_S * max(speed, 0.1))
    start, end = sound_span(wave, rate)
    heard_s = end - start
    if expected_s >= MIN_EXPECTED_S:
        if heard_s > MAX_LENGTH_RATIO * expected_s:
            problems.append(f"{heard_s:.1f} s of sound for text needing about {expected_s:.1f} s (a loop?)")
        elif heard_s < MIN_LENGTH_RATIO * expected_s:
            problems.append(
                f"{heard_s:.1f} s of sound for text needing about {expected_s:.1f} s (cut short?)"
            )
    silence = _longest_silence_s(wave, rate)
    if silence > MAX_SILENCE_S:
        problems.append(f"a {silence:.1f} s silence inside the sentence")
    if heard_s >= 2 * LOOP_MIN_S and not _repeats_words(words):
        looped = _loop_s(wave[int(start * rate) : int(end * rate)], rate)
        if looped >= LOOP_MIN_S:
            problems.append(f"{looped:.1f} s of audio repeat themselves (a loop)")
    wer: float | None = None
    if language.lower().startswith("en") and len(words) >= MIN_WORDS_FOR_WER:
        import jiwer

        heard = transcribe(wave, rate)
        wer = float(jiwer.wer(" ".join(words), heard or "<nothing>"))
        if wer > MAX_WER:
            problems.append(f"word error rate {wer:.2f} > {MAX_WER} (heard: {heard[:80]!r})")
    return Verdict(tuple(problems), wer, len(words))


def checked(
    text: str,
    make: Callable[[int], npt.NDArray[np.floating]],
    check: Checker | None,
    rate: int,
    speed: float,
) -> tuple[npt.NDArray[np.floating], Verdict | None, int]:
    """Make one sentence (``make(retry)``; retry 0 first) until it passes ``check``.

    Returns:
        The wave, its verdict (``None`` unchecked) and the retries it took.

    Raises:
        GenerationFailed: the sentence failed every try (the message says which checks).
    """
    wave = make(0)
    if check is None:
        return wave, None, 0
    verdict = check(text, wave, rate, speed)
    retry = 0
    while not verdict.passed and retry < MAX_RETRIES:
        retry += 1
        logger.info(
            "speech check failed (%s); making the sentence again (retry %d)",
            "; ".join(verdict.problems),
            retry,
        )
        wave = make(retry)
        verdict = check(text, wave, rate, speed)
    if not verdict.passed:
        raise GenerationFailed(
            f"the speech check failed {MAX_RETRIES + 1} times for {text[:60]!r}: "
            f"{'; '.join(verdict.problems)} (SOUNDRY_SPEECH_QC=off skips the check)"
        )
    return wave, verdict, retry


def summary(verdicts: list[Verdict | None], retries: int) -> SpeechQc | None:
    """The job's ``qc``: word error rate over the sentences whose words were compared (weighted by words)."""
    done = [v for v in verdicts if v is not None]
    if not done:
        return None
    compared = [v for v in done if v.wer is not None]
    total = sum(v.words for v in compared)
    wer = sum(v.wer * v.words for v in compared if v.wer is not None) / total if total else None
    return SpeechQc(
        wer=None if wer is None else round(wer, 3), passed=True, retries=retries, sentences=len(done)
    )
