"""Robustness of the keyed watermark against the attacks in the watermark issues (#9, #23).

Six families are marked and attacked: three synthetic (speech-like, tonal music-like, noise-like;
10-30 s) and three of real recordings from Debian (:mod:`tests.gen_server.watermark_audio`): spoken
Asterisk prompts (5 speakers, 8 kHz), Asterisk's music on hold (produced music, 8 kHz), and sparse
effects (recorded game and desktop-theme events with 0.4-2.5 s of digital silence between them,
5-15 s at 44.1 kHz, as AudioGen makes). Attacks: resampling to 16 kHz and 44.1 kHz, gain +6 dB and
-6 dB, a 3 s excerpt at a random offset (3 per clip; for effects only excerpts holding at least 1 s
of sound: a clip whose sound is too spread out to give one gives none, counted and printed), MP3 and
Opus at 64 kbit/s (through our own encode/decode) and white noise at 25 dB SNR.

Each attacked clip is looked at three ways, one table each: *decoded* (the payload read from the
mark alone, as anyone holding the key can), *the server's detection* (decoded, or matched among the
payloads in its watermark index: the clip's own and ``ISSUED`` others, 100,000 at full size), and
*against a claimed job* (a request naming the job: one payload tested). Asserted:

* decoded, speech-like, noise-like, real speech, real music: >= 95 % after resample/gain, >= 90 %
  after crop/MP3/Opus/noise (>= 95 % after crops for the synthetic ones); tonal music-like: >= 80 %;
* sparse effects, the server's detection at full size: #23's targets (>= 95 % after resample, gain,
  MP3/Opus/noise, >= 90 % after crops, ``EFFECTS_TARGET``, printed under each table); otherwise the
  measured floors in ``REQUIRED`` (decoded), ``REQUIRED_MATCHED`` (quick size) and
  ``REQUIRED_CLAIMED`` (against the claimed job);
* SNR of marked vs original >= 25 dB on every clip;
* false detections on unmarked 3 s excerpts (half real recordings), decoded or matched among the
  issued payloads, <= 1 in 1,000; claims of a random job confirmed, <= 1 in 1,000.

Recovery for excerpts of 1.5, 3, 5 and 10 s is printed, not asserted. Run with ``-s`` to see the
tables (they are printed with capture disabled, so CI logs show them too).

The suite runs a quick size (3 clips per synthetic family, 10 per real one, 2,000 other issued
payloads, 200 unmarked excerpts, excerpts of 3 and 10 s: about 60 s on 2 shared cores); the full
measurement (20 clips per family, 40 effects, 100,000 issued payloads, 5,000 excerpts, about 15
minutes) runs with ``SOUNDRY_WATERMARK_TRIALS=full``; its figures are in
benchmarks/results/watermark.md.
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
from gen_server.audio.watermark import IssuedPayloads, KeyedWatermarker, bands_for
from tests.gen_server import watermark_audio

FloatArray = npt.NDArray[np.float64]

FULL = os.environ.get("SOUNDRY_WATERMARK_TRIALS") == "full"
SYNTHETIC = ("speech", "music", "noise")
REAL = ("real_speech", "real_music", "effects")
FAMILIES = SYNTHETIC + REAL
CLIPS_PER_FAMILY = {f: (40 if f == "effects" else 20) if FULL else (10 if f in REAL else 3) for f in FAMILIES}
CROPS_PER_CLIP = 3
CROP_MIN_SOUND_S = 1.0  # a crop of sparse effects holds at least this much sound
FALSE_POSITIVE_TRIALS = 5000 if FULL else 200
ISSUED = 100_000 if FULL else 2_000
"""Other payloads in the server's watermark index while each clip is checked (a busy installation:
informed detection tests every one, and its threshold rises with their number)."""
EXCERPT_LENGTHS_S = (1.5, 3.0, 5.0, 10.0) if FULL else (3.0, 10.0)
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
EFFECTS_TARGET = {a: (0.90 if a == "crop_3s" else 0.95) for a in ATTACKS}
REQUIRED = {
    "speech": {a: (0.90 if a in LOSSY else 0.95) for a in ATTACKS},
    "noise": {a: (0.90 if a in LOSSY else 0.95) for a in ATTACKS},
    "music": dict.fromkeys(ATTACKS, 0.80),
    "real_speech": {a: (0.90 if a in (*LOSSY, "crop_3s") else 0.95) for a in ATTACKS},
    "real_music": {a: (0.90 if a in (*LOSSY, "crop_3s") else 0.95) for a in ATTACKS},
    # measured floors (full size, 125 Hz plan with two pilots: 97.5-100 % resample/gain, 95 % MP3 and
    # Opus, 88.9 % crops, 85 % noise; quick size: crops 81 %)
    "effects": {
        a: {"crop_3s": 0.75, "noise_25dB": 0.80, "mp3_64k": 0.90, "opus_64k": 0.90}.get(a, 0.95)
        for a in ATTACKS
    },
}
REQUIRED_MATCHED = {
    # the server's detection, full size: #23's targets (measured 100 % resample/gain/MP3, 97.5 % Opus,
    # 94.4 % crops, 95.0 % noise: on the target; 92.5-100 % over eight keys, key-dependent by one or two
    # of the 40 clips, benchmarks/results/watermark_effects.md); quick size: fewer clips
    "effects": (EFFECTS_TARGET if FULL else {a: (0.85 if a == "crop_3s" else 0.90) for a in ATTACKS}),
}
REQUIRED_CLAIMED = {
    # measured floors against a claimed job (full size: 100 % but Opus 97.5 % and crops 95.4 %; quick
    # size: fewer clips, lower floors)
    "effects": {
        a: (0.90 if a == "crop_3s" else 0.95) if FULL else (0.80 if a == "crop_3s" else 0.90) for a in ATTACKS
    }
}
"""#23's targets for sparse effects (printed under each table)."""

pytestmark = [pytest.mark.timeout(3600 if FULL else 900), pytest.mark.slow]


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


Maker = Callable[[np.random.Generator, float], tuple[FloatArray, int]]


def _synthetic(make: Callable[[np.random.Generator, float, int], FloatArray], sr: int) -> Maker:
    return lambda rng, duration_s: (make(rng, duration_s, sr), sr)


GENERATORS: dict[str, Maker] = {
    "speech": _synthetic(speech_like, 22050),
    "music": _synthetic(music_like, 32000),
    "noise": _synthetic(noise_like, 24000),
    "real_speech": watermark_audio.real_speech,
    "real_music": watermark_audio.real_music,
    "effects": watermark_audio.sparse_effects,
}
DURATION_S = {family: ((5.0, 15.0) if family == "effects" else (10.0, 30.0)) for family in FAMILIES}


# ------------------------------------------------------------------------------------ attacks


def excerpt(audio: Audio, rng: np.random.Generator, seconds: float, min_sound_s: float = 0.0) -> Audio | None:
    """A ``seconds`` excerpt at a random offset holding at least ``min_sound_s`` of sound; ``None`` when
    100 tries found none (a clip whose sound is too spread out to give such a crop)."""
    n = min(audio.frames, round(seconds * audio.sample_rate))
    for _ in range(100):
        start = int(rng.integers(0, audio.frames - n + 1))
        part = Audio(audio.samples[:, start : start + n], audio.sample_rate)
        mono = part.samples.mean(axis=0).astype(np.float64)
        if min_sound_s <= 0 or watermark_audio.active_seconds(mono, audio.sample_rate) >= min_sound_s:
            return part
    return None


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
    """Decoded (blind: anyone holding the key)."""
    matched: dict[str, dict[str, list[bool]]] = field(default_factory=dict)
    """Decoded, or matched among the issued payloads (the server's detection)."""
    claimed: dict[str, dict[str, list[bool]]] = field(default_factory=dict)
    """Decoded, or matched against the clip's own job (a request naming the job it claims)."""
    no_crop: dict[str, int] = field(default_factory=dict)
    by_length: dict[str, dict[float, list[bool]]] = field(default_factory=dict)
    snr_db: dict[str, list[float]] = field(default_factory=dict)
    unmarked16: dict[str, list[FloatArray]] = field(default_factory=dict)
    others: list[int] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def marker() -> KeyedWatermarker:
    return KeyedWatermarker(b"robustness-test-key")


@pytest.fixture(scope="module")
def results(marker: KeyedWatermarker) -> Results:
    res = Results()
    clock: dict[str, float] = dict.fromkeys(("generate", "embed", "attack", "detect"), 0.0)
    watermark_audio.require_all()
    others = np.random.default_rng(3).integers(0, 2**32, ISSUED).tolist()
    for family_index, family in enumerate(FAMILIES):
        make = GENERATORS[family]
        min_sound_s = CROP_MIN_SOUND_S if family == "effects" else 0.0
        res.recovered[family] = {a: [] for a in ATTACKS}
        res.matched[family] = {a: [] for a in ATTACKS}
        res.claimed[family] = {a: [] for a in ATTACKS}
        res.no_crop[family] = 0
        res.by_length[family] = {s: [] for s in EXCERPT_LENGTHS_S}
        res.snr_db[family] = []
        for i in range(CLIPS_PER_FAMILY[family]):
            rng = np.random.default_rng(10_000 * (family_index + 1) + i)
            t = time.process_time()
            x, sr = make(rng, float(rng.uniform(*DURATION_S[family])))
            original = Audio.mono(x, sr)
            mono16 = resample(original, 16000).samples[0].astype(np.float64)
            res.unmarked16.setdefault(family, []).append(mono16)
            payload = int(rng.integers(0, 2**32))
            issued = IssuedPayloads([*others, payload])
            clock["generate"] += time.process_time() - t
            t = time.process_time()
            marked = marker.embed(
                original, payload, bands=bands_for("sfx" if family == "effects" else family)
            )
            clock["embed"] += time.process_time() - t
            residual = marked.samples.astype(np.float64) - original.samples
            res.snr_db[family].append(
                float(10 * np.log10(np.sum(original.samples.astype(np.float64) ** 2) / np.sum(residual**2)))
            )
            for name in ATTACKS:
                for _ in range(CROPS_PER_CLIP if name == "crop_3s" else 1):
                    t = time.process_time()
                    attacked = (
                        excerpt(marked, rng, 3.0, min_sound_s)
                        if name == "crop_3s"
                        else attack(marked, name, rng)
                    )
                    clock["attack"] += time.process_time() - t
                    if attacked is None:
                        res.no_crop[family] += 1
                        continue
                    t = time.process_time()
                    found = marker.detect(attacked, issued)
                    res.recovered[family][name].append(found.payload == payload and not found.informed)
                    res.matched[family][name].append(found.payload == payload)
                    if found.payload != payload:  # a claim is one test: found whenever the index is
                        found = marker.detect(attacked, IssuedPayloads([payload]))
                    res.claimed[family][name].append(found.payload == payload)
                    clock["detect"] += time.process_time() - t
            for seconds in EXCERPT_LENGTHS_S:
                t = time.process_time()
                part = excerpt(marked, rng, seconds)
                assert part is not None
                res.by_length[family][seconds].append(marker.detect(part).payload == payload)
                clock["detect"] += time.process_time() - t
    res.seconds = clock
    res.others = others
    return res


def _rate(values: list[bool]) -> float:
    return float(np.mean(values)) if values else float("nan")


def test_snr_of_every_clip(results: Results, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\nwatermark SNR (marked vs original), dB:")
        for family, values in results.snr_db.items():
            low, mid, high = min(values), float(np.median(values)), max(values)
            print(f"  {family:11s} min {low:5.1f}  median {mid:5.1f}  max {high:5.1f}")
        print("  CPU time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in results.seconds.items()))
    for family, values in results.snr_db.items():
        assert min(values) >= 25.0, (family, min(values))


def _table(title: str, recovered: dict[str, dict[str, list[bool]]]) -> list[str]:
    lines = [title, f"{'family':12s}" + "".join(f"{a:>14s}" for a in ATTACKS)]
    for family in FAMILIES:
        row = recovered[family]
        lines.append(f"{family:12s}" + "".join(f"{100 * _rate(row[a]):11.1f} % " for a in ATTACKS))
        lines.append(f"{'  (n)':12s}" + "".join(f"{len(row[a]):14d}" for a in ATTACKS))
    lines.append(f"{'#23 effects':12s}" + "".join(f"{100 * EFFECTS_TARGET[a]:11.0f} % " for a in ATTACKS))
    return lines


def _shortfalls(
    recovered: dict[str, dict[str, list[bool]]], required: dict[str, dict[str, float]]
) -> list[str]:
    return [
        f"{family}/{name}: {100 * _rate(recovered[family][name]):.1f} % < {100 * need:.0f} %"
        for family, needs in required.items()
        for name, need in needs.items()
        if _rate(recovered[family][name]) < need
    ]


def test_recovery_after_attacks(results: Results, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _table(
        "\nwatermark recovery, decoded (the exact 32-bit payload; anyone holding the key):", results.recovered
    )
    lines += _table(
        f"\nwatermark recovery by the server: decoded, or matched among {ISSUED + 1:,} issued payloads:",
        results.matched,
    )
    lines += _table(
        "\nwatermark recovery against the job a request names (one payload tested):", results.claimed
    )
    spread = ", ".join(f"{f} {n}" for f, n in results.no_crop.items() if n)
    if spread:
        lines.append(
            f"crops not taken (no 3 s window of the clip holds {CROP_MIN_SOUND_S:g} s of sound): {spread}"
        )
    with capsys.disabled():
        print("\n".join(lines))
    failures = (
        _shortfalls(results.recovered, REQUIRED)
        + _shortfalls(results.matched, REQUIRED_MATCHED)
        + _shortfalls(results.claimed, REQUIRED_CLAIMED)
    )
    assert not failures, failures


def test_recovery_by_excerpt_length(results: Results, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["\nwatermark recovery from one excerpt per clip (no other attack), by length:"]
    lines.append(f"{'family':12s}" + "".join(f"{f'{s:g} s':>10s}" for s in EXCERPT_LENGTHS_S))
    for family in FAMILIES:
        row = results.by_length[family]
        lines.append(f"{family:12s}" + "".join(f"{100 * _rate(row[s]):8.1f} % " for s in EXCERPT_LENGTHS_S))
    with capsys.disabled():
        print("\n".join(lines))
    # effects: a random excerpt may be mostly silence (crops with sound are in the attack table)
    assert all(_rate(results.by_length[f][10.0]) >= 0.9 for f in FAMILIES if f != "effects")


def test_false_positives_on_unmarked_audio(
    results: Results, marker: KeyedWatermarker, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unmarked 3 s excerpts of the originals at 16 kHz (half of them real recordings: music, speech,
    effects with at least 1 s of sound), varied: random gain, half of them mixed with a second
    excerpt, half time-reversed (so repeats of the same material are rare)."""
    rng = np.random.default_rng(7)
    n = 3 * 16000

    def draw(families: tuple[str, ...]) -> FloatArray:
        pool = results.unmarked16[families[int(rng.integers(len(families)))]]
        a = pool[int(rng.integers(len(pool)))]
        for _ in range(100):
            start = int(rng.integers(0, a.size - n))
            if watermark_audio.active_seconds(a[start : start + n], 16000) >= 1.0:
                break
        return a[start : start + n]

    issued = IssuedPayloads(results.others)
    threshold = issued.threshold(marker.informed_tests)
    false, matched, best_matches = 0, 0, []
    claims, claimed = 0, 0  # a request naming a job: one payload tested (every 2nd excerpt in quick runs)
    claim_threshold = IssuedPayloads([0]).threshold(marker.informed_tests)
    t = time.process_time()
    for i in range(FALSE_POSITIVE_TRIALS):
        x = draw(REAL if i % 2 else SYNTHETIC) * rng.uniform(0.1, 3.0)
        if rng.random() < 0.5:
            x = x + draw(FAMILIES) * rng.uniform(0.1, 1.0)
        if rng.random() < 0.5:
            x = x[::-1]
        # with no false-alarm limit the informed step reports its best match, whatever its score
        audio = Audio.mono(x, 16000)
        found = marker.detect(audio, issued, false_alarm=1e9)
        if found.informed:
            best_matches.append(found.confidence)
            matched += found.confidence >= threshold
        else:
            false += found.detected
        if FULL or i % 2 == 0:
            claims += 1
            claimed += marker.detect(audio, IssuedPayloads([int(rng.integers(0, 2**32))])).detected
    elapsed = time.process_time() - t
    z = np.array(best_matches)
    with capsys.disabled():
        print(
            f"\nwatermark false detections in {FALSE_POSITIVE_TRIALS} unmarked 3 s excerpts: "
            f"{false} decoded, {matched} matched among {len(issued):,} issued payloads (best match's z "
            f"p50 {np.median(z):.2f}, p99 {np.percentile(z, 99):.2f}, max {z.max():.2f}; threshold "
            f"{threshold:.2f}); {claimed} of {claims} claims of a random job confirmed (threshold "
            f"{claim_threshold:.2f}); {1000 * elapsed / FALSE_POSITIVE_TRIALS:.1f} ms CPU per excerpt"
        )
    assert false + matched <= FALSE_POSITIVE_TRIALS // 1000
    assert claimed <= max(1, claims // 1000)
