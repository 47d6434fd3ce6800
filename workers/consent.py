"""Consent verification of a new library voice: is the consent clip the phrase, read by the person of
the references, in usable sound, and is that person not a protected voice?

Four checks, all computed (a refusal names the first that failed, with its figure):

* **quality** (consent clip and each reference): length within :data:`MIN_SPEECH_S` (speech after
  trimming pauses) and :data:`MAX_CLIP_S`; clipping (:func:`clipped_fraction` at most
  :data:`MAX_CLIPPED`); a signal-to-noise estimate (:func:`snr_db` at least :data:`MIN_SNR_DB`); one
  speaker (:func:`speaker_consistency`: the clip split anywhere, both sides' speaker embeddings alike,
  at least :data:`MIN_CONSISTENCY`).
* **phrase** (English only): pocketsphinx's bundled US English model transcribes the consent clip;
  every word of the one-time code must be heard, in order (:func:`code_heard`), and the word error
  rate of the whole phrase must be at most :data:`MAX_PHRASE_WER` (tolerant: the small model mishears
  plain words; see :mod:`gen_server.voices.phrases`). ``phrase=None`` (a language the recognizer does
  not know): not checked, and the check says the voice needs an admin's approval.
* **speaker**: cosine similarity of the consent clip's speaker embedding with each reference's (GE2E,
  Resemblyzer's trained encoder); the lowest must reach :data:`SPEAKER_THRESHOLD` (every reference is
  the consenting person: references of someone else cannot ride along with one's own).
* **protected**: each reference's and the consent clip's embedding against the installation's protected
  voices; a similarity of :data:`PROTECTED_THRESHOLD` or more refuses.

Resemblyzer's ``VoiceEncoder`` is loaded once per process (lazily, under a lock); it works on 16 kHz
audio, so clips are resampled first (:func:`gen_server.audio.postprocess.resample`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gen_server.audio import Audio
from gen_server.audio.postprocess import resample
from gen_server.voices.phrases import DIGIT_WORDS

ENCODER_RATE = 16000

SPEAKER_THRESHOLD = 0.87
"""Lowest consent-vs-reference cosine similarity (GE2E embeddings) accepted as the same speaker.

Chosen in benchmarks/results/speaker_verification.md (``benchmarks/speaker_verification.py``): 288 clips
of 3-12 s at 8 kHz (telephone band) from 4 real recorded speakers (Asterisk's prompts), the bundled
Piper voice, 4 espeak-ng voices and pitch/formant-shifted copies of the real speakers; 330 genuine and
6,072 impostor pairs. Equal-error rate 2.47% (at 0.885). At 0.87, the lowest threshold accepting at most
1% of other people: false rejects 0.91%, false accepts 0.98% of other people (different real speakers
0.08%, synthetic vs real 0%, pitch-shifted copies 0%), 5.24% of all impostors (speed-shifted copies
of a speaker, pitch and formants moved together, pass 23-28%).
"""
PROTECTED_THRESHOLD = SPEAKER_THRESHOLD
"""A reference this similar to a protected voice is taken to be that person (same operating point)."""

MIN_SPEECH_S = 2.0
"""Speech (pauses trimmed by Resemblyzer's VAD) a clip needs: the encoder's windows are 1.6 s."""
MAX_CLIP_S = 60.0
MAX_CLIPPED = 0.001
"""Largest fraction of samples in flat runs at the clip's peak (:func:`clipped_fraction`)."""
MIN_SNR_DB = 15.0
MIN_CONSISTENCY = 0.75
"""Lowest similarity of the clip's two sides, split anywhere (:func:`speaker_consistency`: measured)."""
MAX_PHRASE_WER = 0.6

_HOMOPHONES = {
    "to": "two",
    "too": "two",
    "for": "four",
    "fore": "four",
    "ate": "eight",
    "won": "one",
    "oh": "zero",
}
"""What the recognizer may write for a spoken digit."""

_encoder: Any = None
_encoder_lock = threading.Lock()


@dataclass(frozen=True)
class Check:
    """One check's outcome. ``score``/``threshold``: the figure compared, when there is one."""

    name: str  # "quality" | "phrase" | "speaker" | "protected"
    passed: bool
    detail: str
    score: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": bool(self.passed),
            "detail": self.detail,
            "score": None if self.score is None else float(self.score),
            "threshold": None if self.threshold is None else float(self.threshold),
        }


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]

    @property
    def accepted(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> Check | None:
        """The first check that failed (what a refusal names), ``None`` when accepted."""
        return next((c for c in self.checks if not c.passed), None)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "checks": [c.to_dict() for c in self.checks]}


# -- the speaker encoder ------------------------------------------------------------------------------


def encoder() -> Any:
    """Resemblyzer's trained GE2E ``VoiceEncoder`` on the CPU, loaded once per process."""
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            from resemblyzer import VoiceEncoder

            _encoder = VoiceEncoder(device="cpu", verbose=False)
        return _encoder


def _mono16k(audio: Audio) -> npt.NDArray[np.float32]:
    mono = audio.samples.mean(axis=0, keepdims=True) if audio.channels > 1 else audio.samples
    out = resample(
        Audio(samples=np.ascontiguousarray(mono, dtype=np.float32), sample_rate=audio.sample_rate),
        ENCODER_RATE,
    )
    return np.asarray(out.samples[0], dtype=np.float32)


def speech_16k(audio: Audio) -> npt.NDArray[np.float32]:
    """The clip as the encoder hears it: 16 kHz mono, volume-normalized, long pauses cut (VAD)."""
    from resemblyzer import preprocess_wav

    return np.asarray(preprocess_wav(_mono16k(audio)), dtype=np.float32)


def _embed(wav16: npt.NDArray[np.float32], partials: bool = False) -> Any:
    enc = encoder()
    with _encoder_lock:  # one torch forward at a time per process (the encoder is shared)
        return enc.embed_utterance(wav16, return_partials=partials)


def speaker_embedding(audio: Audio) -> npt.NDArray[np.float32]:
    """The speaker's unit-norm 256-d GE2E embedding (Resemblyzer) of ``audio`` (any rate, any channels).

    Raises:
        ValueError: no speech left after trimming pauses.
    """
    wav = speech_16k(audio)
    if wav.size < ENCODER_RATE // 2:
        raise ValueError("no speech found in the clip")
    return np.asarray(_embed(wav), dtype=np.float32)


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


# -- quality ------------------------------------------------------------------------------------------


def clipped_fraction(samples: npt.NDArray[np.floating]) -> float:
    """Fraction of samples in runs of 3+ consecutive samples at (within 0.5 % of) the clip's peak.

    A clipped recording flattens its peaks; a scaled copy keeps the flat runs, so the peak of the clip
    is the reference, not full scale. Natural speech almost never holds its peak for 3 samples.
    """
    x = np.abs(np.asarray(samples, np.float32).reshape(-1))
    peak = float(x.max()) if x.size else 0.0
    if peak <= 0:
        return 0.0
    at = x >= peak * 0.995
    # samples whose run of at-peak neighbours is 3 or longer
    runs = at[:-2] & at[1:-1] & at[2:] if x.size >= 3 else np.zeros(0, bool)
    inside = np.zeros_like(at)
    for shift in range(3):
        inside[shift : shift + runs.size] |= runs
    return float(inside.mean())


def snr_db(samples: npt.NDArray[np.floating], rate: int) -> float:
    """A rough signal-to-noise estimate: loud (90th percentile) vs quiet (10th) 20 ms frames, in dB.

    Speech read aloud has pauses; the quietest frames are the room's noise. Digital silence counts
    as -120 dB (capped at 100 dB).
    """
    x = np.asarray(samples, np.float64).reshape(-1)
    n = max(1, rate // 50)
    frames = x[: x.size // n * n].reshape(-1, n)
    if frames.shape[0] < 10:
        return 0.0
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return float(min(100.0, np.percentile(level, 90) - np.percentile(level, 10)))


def speaker_consistency(wav16: npt.NDArray[np.float32]) -> tuple[float, npt.NDArray[np.float32]]:
    """How much the clip sounds like one voice throughout, and the whole clip's embedding.

    The encoder's 1.6 s windows (about 0.77 s apart) are split at every point leaving two windows or
    more on each side; the figure is the lowest cosine similarity of the two sides' mean embeddings
    (1.0 when the clip is too short to split). Measured on 8 kHz real speech (4 Asterisk speakers):
    24 single-speaker clips of 3-10 s scored 0.77-0.90; 18 clips of two speakers (4 s + 4 s) scored
    0.65-0.82, so :data:`MIN_CONSISTENCY` = 0.75 refused 12 of the 18 and none of the 24. A weak
    check: it catches a second voice that speaks for seconds, not a word.
    """
    embed, partials, _ = _embed(wav16, partials=True)
    windows = np.asarray(partials, np.float64)
    lowest = 1.0
    for k in range(2, len(windows) - 1):
        lowest = min(lowest, cosine(windows[:k].mean(axis=0), windows[k:].mean(axis=0)))
    return lowest, np.asarray(embed, np.float32)


def _quality(label: str, audio: Audio) -> tuple[str | None, npt.NDArray[np.float32] | None, str]:
    """A problem of one clip (or ``None``), its speaker embedding when usable, and its figures."""
    duration = audio.frames / audio.sample_rate
    if duration > MAX_CLIP_S:
        return f"{label} is {duration:.1f} s long (at most {MAX_CLIP_S:.0f} s)", None, ""
    mono = audio.samples.mean(axis=0)
    clipped = clipped_fraction(mono)
    if clipped > MAX_CLIPPED:
        return f"{label} is clipped ({clipped:.2%} of samples flat at the peak)", None, ""
    snr = snr_db(mono, audio.sample_rate)
    if snr < MIN_SNR_DB:
        return f"{label} is noisy (SNR about {snr:.0f} dB, at least {MIN_SNR_DB:.0f} dB)", None, ""
    wav = speech_16k(audio)
    speech = wav.size / ENCODER_RATE
    if speech < MIN_SPEECH_S:
        return f"{label} has {speech:.1f} s of speech (at least {MIN_SPEECH_S:.0f} s)", None, ""
    consistency, embedding = speaker_consistency(wav)
    if consistency < MIN_CONSISTENCY:
        return (
            f"{label} sounds like more than one speaker (window similarity {consistency:.2f}, "
            f"at least {MIN_CONSISTENCY})",
            None,
            "",
        )
    return None, embedding, f"{label}: {speech:.1f} s speech, SNR {snr:.0f} dB, one voice ({consistency:.2f})"


# -- the phrase ---------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return [_HOMOPHONES.get(w, w) for w in re.findall(r"[a-z']+", text.lower())]


def code_heard(expected: Sequence[str], heard: Sequence[str]) -> bool:
    """Whether the code's words occur in ``heard`` in order (other words may come between)."""
    it = iter(heard)
    return all(any(w == h for h in it) for w in expected)


_grammar_lock = threading.Lock()
_grammar_decoders: dict[tuple[str, ...], Any] = {}


def heard_digits(audio: Audio, vocabulary: Sequence[str]) -> list[str]:
    """The digit words pocketsphinx hears when it may only hear ``vocabulary`` (the phrase's other
    words) and digits, any number in any order: the expected code is not given to the decoder.

    Free recognition merges digits into other words ("six two" -> "sixty", "two eight nine" ->
    "midnight": 6 of 25 phrases of the Piper voice lost their code); with this grammar 24 of 25 came
    out whole (one with an extra digit, which :func:`code_heard` tolerates).
    """
    from workers.speech_check import decode_utterance

    words = tuple(sorted({w for w in vocabulary if w not in DIGIT_WORDS and re.fullmatch(r"[a-z]+", w)}))
    with _grammar_lock:
        decoder = _grammar_decoders.get(words)
        if decoder is None:
            from pocketsphinx import Decoder

            filler = f"<word> = {' | '.join(words)};" if words else "<word> = <NULL>;"
            grammar = (
                "#JSGF V1.0;\ngrammar consent;\npublic <consent> = <word>* <digit>+ <word>*;\n"
                f"{filler}\n<digit> = {' | '.join(DIGIT_WORDS)};\n"
            )
            decoder = Decoder(samprate=16000, loglevel="FATAL")
            decoder.add_jsgf_string("consent", grammar)
            decoder.activate_search("consent")
            _grammar_decoders[words] = decoder
        heard = decode_utterance(decoder, audio.samples.mean(axis=0), audio.sample_rate)
    return [w for w in heard.split() if w in DIGIT_WORDS]


def phrase_check(consent: Audio, phrase: str) -> Check:
    """The code by :func:`heard_digits` (every word, in order, at most 2 extra digits), the whole
    phrase by free recognition (word error rate at most :data:`MAX_PHRASE_WER`)."""
    from jiwer import wer

    from workers.speech_check import transcribe

    expected = _words(phrase)
    code = [w for w in expected if w in DIGIT_WORDS]
    heard_text = transcribe(consent.samples.mean(axis=0), consent.sample_rate)
    heard = _words(heard_text)
    error = float(wer(" ".join(expected), " ".join(heard))) if heard else 1.0
    digits = heard_digits(consent, expected)
    if not code_heard(code, digits) or len(digits) > len(code) + 2:
        return Check(
            "phrase",
            False,
            f"the code ({' '.join(code)}) was not heard: heard {' '.join(digits) or 'no digits'}",
            score=error,
            threshold=MAX_PHRASE_WER,
        )
    if error > MAX_PHRASE_WER:
        return Check(
            "phrase",
            False,
            f"the phrase does not match: word error rate {error:.2f} (at most {MAX_PHRASE_WER}); "
            f"recognized: {heard_text!r}",
            score=error,
            threshold=MAX_PHRASE_WER,
        )
    return Check(
        "phrase", True, f"phrase heard (word error rate {error:.2f}): {heard_text!r}", error, MAX_PHRASE_WER
    )


# -- the verdict --------------------------------------------------------------------------------------


def protected_match(references: Sequence[Audio], protected: Sequence[np.ndarray]) -> Check:
    """The ``protected`` check: the highest similarity of any reference to any protected voice."""
    if not protected:
        return Check("protected", True, "no protected voices", None, PROTECTED_THRESHOLD)
    embeddings = [speaker_embedding(r) for r in references]
    return _protected([(f"reference {i + 1}", e) for i, e in enumerate(embeddings)], protected)


def _protected(
    embeddings: Sequence[tuple[str, npt.NDArray[np.float32]]], protected: Sequence[np.ndarray]
) -> Check:
    if not protected:
        return Check("protected", True, "no protected voices", None, PROTECTED_THRESHOLD)
    best, which = -1.0, ""
    for label, e in embeddings:
        for j, p in enumerate(protected):
            s = cosine(e, p)
            if s > best:
                best, which = s, f"{label} vs protected voice {j + 1}"
    if best >= PROTECTED_THRESHOLD:
        return Check(
            "protected",
            False,
            f"this voice matches a protected voice ({which}: similarity {best:.2f} >= {PROTECTED_THRESHOLD})",
            best,
            PROTECTED_THRESHOLD,
        )
    return Check(
        "protected", True, f"no protected voice matches (highest {best:.2f})", best, PROTECTED_THRESHOLD
    )


def verify_consent(
    consent: Audio,
    references: Sequence[Audio],
    *,
    phrase: str | None,
    language: str,
    protected: Sequence[npt.NDArray[np.float32]] = (),
) -> Verdict:
    """All four checks on a new voice (see the module docstring); ``phrase``: the text that was to be
    read, ``None`` when ``language`` has no recognizer here (the voice then needs an admin's approval)."""
    if not references:
        raise ValueError("a voice needs at least one reference clip")
    clips = [("the consent clip", consent)] + [(f"reference {i + 1}", r) for i, r in enumerate(references)]
    problems, notes = [], []
    embeddings: list[tuple[str, npt.NDArray[np.float32] | None]] = []
    for label, clip in clips:
        problem, embedding, note = _quality(label, clip)
        if problem:
            problems.append(problem)
        else:
            notes.append(note)
        embeddings.append((label, embedding))
    checks = [Check("quality", not problems, "; ".join(problems or notes))]

    if embeddings[0][1] is None:  # nothing to recognize in: the refusal is the quality check's
        checks.append(Check("phrase", False, "not checked: the consent clip failed the quality check"))
    elif phrase is None:
        checks.append(
            Check(
                "phrase", True, f"not checked: no offline recognizer for '{language}'; needs admin approval"
            )
        )
    else:
        checks.append(phrase_check(consent, phrase))

    consent_embedding = embeddings[0][1]
    refs: list[tuple[str, npt.NDArray[np.float32]]] = [
        (label, e) for label, e in embeddings[1:] if e is not None
    ]
    if consent_embedding is None or len(refs) < len(references):
        checks.append(
            Check("speaker", False, "not compared: a clip failed the quality check", None, SPEAKER_THRESHOLD)
        )
    else:
        scores = [(label, cosine(consent_embedding, e)) for label, e in refs]
        label, low = min(scores, key=lambda s: s[1])
        figures = ", ".join(f"{lbl} {s:.2f}" for lbl, s in scores)
        if low < SPEAKER_THRESHOLD:
            detail = (
                f"the consent clip's speaker does not match {label} (similarity {low:.2f} < "
                f"{SPEAKER_THRESHOLD}; {figures})"
            )
        else:
            detail = f"same speaker ({figures}; at least {SPEAKER_THRESHOLD})"
        checks.append(Check("speaker", low >= SPEAKER_THRESHOLD, detail, low, SPEAKER_THRESHOLD))

    known: list[tuple[str, npt.NDArray[np.float32]]] = [
        (label, e) for label, e in embeddings if e is not None
    ]
    checks.append(_protected(known, protected))
    return Verdict(tuple(checks))
