"""A scene's stems: one track's clips on the whole timeline, and the gains that sum them back to the mix.

A stem is made from the mixer's own output (:meth:`~gen_server.audio.mix.MixResult.sum_of` over the
track's clips, from a :func:`~gen_server.audio.mix.mix` run with ``keep_parts``), not by mixing again.

Baked into a stem: every clip of its track placed sample-exactly where it plays, resampled to the mix
rate, cut to its length (with the mixer's 5 ms de-click), faded (``fade_in_s``, ``fade_out_s``), at
its item gain, panned, and ducked under the scene's speech by the curve the mixer computed for it.

Applied by the timeline (not in the stem): the track's gain (``track_gain_db``) and one master gain.
With ``mix`` the summed timeline before mastering (:attr:`MixResult.audio`)::

    stem_t = track_t * 10 ** ((stem_gain_db - track_gain_db_t) / 20)      # track_t: what track t added
    sum_t stem_t * 10 ** (track_gain_db_t / 20) = 10 ** (stem_gain_db / 20) * mix
    sum_t stem_t * 10 ** (track_gain_db_t / 20) * 10 ** (master_gain_db / 20)
        = 10 ** (loudness_gain_db / 20) * mix                              # master_gain_db = loudness - stem

The master (:func:`~gen_server.audio.postprocess.apply_chain` with the scene's
:func:`~gen_server.scene_plan.mix_post`) removes DC (a 5 Hz high-pass) and applies one constant gain
to the loudness target, ``loudness_gain_db``: so the timeline plays the mix at the scene's loudness
target. When that leaves a true peak over the ceiling (``limited``), the master then limits, and
drives its limiter harder (by the few dB it takes to stay at the target); the timeline has no limiter.
Mastering the summed stems with the scene's own master gives the delivered mix (up to watermarks).

``stem_gain_db`` puts the stems at their level in the finished mix (``loudness_gain_db``, so the master
gain is 0 dB) unless the loudest stem would then peak over :data:`STEM_PEAK_DBFS`: then every stem is
turned down by the same amount, so none clips in a 16-bit file, and the master gain makes it up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from gen_server.audio.mix import MixResult
from gen_server.audio.postprocess import loudness_lufs, remove_dc, true_peak_dbtp
from gen_server.audio.types import Audio

STEM_PEAK_DBFS: Final[float] = -1.0
"""Highest sample peak of a stem (dBFS): room for the watermark and a lossy codec's overshoot."""


@dataclass(frozen=True, slots=True)
class StemLevels:
    """The gains between a scene's stems, its timeline and its mix (module docstring).

    Attributes:
        loudness_gain_db: The gain that brings the mix to the loudness target: what the master applies
            before its limiter, when it needs none.
        stem_gain_db: The gain baked into every stem on top of the mix's own levels.
        master_gain_db: ``loudness_gain_db - stem_gain_db``: the timeline's master gain (>= 0).
        limited: The master limits this mix (its true peak is over the ceiling after that gain), and
            drives its limiter with more gain to stay at the target.
    """

    loudness_gain_db: float
    stem_gain_db: float
    master_gain_db: float
    limited: bool


def master_gain(audio: Audio, target_lufs: float, true_peak_dbtp_ceiling: float) -> tuple[float, bool]:
    """The gain (dB) that brings ``audio`` to ``target_lufs`` as the master measures it, and whether the
    master then limits.

    The same measure as :func:`~gen_server.audio.postprocess.normalize_loudness` after
    :func:`~gen_server.audio.postprocess.remove_dc`: the target minus the loudness of the DC-free mix
    (0 dB for silence, which the master leaves alone).

    Args:
        audio: ``[channels, frames]`` mix before mastering.
        target_lufs: The scene's loudness target (LUFS).
        true_peak_dbtp_ceiling: The ceiling the master limits to (dBTP; the scene's own less headroom).
    """
    clean = remove_dc(audio)
    level = loudness_lufs(clean)
    if not math.isfinite(level):
        return 0.0, False
    gain_db = target_lufs - level
    gained = clean.with_samples(clean.samples * np.float32(10.0 ** (gain_db / 20.0)))
    return gain_db, bool(true_peak_dbtp(gained) > true_peak_dbtp_ceiling)


def stem(mixed: MixResult, clips: Sequence[int], gain_db: float) -> Audio:
    """What the clips ``clips`` added to the mix, times ``10 ** (gain_db / 20)``: ``[channels, frames]``."""
    track = mixed.sum_of(clips)
    return track.with_samples(track.samples * np.float32(10.0 ** (gain_db / 20.0)))


def stem_levels(
    mixed: MixResult,
    tracks: Sequence[Sequence[int]],
    track_gains_db: Sequence[float],
    *,
    target_lufs: float,
    true_peak_dbtp_ceiling: float,
) -> StemLevels:
    """The stems' gain and the timeline's master gain for ``mixed`` (module docstring).

    Args:
        mixed: The mix, made with ``keep_parts``.
        tracks: Per track, the indices of its clips.
        track_gains_db: Per track, its gain (dB): in the mix, left out of the stem.
        target_lufs: The scene's loudness target (LUFS).
        true_peak_dbtp_ceiling: The master's limiter ceiling (dBTP).
    """
    loudness_db, limited = master_gain(mixed.audio, target_lufs, true_peak_dbtp_ceiling)
    loudest = 0.0
    for clips, gain_db in zip(tracks, track_gains_db, strict=True):
        samples = stem(mixed, clips, -gain_db).samples
        if samples.size:
            loudest = max(loudest, float(np.max(np.abs(samples))))
    room_db = STEM_PEAK_DBFS - 20.0 * math.log10(loudest) if loudest > 0 else math.inf
    stem_db = min(loudness_db, room_db)
    return StemLevels(
        loudness_gain_db=loudness_db,
        stem_gain_db=stem_db,
        master_gain_db=loudness_db - stem_db,
        limited=limited,
    )
