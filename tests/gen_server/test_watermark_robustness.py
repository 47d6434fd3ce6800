"""Robustness of the keyed watermark against the attacks in the watermark issue.

60 synthetic clips of 10-30 s (20 speech-like, 20 tonal music-like, 20 noise-like) are marked and
attacked with: resampling to 16 kHz and 44.1 kHz, gain +6 dB and -6 dB, a 3 s excerpt at a random
offset (3 per clip), MP3 and Opus at 64 kbit/s (through our own encode/decode) and white noise at
25 dB SNR. Requirements asserted (recovery = the exact payload comes back):

* speech-like and noise-like: >= 95 % after resample/gain/crop, >= 90 % after MP3/Opus/noise;
* tonal music-like: >= 80 % after each attack;
* SNR of marked vs original >= 25 dB on every clip;
* false detections on >= 5,000 unmarked 3 s excerpts <= 5 (1 in 1,000).

Recovery for excerpts of 1.5, 3, 5 and 10 s is printed, not asserted. Run with ``-s`` to see the
tables (they are printed with capture disabled, so CI logs show them too).

The suite runs a quick size (6 clips per family, 1,000 unmarked excerpts, at most 1 false detection:
about 45 s of CPU); the full measurement above (20 clips per family, 5,000 excerpts, 2-3 minutes) runs
with ``SOUNDRY_WATERMARK_TRIALS=full`` (the README's benchmark section). Measured on the full size
(AMD EPYC, 2026-12-03): speech and noise 100 % after every attack, music 96.7-100 %, 0 false
detections in 5,000 (pilot score p99 3.79, max 4.64).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest
from scipy import signal

from gen_server.audio.encode import decode, encode
from gen_server.audio.postprocess import resample
from gen_server.audio.types import Audio
from gen_server.audio.watermark import KeyedWatermarker

FloatArray = npt.NDArray[np.float64]

FULL = os.environ.get("SOUNDRY_WATERMARK_TRIALS") == "full"
CLIPS_PER_FAMILY = 20 if FULL else 6
CROPS_PER_CLIP = 3
FALSE_POSITIVE_TRIALS = 5000 if FULL else 1000
EXCERPT_LENGTHS_S = (1.5, 3.0, 5.0, 10.0)
FAMILIES = ("speech", "music", "noise")
ATTACKS = (
    "resample_16k",
    "resample_44k",
    "gain_+6dB",
    "gain_-6dB",
    "crop_3s",
    "mp3_64k",
    "opus_64k",
    "noise_25dB",
)
LOSSY = ("mp3_64k", "opus_64k", "noise_25dB")
REQUIRED = {
    "speech": {a: (0.90 if a in LOSSY else 0.95) for a in ATTACKS},
    "noise": {a: (0.90 if a in LOSSY else 0.95) for a in ATTACKS},
    "music": dict.fromkeys(ATTACKS, 0.80),
}

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


# ------------------------------------------------------------------------------------ test signals


def _resonator(freq: float, bandwidth: float, sr: int) -> tuple[list[float], list[float]]:
    r = float(np.exp(-np.pi * bandwidth / sr))
    return [1 - r], [1.0, -2 * r * float(np.cos(2 * np.pi * freq / sr)), r * r]


def speech_like(rng: np.random.Generator, duration_s: float, sr: int = 22050) -> FloatArray:
    """Phrases of syllables: a glottal pulse train through 4 formants (vowels) or band-passed noise
    (fricatives), with syllabic envelopes, pitch movement and pauses between phrases."""
    n = int(duration_s * sr)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        end = min(n, pos + int(rng.uniform(1.0, 3.5) * sr))
        f0 = rng.uniform(90, 220)
        while pos < end - 64:
            length = min(end, pos + int(rng.uniform(0.12, 0.32) * sr)) - pos
            t = np.arange(length) / sr
            if rng.random() < 0.2:
                lo = rng.uniform(2500, 4500)
                sos = signal.butter(4, [lo, min(2.2 * lo, 0.45 * sr)], "bandpass", fs=sr, output="sos")
                seg = signal.sosfilt(sos, rng.standard_normal(length)) * 0.25
            else:
                pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t + rng.uniform(0, 6)))
                pulses = np.diff(np.floor(np.cumsum(pitch / sr)), prepend=0.0)
                exc = signal.lfilter([1.0], [1.0, -0.95], pulses) + 0.02 * rng.standard_normal(length)
                formants = (rng.uniform(300, 850), rng.uniform(850, 2300), rng.uniform(2300, 3200), 3800.0)
                seg = sum(
                    signal.lfilter(*_resonator(f, 60 + 40 * k, sr), exc) / (1 + k)
                    for k, f in enumerate(formants)
                )
            out[pos : pos + length] += seg * np.sin(np.pi * t * sr / length) ** 0.7 * rng.uniform(0.5, 1.0)
            pos += length
        pos = end + int(rng.uniform(0.15, 0.7) * sr)
    return 0.5 * out / (np.max(np.abs(out)) + 1e-12)


def music_like(rng: np.random.Generator, duration_s: float, sr: int = 32000) -> FloatArray:
    """Sparse tonal music: harmonic notes with attack/decay envelopes, either a single melody line
    (half the clips) or chords with a bass, on a scale, with rests."""
    n = int(duration_s * sr)
    out = np.zeros(n)
    sparse = rng.random() < 0.5
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    root = int(rng.integers(45, 57))
    beat = rng.uniform(0.3, 0.7)
    t0 = 0.0
    while t0 < duration_s:
        dur = beat * rng.choice([1, 1, 2, 2, 3, 4])
        chord = root + scale[rng.integers(0, 7)] + 12 * int(rng.integers(0, 2))
        voices = [0] if sparse else [0, 4, 7, 12][: int(rng.integers(2, 5))]
        notes = [chord + v + (12 if sparse and rng.random() < 0.5 else 0) for v in voices]
        if not sparse:
            notes.append(chord - 12)
        for midi in notes:
            freq = 440 * 2 ** ((midi - 69) / 12)
            start = int(t0 * sr)
            length = min(int(dur * sr * rng.uniform(0.8, 1.1)), n - start)
            if length <= 64:
                continue
            t = np.arange(length) / sr
            harmonics = int(min(12, 0.4 * sr // freq))
            amps = rng.uniform(0.5, 1.0, harmonics) / np.arange(1, harmonics + 1) ** rng.uniform(0.8, 2.0)
            phase = (
                2
                * np.pi
                * freq
                * np.cumsum(1 + 0.003 * np.sin(2 * np.pi * 5 * t) * (rng.random() < 0.5))
                / sr
            )
            tone = sum(a * np.sin((h + 1) * phase + rng.uniform(0, 6)) for h, a in enumerate(amps))
            env = np.exp(-t / rng.uniform(0.3, 2.5))
            attack = min(length, int(rng.uniform(0.005, 0.05) * sr))
            env[:attack] *= np.linspace(0, 1, attack)
            release = min(length, int(0.05 * sr))
            env[-release:] *= np.linspace(1, 0, release)
            out[start : start + length] += tone * env * rng.uniform(0.3, 1.0)
        t0 += dur + (beat * rng.uniform(0, 1.5) if sparse and rng.random() < 0.3 else 0.0)
    return 0.5 * out / (np.max(np.abs(out)) + 1e-12)


def noise_like(rng: np.random.Generator, duration_s: float, sr: int = 24000) -> FloatArray:
    """Filtered noise bursts (random bands, attacks and decays), over a modulated noise bed in most
    clips: rain, wind, impacts, hiss."""
    n = int(duration_s * sr)
    out = np.zeros(n)
    if rng.random() < 0.6:
        lo = rng.uniform(100, 1000)
        sos = signal.butter(2, [lo, min(0.45 * sr, lo * rng.uniform(3, 20))], "bandpass", fs=sr, output="sos")
        mod = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * np.arange(n) / sr)
        out += signal.sosfilt(sos, rng.standard_normal(n)) * mod * rng.uniform(0.1, 0.5)
    pos = 0
    while pos < n - 64:
        length = min(int(rng.uniform(0.05, 2.0) * sr), n - pos)
        lo = rng.uniform(80, 4000)
        sos = signal.butter(
            2, [lo, min(0.45 * sr, lo * rng.uniform(1.5, 10))], "bandpass", fs=sr, output="sos"
        )
        env = np.exp(-np.arange(length) / (length * rng.uniform(0.2, 1.0)))
        attack = max(1, int(rng.uniform(0.002, 0.1) * length))
        env[:attack] *= np.linspace(0, 1, attack)
        out[pos : pos + length] += (
            signal.sosfilt(sos, rng.standard_normal(length)) * env * rng.uniform(0.3, 1.0)
        )
        pos += max(64, int(length * rng.uniform(0.3, 1.5)))
    return 0.5 * out / (np.max(np.abs(out)) + 1e-12)


GENERATORS: dict[str, tuple[Callable[[np.random.Generator, float, int], FloatArray], int]] = {
    "speech": (speech_like, 22050),
    "music": (music_like, 32000),
    "noise": (noise_like, 24000),
}


# ------------------------------------------------------------------------------------ attacks


def excerpt(audio: Audio, rng: np.random.Generator, seconds: float) -> Audio:
    n = min(audio.frames, round(seconds * audio.sample_rate))
    start = int(rng.integers(0, audio.frames - n + 1))
    return Audio(audio.samples[:, start : start + n], audio.sample_rate)


def attack(audio: Audio, name: str, rng: np.random.Generator) -> Audio:
    if name == "resample_16k":
        return resample(audio, 16000)
    if name == "resample_44k":
        return resample(audio, 44100)
    if name.startswith("gain_"):  # float gain: +6 dB may exceed full scale, as in a mixer
        return Audio(audio.samples * 10 ** (float(name[5:-2]) / 20), audio.sample_rate)
    if name == "mp3_64k":
        return decode(encode(audio, "mp3", bitrate_kbps=64))
    if name == "opus_64k":
        return decode(encode(audio, "ogg", bitrate_kbps=64))
    if name == "noise_25dB":
        power = float(np.mean(audio.samples.astype(np.float64) ** 2))
        noise = rng.standard_normal(audio.samples.shape) * np.sqrt(power / 10**2.5)
        return Audio(audio.samples + noise, audio.sample_rate)
    raise ValueError(name)


# ------------------------------------------------------------------------------------ the run


@dataclass
class Results:
    recovered: dict[str, dict[str, list[bool]]] = field(default_factory=dict)
    by_length: dict[str, dict[float, list[bool]]] = field(default_factory=dict)
    snr_db: dict[str, list[float]] = field(default_factory=dict)
    unmarked16: list[FloatArray] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def marker() -> KeyedWatermarker:
    return KeyedWatermarker(b"robustness-test-key")


@pytest.fixture(scope="module")
def results(marker: KeyedWatermarker) -> Results:
    res = Results()
    clock: dict[str, float] = dict.fromkeys(("generate", "embed", "attack", "detect"), 0.0)
    for family_index, family in enumerate(FAMILIES):
        make, sr = GENERATORS[family]
        res.recovered[family] = {a: [] for a in ATTACKS}
        res.by_length[family] = {s: [] for s in EXCERPT_LENGTHS_S}
        res.snr_db[family] = []
        for i in range(CLIPS_PER_FAMILY):
            rng = np.random.default_rng(10_000 * (family_index + 1) + i)
            t = time.process_time()
            original = Audio.mono(make(rng, float(rng.uniform(10.0, 30.0)), sr), sr)
            res.unmarked16.append(resample(original, 16000).samples[0].astype(np.float64))
            payload = int(rng.integers(0, 2**32))
            clock["generate"] += time.process_time() - t
            t = time.process_time()
            marked = marker.embed(original, payload)
            clock["embed"] += time.process_time() - t
            residual = marked.samples.astype(np.float64) - original.samples
            res.snr_db[family].append(
                float(10 * np.log10(np.sum(original.samples.astype(np.float64) ** 2) / np.sum(residual**2)))
            )
            for name in ATTACKS:
                for _ in range(CROPS_PER_CLIP if name == "crop_3s" else 1):
                    t = time.process_time()
                    attacked = excerpt(marked, rng, 3.0) if name == "crop_3s" else attack(marked, name, rng)
                    clock["attack"] += time.process_time() - t
                    t = time.process_time()
                    res.recovered[family][name].append(marker.detect(attacked).payload == payload)
                    clock["detect"] += time.process_time() - t
            for seconds in EXCERPT_LENGTHS_S:
                t = time.process_time()
                res.by_length[family][seconds].append(
                    marker.detect(excerpt(marked, rng, seconds)).payload == payload
                )
                clock["detect"] += time.process_time() - t
    res.seconds = clock
    return res


def _rate(values: list[bool]) -> float:
    return float(np.mean(values)) if values else float("nan")


def test_snr_of_every_clip(results: Results, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\nwatermark SNR (marked vs original), dB:")
        for family, values in results.snr_db.items():
            low, mid, high = min(values), float(np.median(values)), max(values)
            print(f"  {family:7s} min {low:5.1f}  median {mid:5.1f}  max {high:5.1f}")
        print("  CPU time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in results.seconds.items()))
    for family, values in results.snr_db.items():
        assert min(values) >= 25.0, (family, min(values))


def test_recovery_after_attacks(results: Results, capsys: pytest.CaptureFixture[str]) -> None:
    header = f"{'family':8s}" + "".join(f"{a:>14s}" for a in ATTACKS)
    lines = ["\nwatermark recovery (exact 32-bit payload), per family and attack:", header]
    for family in FAMILIES:
        row = results.recovered[family]
        lines.append(f"{family:8s}" + "".join(f"{100 * _rate(row[a]):11.1f} % " for a in ATTACKS))
        lines.append(f"{'  (n)':8s}" + "".join(f"{len(row[a]):14d}" for a in ATTACKS))
    with capsys.disabled():
        print("\n".join(lines))
    failures = [
        f"{family}/{name}: {100 * _rate(results.recovered[family][name]):.1f} % < {100 * need:.0f} %"
        for family in FAMILIES
        for name, need in REQUIRED[family].items()
        if _rate(results.recovered[family][name]) < need
    ]
    assert not failures, failures


def test_recovery_by_excerpt_length(results: Results, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["\nwatermark recovery from one excerpt per clip (no other attack), by length:"]
    lines.append(f"{'family':8s}" + "".join(f"{f'{s:g} s':>10s}" for s in EXCERPT_LENGTHS_S))
    for family in FAMILIES:
        row = results.by_length[family]
        lines.append(f"{family:8s}" + "".join(f"{100 * _rate(row[s]):8.1f} % " for s in EXCERPT_LENGTHS_S))
    with capsys.disabled():
        print("\n".join(lines))
    assert all(_rate(results.by_length[f][10.0]) >= 0.9 for f in FAMILIES)


def test_false_positives_on_unmarked_audio(
    results: Results, marker: KeyedWatermarker, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unmarked 3 s excerpts of the originals at 16 kHz, varied: random gain, half of them mixed
    with a second excerpt, half time-reversed (so repeats of the same material are rare)."""
    rng = np.random.default_rng(7)
    pool = results.unmarked16
    n = 3 * 16000
    false, scores = 0, []
    t = time.process_time()
    for _ in range(FALSE_POSITIVE_TRIALS):
        a = pool[int(rng.integers(len(pool)))]
        start = int(rng.integers(0, a.size - n))
        x = a[start : start + n] * rng.uniform(0.1, 3.0)
        if rng.random() < 0.5:
            b = pool[int(rng.integers(len(pool)))]
            start = int(rng.integers(0, b.size - n))
            x = x + b[start : start + n] * rng.uniform(0.1, 1.0)
        if rng.random() < 0.5:
            x = x[::-1]
        found = marker.detect(Audio.mono(x, 16000))
        false += found.detected
        scores.append(found.confidence)
    elapsed = time.process_time() - t
    with capsys.disabled():
        print(
            f"\nwatermark false detections: {false} in {FALSE_POSITIVE_TRIALS} unmarked 3 s excerpts "
            f"(pilot score p50 {np.median(scores):.2f}, p99 {np.percentile(scores, 99):.2f}, "
            f"max {max(scores):.2f}); {1000 * elapsed / FALSE_POSITIVE_TRIALS:.1f} ms CPU per detection"
        )
    assert false <= FALSE_POSITIVE_TRIALS // 1000
