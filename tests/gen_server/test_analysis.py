"""Tempo, beats, key and loudness range (gen_server/audio/analysis.py), exact tempo and loops
(gen_server/audio/looping.py) on click tracks, recorded-like noise and tones."""

from __future__ import annotations

import numpy as np
import pytest

from gen_server.audio import Audio
from gen_server.audio.analysis import detect_beats, detect_key, loudness_range_lu, seam
from gen_server.audio.looping import make_loop, music_crossfade_s, octave_fold, stretch_to_tempo

RATE = 32000


def click_track(
    bpm: float, seconds: float, *, rate: int = RATE, start_s: float = 0.13, seed: int = 0
) -> Audio:
    """Clicks on every beat over quiet noise, the first of every four accented (a low thump)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0.0, 0.01, int(seconds * rate))
    n = int(0.03 * rate)
    t = np.arange(n) / rate
    envelope = np.exp(-t / 0.005)
    beat = 0
    while (at := start_s + beat * 60.0 / bpm) < seconds - 0.05:
        k = round(at * rate)
        accent = beat % 4 == 0
        click = (0.8 if accent else 0.4) * np.sin(2 * np.pi * (1000 if accent else 2000) * t)
        if accent:
            click = click + 0.6 * np.sin(2 * np.pi * 60 * t)
        y[k : k + n] += (envelope * click)[: y.size - k]
        beat += 1
    return Audio(y[None, :].astype(np.float32), rate)


@pytest.mark.parametrize("bpm", [72.0, 96.0, 120.0, 137.5, 174.0])
def test_tempo_and_downbeats_of_click_tracks(bpm: float) -> None:
    found = detect_beats(click_track(bpm, 12.0), hint_bpm=None)
    assert found is not None
    assert abs(found.bpm - bpm) / bpm < 0.02, found.bpm
    # the accented beat is the downbeat; beats sit within 25 ms of the clicks (the onset's peak)
    bar = 4 * 60.0 / bpm
    phase = (found.downbeats - 0.13) / bar
    assert np.all(np.abs(phase - np.round(phase)) * bar < 0.025), found.downbeats[:4]


def test_time_stretch_lands_on_the_exact_tempo() -> None:
    made = click_track(117.0, 12.0)
    found = detect_beats(made, hint_bpm=124.0)
    assert found is not None
    stretched, factor = stretch_to_tempo(made, octave_fold(found.bpm, 124.0), 124.0)
    assert factor == pytest.approx(124.0 / 117.0, rel=0.01)
    assert stretched.duration_s == pytest.approx(12.0 / factor, rel=0.01)
    again = detect_beats(stretched, hint_bpm=124.0)
    assert again is not None and abs(again.bpm - 124.0) / 124.0 < 0.01, again.bpm


def test_octave_fold_takes_the_multiple_closest_to_the_target() -> None:
    assert octave_fold(61.0, 120.0) == 122.0
    assert octave_fold(240.0, 118.0) == 120.0
    assert octave_fold(100.0, 120.0) == 100.0


def test_music_loop_on_bar_lines_tiles_without_a_seam() -> None:
    bpm = 126.0
    made = click_track(bpm, 12.0)
    found = detect_beats(made, hint_bpm=bpm)
    assert found is not None
    bar = 4 * 60.0 / bpm
    loop, _ = make_loop(
        made,
        float(found.downbeats[0]) - 0.02,
        4 * bar,
        crossfade_s=music_crossfade_s(bpm),
        search_s=0.006,
        bar_s=bar,
    )
    assert loop.frames == round(4 * bar * RATE)
    tiled = Audio(np.tile(loop.samples, (1, 4)), RATE)
    measured = seam(tiled, bar_lines_s=np.arange(1, 16) * bar)
    assert measured.jump_ratio <= 1.0 and measured.flux_ratio <= 1.0, measured
    # the loop starts on its downbeat: the accented click is in its first 40 ms
    head = np.abs(loop.samples[0, : int(0.04 * RATE)]).max()
    assert head > 0.5


def test_sfx_loop_cut_at_a_quiet_point_tiles_without_a_seam() -> None:
    """Events separated by silence (a sparse effect): the wrap lands between events."""
    rng = np.random.default_rng(5)
    y = rng.normal(0, 0.002, 8 * RATE)
    for start in (0.4, 1.7, 2.9, 4.6, 5.5, 6.8):
        k = int(start * RATE)
        burst = rng.normal(0, 0.3, int(0.35 * RATE)) * np.hanning(int(0.35 * RATE))
        y[k : k + burst.size] += burst
    made = Audio(y[None, :].astype(np.float32), RATE)
    loop, _ = make_loop(made, 0.5, 6.0, crossfade_s=0.25, search_s=0.5, quiet=True)
    assert loop.duration_s == pytest.approx(6.0, abs=1 / RATE)
    tiled = Audio(np.tile(loop.samples, (1, 4)), RATE)
    measured = seam(tiled)
    assert measured.jump_ratio <= 1.0 and measured.flux_ratio <= 1.0, measured


def test_a_plain_cut_has_a_seam_the_measure_sees() -> None:
    """The seam measure can fail: a clip cut mid-note, unblended, wraps with a click."""
    t = np.arange(3 * RATE) / RATE
    tone = Audio((0.5 * np.sin(2 * np.pi * 441.3 * t))[None, :].astype(np.float32), RATE)
    assert seam(tone).jump_ratio > 5


def test_key_of_a_chord_progression() -> None:
    rate = 22050
    t = np.arange(int(1.0 * rate)) / rate

    def chord(*midi: int) -> np.ndarray:
        return sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t) for m in midi) / len(midi)

    # i - iv - v - i in A minor
    y = np.concatenate([chord(57, 60, 64), chord(62, 65, 69), chord(64, 68, 71), chord(57, 60, 64)] * 2)
    key = detect_key(Audio(y[None, :].astype(np.float32), rate))
    assert key is not None and key.name == "A minor", key


def test_loudness_range_separates_steady_from_dynamic() -> None:
    rng = np.random.default_rng(2)
    steady = rng.normal(0, 0.1, 12 * RATE)
    dynamic = steady * np.repeat([1.0, 0.1, 1.0, 0.1], 3 * RATE)
    low = loudness_range_lu(Audio(steady[None, :].astype(np.float32), RATE))
    high = loudness_range_lu(Audio(dynamic[None, :].astype(np.float32), RATE))
    assert low is not None and high is not None
    assert low < 1.0 and 5.0 < high <= 20.0, (low, high)  # 20 dB steps, smeared by 3 s windows
    assert loudness_range_lu(Audio(steady[None, : 2 * RATE].astype(np.float32), RATE)) is None
