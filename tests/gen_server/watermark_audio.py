"""Real recorded clips for the watermark measurements, arranged from Debian's recordings
(:mod:`tests.real_audio`): sparse effects (recorded events with silence between them, as AudioGen
makes), produced music excerpts and spoken phrases. Shared by the robustness and located-detection
tests; deterministic for a given ``rng``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

from tests import real_audio

FloatArray = npt.NDArray[np.float64]

EFFECTS_RATE = 44100
"""Sparse effects are arranged at 44.1 kHz (the rate of AudioGen-like output after post-processing)."""


def _trim(x: FloatArray, threshold_db: float = -50.0) -> FloatArray:
    """``x`` without leading and trailing samples below ``threshold_db`` of its peak."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0:
        return x[:0]
    loud = np.flatnonzero(np.abs(x) >= peak * 10 ** (threshold_db / 20))
    return x[loud[0] : loud[-1] + 1]


@cache
def _events() -> tuple[FloatArray, ...]:
    """Every recorded effect (Heroes, freedesktop theme) at 44.1 kHz, trimmed, peak 1, 0.1-4 s long."""
    out = []
    for path in real_audio.effect_files():
        mono, _ = real_audio.load(path, EFFECTS_RATE)
        x = _trim(mono.astype(np.float64))
        if x.size >= 0.1 * EFFECTS_RATE:
            x = x[: 4 * EFFECTS_RATE]
            fade = min(x.size // 4, EFFECTS_RATE // 50)
            x[-fade:] *= np.linspace(1.0, 0.0, fade)
            out.append(x / np.max(np.abs(x)))
    return tuple(out)


def sparse_effects(rng: np.random.Generator, duration_s: float) -> tuple[FloatArray, int]:
    """Recorded events separated by digital silence (0.4-2.5 s gaps), ``duration_s`` long, 44.1 kHz.

    Returns:
        ``(samples, sample_rate)``; the events take about a third to two thirds of the clip.
    """
    events = _events()
    n = round(duration_s * EFFECTS_RATE)
    out = np.zeros(n)
    pos = round(rng.uniform(0.0, 0.8) * EFFECTS_RATE)
    while pos < n:
        x = events[int(rng.integers(len(events)))] * rng.uniform(0.2, 0.9)
        take = min(x.size, n - pos)
        out[pos : pos + take] += x[:take]
        pos += take + round(rng.uniform(0.4, 2.5) * EFFECTS_RATE)
    if not np.any(out):  # the first gap took the whole clip: put one event at the start
        x = events[int(rng.integers(len(events)))]
        out[: min(n, x.size)] = x[: min(n, x.size)] * 0.5
    return out, EFFECTS_RATE


def active_seconds(x: FloatArray, sr: int, threshold_db: float = -45.0) -> float:
    """Seconds of ``x`` in 10 ms blocks whose RMS is within ``threshold_db`` of the loudest block's."""
    block = sr // 100
    n = x.size // block
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(x[: n * block].reshape(n, block) ** 2, axis=1))
    return float(np.sum(rms >= np.max(rms) * 10 ** (threshold_db / 20))) / 100


@cache
def _music() -> tuple[tuple[FloatArray, int], ...]:
    out = []
    for path in real_audio.music_files():
        mono, sr = real_audio.load(path)
        out.append((mono.astype(np.float64), sr))
    return tuple(out)


def real_music(rng: np.random.Generator, duration_s: float) -> tuple[FloatArray, int]:
    """A ``duration_s`` excerpt of Asterisk's music on hold (produced music, 8 kHz) at a random place."""
    tracks = _music()
    x, sr = tracks[int(rng.integers(len(tracks)))]
    n = min(x.size, round(duration_s * sr))
    start = int(rng.integers(0, x.size - n + 1))
    return x[start : start + n].copy(), sr


@cache
def _prompts() -> tuple[tuple[FloatArray, int], ...]:
    out = []
    for speaker in real_audio.SPEECH_PACKAGES:
        for path in real_audio.speech_files(speaker, min_seconds=1.5)[:60]:
            mono, sr = real_audio.load(path)
            out.append((mono.astype(np.float64), sr))
    return tuple(out)


def real_speech(rng: np.random.Generator, duration_s: float) -> tuple[FloatArray, int]:
    """Recorded prompts of one Asterisk speaker (8 kHz) one after another, ``duration_s`` long."""
    prompts = _prompts()
    per_speaker = len(prompts) // len(real_audio.SPEECH_PACKAGES)
    first = int(rng.integers(len(real_audio.SPEECH_PACKAGES))) * per_speaker
    sr = prompts[first][1]
    n = round(duration_s * sr)
    parts: list[FloatArray] = []
    total = 0
    while total < n:
        x = prompts[first + int(rng.integers(per_speaker))][0]
        parts.append(x)
        total += x.size
    return np.concatenate(parts)[:n], sr


def require_all() -> None:
    """Skip the calling test when a Debian package with the recordings cannot be fetched."""
    for package in (
        *real_audio.EFFECTS_PACKAGES,
        real_audio.MUSIC_PACKAGE,
        *real_audio.SPEECH_PACKAGES.values(),
    ):
        real_audio.require(package)
