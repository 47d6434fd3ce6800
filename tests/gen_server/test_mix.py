"""The scene mixer, numerically: placement, gains, fades, pans, sidechain ducking, mastering."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.audio.mix import (
    CONTROL_HZ,
    Clip,
    Ducking,
    MixResult,
    duck_gain_db,
    key_activity,
    master,
    mix,
)
from gen_server.audio.postprocess import loudness_lufs, true_peak_dbtp

RATE = 16000


def tone(seconds: float, amplitude: float = 0.1, freq: float = 440.0, rate: int = RATE) -> Audio:
    t = np.arange(round(seconds * rate)) / rate
    return Audio.mono(amplitude * np.sin(2 * np.pi * freq * t), rate)


def noise(seconds: float, amplitude: float = 0.3, rate: int = RATE, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio.mono(amplitude * rng.standard_normal(round(seconds * rate)), rate)


def rms_db(x: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


# ----------------------------------------------------------------------------------------- placement


@pytest.mark.parametrize("start_s", [0.0, 0.123456, 1.0 / 48000, 2.5])
def test_placement_is_sample_exact(start_s: float) -> None:
    rate = 48000
    impulse = np.zeros(100, dtype=np.float32)
    impulse[0] = 0.5
    result = mix([Clip(Audio.mono(impulse, rate), start_s)], sample_rate=rate, channels=2)
    at = round(start_s * rate)
    left, right = result.audio.samples
    assert np.flatnonzero(left).tolist() == [at]
    assert left[at] == pytest.approx(0.5, abs=1e-6) and right[at] == pytest.approx(0.5, abs=1e-6)
    assert result.placements[0].start == at and result.placements[0].stop == at + 100
    assert result.audio.frames == at + 100


def test_clips_sum_and_the_mix_ends_with_the_last_clip() -> None:
    a = Audio.mono(np.full(RATE, 0.25), RATE)
    b = Audio.mono(np.full(RATE // 2, 0.125), RATE)
    out = mix([Clip(a, 0.0), Clip(b, 0.75)], sample_rate=RATE, channels=1).audio.samples[0]
    assert out.size == round(1.25 * RATE)
    assert out[: round(0.75 * RATE)] == pytest.approx(0.25)
    assert out[round(0.75 * RATE) : RATE] == pytest.approx(0.375)
    assert out[RATE:] == pytest.approx(0.125)


def test_gain_fades_and_length_cut() -> None:
    flat = Audio.mono(np.full(RATE, 0.5), RATE)
    clip = Clip(flat, 0.0, gain_db=-20 * math.log10(2), fade_in_s=0.1, fade_out_s=0.2, length_s=0.8)
    out = mix([clip], sample_rate=RATE, channels=1).audio.samples[0]
    assert out.size == round(0.8 * RATE)  # cut to its length on the timeline
    assert out[0] == 0.0 and out[-1] == 0.0  # fades reach silence exactly
    assert out[round(0.1 * RATE) : round(0.6 * RATE)] == pytest.approx(0.25, abs=1e-6)  # -6.02 dB of 0.5
    assert out[round(0.05 * RATE)] == pytest.approx(0.125, abs=0.01)  # raised cosine: -6 dB at mid-fade


def test_mix_length_cuts_late_clips_with_a_declick() -> None:
    out = mix([Clip(Audio.mono(np.full(RATE, 0.5), RATE), 0.5)], sample_rate=RATE, channels=1, length_s=1.0)
    samples = out.audio.samples[0]
    assert samples.size == RATE
    assert samples[-1] == 0.0 and samples[round(0.6 * RATE)] == pytest.approx(0.5)
    assert out.placements[0].stop == RATE


def test_clips_are_resampled_to_the_mix_rate() -> None:
    out = mix([Clip(tone(1.0, rate=22050), 0.25)], sample_rate=48000, channels=1)
    assert out.audio.sample_rate == 48000
    assert out.audio.frames == round(0.25 * 48000) + 48000
    assert rms_db(out.audio.samples[0, 12000 + 4800 : 12000 + 43200]) == pytest.approx(
        rms_db(tone(1.0).samples), abs=0.05
    )


@pytest.mark.parametrize("pan", [-1.0, -0.5, 0.0, 0.3, 1.0])
def test_mono_pan_is_constant_power_with_unity_at_the_centre(pan: float) -> None:
    out = mix([Clip(Audio.mono(np.full(100, 0.5), RATE), 0.0, pan=pan)], sample_rate=RATE, channels=2)
    left, right = (float(out.audio.samples[c, 50]) / 0.5 for c in (0, 1))
    assert left**2 + right**2 == pytest.approx(2.0, abs=1e-5)
    if pan == 0.0:
        assert left == pytest.approx(1.0, abs=1e-6) and right == pytest.approx(1.0, abs=1e-6)
    if pan == -1.0:
        assert right == pytest.approx(0.0, abs=1e-6)


def test_bad_timelines_are_refused() -> None:
    with pytest.raises(ValueError, match="starts must be >= 0"):
        mix([Clip(tone(0.1), -0.5)], sample_rate=RATE)
    with pytest.raises(ValueError, match="nothing to mix"):
        mix([], sample_rate=RATE)


# ------------------------------------------------------------------------------------------- ducking

DUCK = Ducking(depth_db=12.0, attack_s=0.05, release_s=0.4, hold_s=0.1, lookahead_s=0.05)


def ducked(duck: Ducking = DUCK, key: Audio | None = None, key_start: float = 2.0) -> MixResult:
    """A 6 s 440 Hz bed ducked under ``key`` (1 s of noise by default) placed at ``key_start``."""
    bed = tone(6.0, amplitude=0.1)
    speech = key if key is not None else noise(1.0)
    return mix([Clip(bed, 0.0, duck=duck), Clip(speech, key_start, key=True)], sample_rate=RATE, channels=1)


def test_duck_depth_and_timing() -> None:
    """Key 2.0-3.0 s, lookahead 50 ms, attack 50 ms, hold 100 ms, release 400 ms, depth 12 dB."""
    curve = ducked().duck_db[0]

    def at(t: float) -> float:
        return float(curve[round(t * CONTROL_HZ)])

    assert np.all(curve[: round(1.949 * CONTROL_HZ)] == 0.0)  # untouched until lookahead before speech
    assert at(1.975) == pytest.approx(-6.0, abs=0.3)  # half way down, half way through the attack
    assert at(2.0 - 1 / CONTROL_HZ) == pytest.approx(-12.0, abs=1e-9)  # fully down when speech starts
    assert np.all(curve[round(2.0 * CONTROL_HZ) : round(3.1 * CONTROL_HZ)] == -12.0)  # speech + hold
    assert at(3.3) == pytest.approx(-6.0, abs=0.1)  # half way through the release
    release_done = round((3.1 + 0.4) * CONTROL_HZ)
    assert curve[release_done - 1] == pytest.approx(0.0, abs=0.05)
    assert np.all(curve[release_done:] == 0.0)


def test_ducked_bed_level_follows_the_curve() -> None:
    result = ducked()
    out = result.audio.samples[0]
    bed = tone(6.0, amplitude=0.1).samples[0]
    speech_part = slice(round(2.0 * RATE), round(3.0 * RATE))
    during = out[speech_part] - noise(1.0).samples[0]  # remove the key itself
    assert rms_db(during) - rms_db(bed[speech_part]) == pytest.approx(-12.0, abs=0.05)
    before = slice(0, round(1.9 * RATE))
    after = slice(round(3.6 * RATE), round(6.0 * RATE))
    assert np.allclose(out[before], bed[before], atol=1e-6)
    assert np.allclose(out[after], bed[after], atol=1e-6)


def test_gaps_shorter_than_hold_do_not_pump() -> None:
    words = np.concatenate(
        [noise(0.3).samples[0], np.zeros(round(0.08 * RATE)), noise(0.3, seed=1).samples[0]]
    )
    curve = ducked(key=Audio.mono(words, RATE)).duck_db[0]
    assert np.all(curve[round(2.0 * CONTROL_HZ) : round(2.68 * CONTROL_HZ)] == -12.0)


def test_quiet_key_below_threshold_does_not_duck() -> None:
    key = np.concatenate([noise(0.5).samples[0], 1e-3 * noise(1.0, seed=2).samples[0]])  # -50 dB tail
    active = key_activity(key, RATE, threshold_db=-35.0)
    assert active[: round(0.5 * CONTROL_HZ)].all()
    assert not active[round(0.5 * CONTROL_HZ) :].any()


def test_no_key_or_zero_depth_leaves_the_bed_alone() -> None:
    bed = tone(2.0)
    alone = mix([Clip(bed, 0.0, duck=DUCK)], sample_rate=RATE, channels=1)
    assert np.array_equal(alone.audio.samples, bed.samples)
    assert not alone.duck_db[0].any()
    flat = duck_gain_db(np.ones(100, dtype=bool), Ducking(depth_db=0.0))
    assert not flat.any()


def test_ducking_starts_at_its_target_when_speech_opens_the_scene() -> None:
    curve = ducked(key_start=0.0).duck_db[0]
    assert curve[0] == -12.0


def test_ducking_improves_speech_to_bed_ratio_by_its_depth() -> None:
    """Speech over a loud noise bed: the speech-window SNR rises by the duck depth."""
    bed = noise(8.0, amplitude=0.3, seed=5)
    speech = noise(3.0, amplitude=0.1, seed=6)
    plain = mix([Clip(bed, 0.0), Clip(speech, 2.0, key=True)], sample_rate=RATE, channels=1)
    deep = Ducking(depth_db=18.0)
    duck = mix([Clip(bed, 0.0, duck=deep), Clip(speech, 2.0, key=True)], sample_rate=RATE, channels=1)
    window = slice(round(2.1 * RATE), round(4.9 * RATE))
    bed_plain = plain.audio.samples[0, window] - speech.samples[0, round(0.1 * RATE) : round(2.9 * RATE)]
    bed_duck = duck.audio.samples[0, window] - speech.samples[0, round(0.1 * RATE) : round(2.9 * RATE)]
    assert rms_db(bed_plain) - rms_db(bed_duck) == pytest.approx(18.0, abs=0.05)


# ----------------------------------------------------------------------------------------- mastering


@pytest.mark.parametrize("target", [-16.0, -14.0, -23.0])
def test_master_hits_the_loudness_target_within_half_a_db(target: float) -> None:
    bed = noise(8.0, amplitude=0.05, seed=3)
    speech = noise(4.0, amplitude=0.4, seed=4)
    summed = mix(
        [Clip(bed, 0.0, duck=Ducking()), Clip(speech, 2.0, key=True), Clip(tone(1.0, 0.9, 1000.0), 6.5)],
        sample_rate=RATE,
        channels=2,
    ).audio
    out = master(summed, target, -1.0)
    assert out.samples.shape == summed.samples.shape
    assert abs(loudness_lufs(out) - target) <= 0.5
    assert true_peak_dbtp(out) <= -1.0 + 1e-3


def test_master_limits_peaks_and_still_reaches_the_target() -> None:
    """Sparse loud clicks over a quiet bed: plain gain would clip, the limiter keeps the ceiling."""
    quiet = noise(6.0, amplitude=0.02, seed=7).samples[0].copy()
    quiet[:: RATE // 2] = 0.9
    out = master(Audio.mono(quiet, RATE), -14.0, -1.0)
    assert abs(loudness_lufs(out) - (-14.0)) <= 0.5
    assert true_peak_dbtp(out) <= -1.0 + 1e-3
