"""Clips that drop into an edit: exact tempo (time-stretch) and seamless loops.

* :func:`stretch_to_tempo`: Rubber Band through Spotify's ``pedalboard`` (``time_stretch``, its
  high-quality "crisp" mode), the pitch kept. A stretch beyond :data:`MAX_STRETCH` is still done but
  reported, since artefacts grow with it.
* :func:`make_loop`: cut ``length`` samples and blend the audio that followed the cut's end into its
  start (a linear crossfade, which never raises the peak above the louder input), so that playing
  the clip on repeat continues exactly as the original did across the wrap. Music is cut on bar
  lines (the caller gives a downbeat and a whole number of bars); SFX where it is quietest. Within a
  few milliseconds of the asked-for point the cut goes where the wrap is smoothest, judged by the
  same figures :func:`gen_server.audio.analysis.seam` reports (sample jump and spectral flux against
  the clip's own medians).
* :func:`generation_seconds`: how much audio a job must generate to have room for both.

Soundry's own code on top of pedalboard and numpy: no maintained library cuts loops (pymusiclooper
finds loop points in finished songs, through madmom, which does not build on NumPy 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gen_server.audio.analysis import SEAM_FRAME, Seam, frame_flux, interior, seam
from gen_server.audio.types import Audio

MAX_STRETCH = 0.08
"""Stretches beyond +-8 % are reported as a warning (Rubber Band's artefacts become audible)."""
TEMPO_MARGIN = 1.10
"""A tempo job generates this much more than it keeps, so a speed-up still fills the clip."""
MUSIC_CROSSFADE_BEATS = 0.25
MAX_MUSIC_CROSSFADE_S = 0.15
SFX_CROSSFADE_S = 0.25
MUSIC_SEARCH_S = 0.006
"""A music loop's cut may move this far from the bar line to find a smoother wrap (6 ms: below
what an editor hears as off the grid)."""
SFX_SLACK_S = 1.0
"""Extra SFX audio generated so the cut can move to a quiet point."""
BEATS_PER_BAR = 4


def bar_seconds(bpm: float) -> float:
    return BEATS_PER_BAR * 60.0 / bpm


def music_crossfade_s(bpm: float) -> float:
    return min(MAX_MUSIC_CROSSFADE_S, MUSIC_CROSSFADE_BEATS * 60.0 / bpm)


def loop_bars_for(duration_s: float, bpm: float) -> int:
    """The whole bars of ``bpm`` that fit in ``duration_s`` (at least one)."""
    return max(1, math.floor(duration_s / bar_seconds(bpm) + 1e-6))


def generation_seconds(
    kind: str, duration_s: float, *, tempo_bpm: float | None, loop: bool, loop_bars: int | None
) -> float:
    """Seconds of audio to generate for a clip of ``duration_s`` kept seconds (the loop's, if any).

    Room for a tempo stretch (:data:`TEMPO_MARGIN`), for a music loop's lead-in to its first
    downbeat (one bar) and crossfade tail, and for an SFX loop's search for a quiet cut.
    """
    if not loop:
        return duration_s * TEMPO_MARGIN if tempo_bpm else duration_s
    if kind == "sfx":
        return duration_s + SFX_SLACK_S + SFX_CROSSFADE_S
    bpm = tempo_bpm or 60.0  # unknown tempo: room for a bar of up to 4 s
    length = loop_bars * bar_seconds(bpm) if loop_bars else duration_s
    return (length + bar_seconds(bpm) + MAX_MUSIC_CROSSFADE_S + 0.25) * TEMPO_MARGIN


def octave_fold(measured_bpm: float, target_bpm: float) -> float:
    """``measured_bpm`` doubled or halved to lie closest to ``target_bpm`` (trackers lock onto a
    multiple of the felt tempo)."""
    best = measured_bpm
    for factor in (0.25, 0.5, 2.0, 4.0):
        if abs(math.log(measured_bpm * factor / target_bpm)) < abs(math.log(best / target_bpm)):
            best = measured_bpm * factor
    return best


def stretch_to_tempo(audio: Audio, measured_bpm: float, target_bpm: float) -> tuple[Audio, float]:
    """``audio`` time-stretched from ``measured_bpm`` to ``target_bpm`` (pitch kept); the speed factor.

    The factor is ``target / measured``: above 1 the clip gets faster and shorter.
    """
    import pedalboard

    factor = target_bpm / measured_bpm
    if abs(factor - 1.0) < 1e-4:
        return audio, 1.0
    samples = pedalboard.time_stretch(
        np.ascontiguousarray(audio.samples, dtype=np.float32),
        float(audio.sample_rate),
        stretch_factor=factor,
        high_quality=True,
        transient_mode="crisp",
    )
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), audio.sample_rate), factor


@dataclass(frozen=True, slots=True)
class LoopCut:
    """Where a loop was cut from the audio it was made from, and how smooth its wrap is."""

    start_s: float
    length_s: float
    crossfade_s: float
    seam: Seam


def _crossfade(x: npt.NDArray[np.float32], start: int, length: int, fade: int) -> npt.NDArray[np.float32]:
    """``x[start:start+length]`` with ``x[start+length:][:fade]`` blended (linearly) into its start."""
    out = x[:, start : start + length].copy()
    if fade:
        rise = (np.arange(fade, dtype=np.float32) / fade)[None, :]
        tail = x[:, start + length : start + length + fade]
        out[:, :fade] = out[:, :fade] * rise + tail * (1.0 - rise)
    return out


def make_loop(
    audio: Audio,
    start_s: float,
    length_s: float,
    *,
    crossfade_s: float,
    search_s: float,
    quiet: bool = False,
    bar_s: float | None = None,
) -> tuple[Audio, LoopCut]:
    """A seamless loop of ``length_s`` seconds cut from ``audio`` near ``start_s``.

    Args:
        audio: At least ``start_s + search_s + length_s + crossfade_s`` seconds long.
        start_s: Where the loop should start (a downbeat for music).
        length_s: The loop's length (whole bars for music); kept exactly, to the sample.
        crossfade_s: Audio after the loop's end blended into its start.
        search_s: How far the cut may move from ``start_s`` (either way) for a smoother wrap.
        quiet: Prefer quiet cuts (SFX: the wrap lands between events).
        bar_s: The bar length of a music loop (its wrap is then judged against its own bar lines).

    Raises:
        ValueError: ``audio`` is too short for the loop, its crossfade and the search.
    """
    rate = audio.sample_rate
    x = np.asarray(audio.samples, dtype=np.float32)
    length = round(length_s * rate)
    fade = min(round(crossfade_s * rate), length // 4)
    search = round(search_s * rate)
    first = max(0, round(start_s * rate) - search)
    last = min(x.shape[1] - length - fade, round(start_s * rate) + search)
    if last < first or length < 4 * SEAM_FRAME:
        raise ValueError(
            f"a {length_s:.2f} s loop with a {crossfade_s:.2f} s crossfade needs more audio than "
            f"{audio.duration_s:.2f} s from {start_s:.2f} s"
        )
    middle = round(start_s * rate)
    bar_lines = None if bar_s is None else np.arange(1, round(length_s / bar_s), dtype=np.float64) * bar_s
    interior_jump, interior_flux = interior(
        Audio(x[:, middle : middle + length], rate), bar_lines_s=bar_lines
    )
    step = max(1, (last - first) // 400)
    candidates = np.arange(first, last + 1, step)
    best = _best_start(x, candidates, length, fade, interior_jump, interior_flux, quiet)
    # then, within a coarse step of it, the sample with the smallest step across the wrap
    fine = np.arange(max(first, best - step + 1), min(last, best + step - 1) + 1)
    jumps = np.abs(x[:, fine + length] - x[:, fine + length - 1]).max(axis=0)
    best = int(fine[int(np.argmin(jumps))])
    out = Audio(_crossfade(x, best, length, fade), rate)
    measured = seam(out, bar_lines_s=bar_lines)
    cut = LoopCut(start_s=best / rate, length_s=length / rate, crossfade_s=fade / rate, seam=measured)
    return out, cut


def _best_start(
    x: npt.NDArray[np.float32],
    candidates: npt.NDArray[np.int64],
    length: int,
    fade: int,
    interior_jump: float,
    interior_flux: float,
    quiet: bool,
) -> int:
    """The candidate start whose loop wraps most smoothly (and, with ``quiet``, most quietly)."""
    frame = SEAM_FRAME
    ends = candidates + length
    jumps = np.abs(x[:, ends] - x[:, ends - 1]).max(axis=0)  # out[0] is x[end] (crossfade at 0)
    scores = np.empty(candidates.size)
    mono = x.mean(axis=0).astype(np.float64)
    rise = np.arange(fade) / fade if fade else np.zeros(0)
    for i, (start, end) in enumerate(zip(candidates, ends, strict=True)):
        head = mono[start : start + frame].copy()  # the loop's first frame, crossfade included
        n = min(fade, frame)
        head[:n] = head[:n] * rise[:n] + mono[end : end + n] * (1.0 - rise[:n])
        around = np.concatenate([mono[end - frame : end], head])
        flux = float(frame_flux(around, np.array([frame]), frame)[0])
        scores[i] = max(jumps[i] / max(interior_jump, 1e-12), flux / max(interior_flux, 1e-12))
        if quiet:
            scores[i] += float(np.sqrt(np.mean(around**2))) / (float(np.sqrt(np.mean(mono**2))) + 1e-12)
    return int(candidates[int(np.argmin(scores))])


def trim_to(audio: Audio, seconds: float, start_s: float = 0.0) -> Audio:
    """``seconds`` of ``audio`` from ``start_s`` (shorter if the audio ends first)."""
    start = round(start_s * audio.sample_rate)
    return Audio(
        np.ascontiguousarray(audio.samples[:, start : start + round(seconds * audio.sample_rate)]),
        audio.sample_rate,
    )
