"""Numeric tests of the post-processing functions (gen_server.audio.postprocess)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gen_server.audio import postprocess as pp
from gen_server.audio.types import Audio
from gen_server.contract.spec import PostProcess
from gen_server.errors import InvalidInput

SR = 32000


def sine(freq: float, duration_s: float, amp: float = 0.5, sr: int = SR, phase: float = 0.0) -> np.ndarray:
    t = np.arange(round(duration_s * sr)) / sr
    return amp * np.sin(2 * np.pi * freq * t + phase)


def speechy(seed: int = 0, duration_s: float = 3.0, sr: int = SR) -> Audio:
    """Noise bursts with a syllabic envelope and a crest factor like speech's."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * sr)
    t = np.arange(n) / sr
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    x = rng.standard_normal(n) * env * 0.1 + sine(180, duration_s, 0.05, sr) * env
    return Audio.mono(x, sr)


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * sr / x.size)


# ------------------------------------------------------------------------------------ DC and trim


def test_remove_dc_removes_offset_and_keeps_tone() -> None:
    x = sine(440, 1.0) + 0.2
    out = pp.remove_dc(Audio.mono(x, SR)).samples[0]
    assert abs(float(out.mean())) < 1e-4
    assert np.corrcoef(out[1000:-1000], x[1000:-1000] - 0.2)[0, 1] > 0.9999


def test_remove_dc_short_and_empty() -> None:
    assert pp.remove_dc(Audio.mono(np.full(10, 0.3), SR)).samples.max() < 1e-6
    assert pp.remove_dc(Audio(np.zeros((1, 0), np.float32), SR)).frames == 0


def test_trim_removes_added_silence() -> None:
    tone = sine(440, 1.0)
    x = np.concatenate([np.zeros(SR), tone, np.zeros(2 * SR)])
    out = pp.trim_silence(Audio.mono(x, SR), threshold_db=-50, pad_s=0.05)
    # the tone plus at most one 10 ms window and the 50 ms pad on each side
    assert 1.0 <= out.duration_s <= 1.0 + 2 * (0.05 + 0.01) + 1e-9
    assert np.max(np.abs(out.samples)) == pytest.approx(0.5, abs=1e-3)


def test_trim_is_relative_to_the_clip_level() -> None:
    quiet = np.concatenate([np.zeros(SR // 2), sine(440, 0.5, amp=1e-4), np.zeros(SR // 2)])
    out = pp.trim_silence(Audio.mono(quiet, SR))
    assert out.duration_s == pytest.approx(0.5 + 0.1, abs=0.03)


def test_trim_all_silence_never_empties() -> None:
    silent = Audio.mono(np.zeros(SR), SR)
    assert pp.trim_silence(silent).frames == SR
    assert pp.apply_chain(silent, PostProcess(), "speech").frames > 0


# ------------------------------------------------------------------------------------ fades


@pytest.mark.parametrize("shape", ["raised_cosine", "equal_power"])
def test_fades_are_zero_at_the_ends(shape: pp.FadeShape) -> None:
    a = Audio(np.ones((2, SR), np.float32), SR)
    out = pp.fade(a, 0.1, 0.25, shape=shape).samples
    assert np.all(out[:, 0] == 0.0) and np.all(out[:, -1] == 0.0)
    assert np.all(out[:, int(0.1 * SR) : SR - int(0.25 * SR)] == 1.0)
    assert np.all(np.diff(out[0, : int(0.1 * SR)]) >= 0)  # monotonic rise
    mid = out[0, int(0.05 * SR)]
    assert mid == pytest.approx(0.5 if shape == "raised_cosine" else math.sqrt(0.5), abs=0.01)


def test_fades_longer_than_clip_are_shortened() -> None:
    out = pp.fade(Audio(np.ones((1, 1000), np.float32), SR), 1.0, 1.0).samples[0]
    assert out[0] == 0.0 and out[-1] == 0.0 and out.max() <= 1.0
    with pytest.raises(ValueError):
        pp.fade(Audio(np.ones((1, 10), np.float32), SR), -1.0, 0.0)


# ------------------------------------------------------------------------------------ measurement


@pytest.mark.parametrize("amp_db", [0.0, -20.0])
def test_loudness_of_a_1khz_sine(amp_db: float) -> None:
    # BS.1770: a full-scale 1 kHz sine reads -3.01 LUFS (mono)
    x = sine(1000, 2.0, amp=10 ** (amp_db / 20), sr=48000)
    assert pp.loudness_lufs(Audio.mono(x, 48000)) == pytest.approx(amp_db - 3.01, abs=0.1)


def test_loudness_short_clip_and_silence() -> None:
    long = pp.loudness_lufs(Audio.mono(sine(1000, 2.0, amp=0.1), SR))
    short = pp.loudness_lufs(Audio.mono(sine(1000, 0.1, amp=0.1), SR))
    assert math.isfinite(short) and abs(short - long) < 0.5
    assert pp.loudness_lufs(Audio.mono(np.zeros(SR), SR)) == -math.inf
    assert pp.loudness_lufs(Audio(np.zeros((1, 0), np.float32), SR)) == -math.inf


def test_true_peak_sees_intersample_peaks() -> None:
    # fs/4 sine at 45 degrees: every sample is at 0.707 of the waveform's real peak
    x = sine(SR / 4, 0.5, amp=0.9, phase=math.pi / 4)
    a = Audio.mono(x, SR)
    sample_peak_db = 20 * math.log10(float(np.max(np.abs(x))))
    assert sample_peak_db == pytest.approx(20 * math.log10(0.9 * math.sqrt(0.5)), abs=0.01)
    assert pp.true_peak_dbtp(a) == pytest.approx(20 * math.log10(0.9), abs=0.3)
    assert pp.true_peak_dbtp(Audio.mono(np.zeros(100), SR)) == -math.inf


# ------------------------------------------------------------------------------------ level control


def voiced(seed: int = 0, duration_s: float = 3.0, sr: int = SR) -> Audio:
    """Harmonic tone (180 Hz, 12 harmonics) with a syllabic envelope: a speech/music-like crest."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(duration_s * sr)) / sr
    x = sum(np.sin(2 * np.pi * 180 * k * t + rng.uniform(0, 6)) / k for k in range(1, 13))
    env = 0.3 + 0.7 * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None)
    return Audio.mono(0.1 * x * env, sr)


@pytest.mark.parametrize(
    ("signal_kind", "target", "ceiling"),
    [("speechy", -16.0, -1.0), ("speechy", -23.0, -2.0), ("voiced", -14.0, -1.0), ("voiced", -10.0, -1.0)],
)
def test_normalize_loudness_meets_target_and_ceiling(signal_kind: str, target: float, ceiling: float) -> None:
    a = speechy(seed=int(-target)) if signal_kind == "speechy" else voiced(seed=int(-target))
    out = pp.normalize_loudness(a, target, ceiling)
    assert abs(pp.loudness_lufs(out) - target) <= 0.5
    assert pp.true_peak_dbtp(out) <= ceiling + 1e-6
    assert np.all(np.isfinite(out.samples))


def test_normalize_loudness_best_effort_when_unreachable() -> None:
    # noise bursts at -10 LUFS cannot stay under -1 dBTP without clipping: the ceiling wins
    a = speechy(seed=2)
    out = pp.normalize_loudness(a, -10.0, -1.0)
    assert pp.true_peak_dbtp(out) <= -1.0 + 1e-6
    assert pp.loudness_lufs(out) > pp.loudness_lufs(pp.peak_normalize(a, -1.0)) + 1.0


def test_limiter_reduces_gain_instead_of_clipping() -> None:
    # a steady 100 Hz tone 6 dB over the ceiling: the limiter must scale it, not flatten its tops
    x = sine(100, 2.0, amp=1.0)
    out = pp.limit_true_peak(Audio.mono(x, SR), -6.0).samples[0].astype(np.float64)
    mid = slice(SR // 2, 3 * SR // 2)
    gain = np.dot(out[mid], x[mid]) / np.dot(x[mid], x[mid])
    assert np.max(np.abs(out[mid] - gain * x[mid])) < 1e-3  # same waveform, scaled
    assert pp.true_peak_dbtp(Audio.mono(out, SR)) <= -6.0 + 1e-6


def test_limiter_handles_transients_transparently() -> None:
    rng = np.random.default_rng(3)
    x = sine(220, 3.0, amp=0.1) + 0.02 * rng.standard_normal(3 * SR)
    x[SR : SR + 40] += 0.9  # a click
    out = pp.normalize_loudness(Audio.mono(x, SR), -14.0, -1.0)
    assert abs(pp.loudness_lufs(out) - (-14.0)) <= 0.5
    assert pp.true_peak_dbtp(out) <= -1.0 + 1e-6
    # away from the click the signal is only scaled
    y = out.samples[0, 2 * SR :].astype(np.float64)
    ref = x[2 * SR :]
    assert np.corrcoef(y, ref)[0, 1] > 0.9999


def test_normalize_silence_is_unchanged() -> None:
    silent = Audio.mono(np.zeros(SR), SR)
    assert np.all(pp.normalize_loudness(silent, -14.0).samples == 0)
    assert np.all(pp.peak_normalize(silent).samples == 0)


def test_peak_normalize_hits_the_ceiling() -> None:
    out = pp.peak_normalize(speechy(seed=4), -1.0)
    assert pp.true_peak_dbtp(out) == pytest.approx(-1.0, abs=0.01)


# ------------------------------------------------------------------------------------ rate, channels


@pytest.mark.parametrize(("src", "dst"), [(44100, 16000), (16000, 48000), (32000, 22050)])
def test_resample_keeps_duration_and_frequency(src: int, dst: int) -> None:
    a = Audio.mono(sine(1000, 1.5, sr=src), src)
    out = pp.resample(a, dst)
    assert out.sample_rate == dst
    assert out.frames == round(a.frames * dst / src)
    assert dominant_hz(out.samples[0], dst) == pytest.approx(1000, abs=dst / out.frames * 1.5)
    assert float(np.sqrt(np.mean(out.samples[0, 100:-100] ** 2))) == pytest.approx(
        0.5 / math.sqrt(2), rel=0.01
    )


def test_resample_same_rate_is_identity() -> None:
    a = Audio.mono(sine(100, 0.1), SR)
    assert pp.resample(a, SR) is a
    with pytest.raises(ValueError):
        pp.resample(a, 0)


def test_to_channels() -> None:
    mono = Audio.mono(sine(100, 0.1), SR)
    stereo = pp.to_channels(mono, 2)
    assert stereo.channels == 2 and np.array_equal(stereo.samples[0], stereo.samples[1])
    lr = Audio(np.stack([np.ones(10), -np.ones(10)]).astype(np.float32), SR)
    assert np.allclose(pp.to_channels(lr, 1).samples, 0.0)
    assert pp.to_channels(stereo, 2) is stereo
    with pytest.raises(ValueError):
        pp.to_channels(mono, 0)


# ------------------------------------------------------------------------------------ chain


def padded(a: Audio, silence_s: float = 0.5) -> Audio:
    pad = np.zeros((a.channels, round(silence_s * a.sample_rate)), np.float32)
    return Audio(np.concatenate([pad, a.samples, pad], axis=1), a.sample_rate)


def test_chain_speech_defaults() -> None:
    a = padded(speechy(seed=5, duration_s=2.0))
    out = pp.apply_chain(Audio(a.samples + 0.05, a.sample_rate), PostProcess(), "speech")  # with DC
    assert out.duration_s < a.duration_s - 0.5  # silence trimmed
    assert abs(pp.loudness_lufs(out) - (-16.0)) <= 0.5
    assert pp.true_peak_dbtp(out) <= -1.0 + 1e-6
    assert abs(float(out.samples.mean())) < 1e-3
    assert out.samples[0, 0] == 0.0 and out.samples[0, -1] == 0.0


def test_chain_music_defaults() -> None:
    a = Audio(np.stack([sine(220, 4.0, 0.3), sine(330, 4.0, 0.3)]).astype(np.float32), SR)
    out = pp.apply_chain(a, PostProcess(), "music")
    assert out.frames == a.frames  # no trim for music
    assert abs(pp.loudness_lufs(out) - (-14.0)) <= 0.5
    assert pp.true_peak_dbtp(out) <= -1.0 + 1e-6
    assert np.all(out.samples[:, 0] == 0.0) and np.all(out.samples[:, -1] == 0.0)
    # default fade-out 0.5 s, capped at 10 % of the 4 s clip: it starts 0.4 s before the end
    env = np.abs(out.samples[0])
    steady = env[SR : 2 * SR].max()
    assert env[-int(0.39 * SR) :].max() < 0.999 * steady
    assert env[-int(0.45 * SR) : -int(0.41 * SR)].max() == pytest.approx(steady, rel=1e-3)


def test_chain_sfx_is_peak_normalised() -> None:
    out = pp.apply_chain(padded(speechy(seed=6, duration_s=1.0)), PostProcess(true_peak_dbtp=-3.0), "sfx")
    assert pp.true_peak_dbtp(out) == pytest.approx(-3.0, abs=0.05)


def test_chain_options_override_defaults() -> None:
    a = padded(speechy(seed=7, duration_s=2.0))
    opts = PostProcess(
        trim_silence=False, fade_in_s=0.0, fade_out_s=0.0, target_lufs=-20.0, sample_rate=22050, channels=2
    )
    out = pp.apply_chain(a, opts, "sfx")
    assert out.sample_rate == 22050 and out.channels == 2
    assert out.duration_s == pytest.approx(a.duration_s, abs=1e-3)
    assert abs(pp.loudness_lufs(out) - (-20.0)) <= 0.5


def test_chain_rejects_bad_input() -> None:
    with pytest.raises(InvalidInput):
        pp.apply_chain(Audio.mono(np.zeros(10), SR), PostProcess(), "podcast")
    with pytest.raises(InvalidInput):
        pp.apply_chain(Audio.mono(np.array([0.0, np.nan]), SR), PostProcess(), "music")


def test_chain_very_short_clip() -> None:
    out = pp.apply_chain(Audio.mono(sine(440, 0.05, 0.2), SR), PostProcess(), "music")
    assert out.frames > 0 and np.all(np.isfinite(out.samples))
    assert abs(pp.loudness_lufs(out) - (-14.0)) <= 0.5
