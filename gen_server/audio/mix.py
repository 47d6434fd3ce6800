"""The scene mixer: clips placed on a timeline, gains, fades, pans, sidechain ducking, sum (pure numpy).

:func:`mix` places every :class:`Clip` sample-exactly at ``round(start_s * sample_rate)``, after its
fades and gain; clips marked ``key`` (speech) are summed into a sidechain key, and every clip with a
:class:`Ducking` follows the gain curve :func:`duck_gain_db` computes from that key. :func:`master`
then brings the sum to a loudness target under a true-peak ceiling, with the same post-processing
chain every job uses (:func:`~gen_server.audio.postprocess.apply_chain`). With ``keep_parts`` the
result keeps each clip as it was summed, so a scene's stems are sums of those parts
(:meth:`MixResult.sum_of`, :mod:`gen_server.audio.stems`), not a second mix.

Ducking is computed at :data:`CONTROL_HZ` (1 ms ticks) and interpolated to samples: a tick is
*speech* when the key's mean square in it is within ``threshold_db`` of the key's loudest tick; the
bed's target gain is ``-depth_db`` from ``lookahead_s`` before speech until ``hold_s`` after it, and
the gain moves towards the target in straight lines in dB, taking ``attack_s`` for the whole depth
going down and ``release_s`` coming back up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from gen_server.audio.postprocess import apply_chain, fade, resample
from gen_server.audio.types import Audio
from gen_server.scene_plan import mix_post

if TYPE_CHECKING:
    from gen_server.contract.scene import SceneComponent

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

CONTROL_HZ: Final[int] = 1000
"""Rate of the ducking gain curve (ticks per second)."""
CUT_FADE_S: Final[float] = 0.005
"""De-click fade where a clip is cut short (its length on the timeline, or the end of the mix)."""


@dataclass(frozen=True, slots=True)
class Ducking:
    """How a clip ducks under the key (speech).

    Attributes:
        depth_db: Gain reduction while the key sounds (dB, >= 0).
        attack_s: Time to go down the whole depth (s).
        release_s: Time to come back up the whole depth (s).
        hold_s: Time the reduction stays after the key stops (s).
        lookahead_s: Time the reduction starts before the key does (s).
        threshold_db: Key level that counts as sounding, relative to its loudest tick (dB, <= 0).
    """

    depth_db: float = 15.0
    attack_s: float = 0.05
    release_s: float = 0.5
    hold_s: float = 0.2
    lookahead_s: float = 0.05
    threshold_db: float = -35.0


@dataclass(frozen=True, slots=True)
class Clip:
    """A clip on the timeline.

    Attributes:
        audio: ``[channels, frames]`` audio (any rate; resampled to the mix rate).
        start_s: Where its first frame goes (s, >= 0).
        gain_db: Gain (dB).
        pan: -1 (left) .. 1 (right); mono clips pan with a constant-power law, unity at the centre;
            stereo clips are balanced (the far channel is turned down).
        fade_in_s: Fade-in (s) at the clip's start.
        fade_out_s: Fade-out (s) at the clip's end (after ``length_s`` cuts it).
        length_s: Longest it may last on the timeline (s); ``None``: its own length.
        key: Feeds the ducking sidechain (speech).
        duck: Ducks under the key when set.
        label: Name for logs.
    """

    audio: Audio
    start_s: float
    gain_db: float = 0.0
    pan: float = 0.0
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0
    length_s: float | None = None
    key: bool = False
    duck: Ducking | None = None
    label: str = ""


def clip_for(component: SceneComponent, audio: Audio) -> Clip:
    """The mixer's view of a component."""
    duck = component.duck
    return Clip(
        audio=audio,
        start_s=component.start_s,
        gain_db=component.gain_db,
        pan=component.pan,
        fade_in_s=component.fade_in_s,
        fade_out_s=component.fade_out_s,
        length_s=component.duration_s,
        key=component.key,
        duck=Ducking(
            depth_db=duck.duck_db,
            attack_s=duck.attack_ms / 1000.0,
            release_s=duck.release_ms / 1000.0,
            hold_s=duck.hold_ms / 1000.0,
            lookahead_s=duck.lookahead_ms / 1000.0,
            threshold_db=duck.threshold_db,
        )
        if duck is not None
        else None,
        label=component.label,
    )


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a clip landed: frames ``[start, stop)`` of the mix (``stop - start`` may be 0)."""

    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class MixResult:
    """The summed timeline before mastering.

    Attributes:
        audio: ``[channels, frames]`` sum at the mix rate (not normalised; may exceed 1).
        placements: One per clip, in input order.
        duck_db: Clip index -> its ducking gain (dB) per :data:`CONTROL_HZ` tick of the mix.
        key_active: Per tick: the key counted as sounding (before hold and lookahead).
        parts: Only when :func:`mix` was asked to ``keep_parts``: each clip exactly as it was added to
            the sum, ``[channels, stop - start]`` for ``placements[i]`` (cut, faded, gain, pan and
            ducking applied); empty otherwise.
    """

    audio: Audio
    placements: tuple[Placement, ...]
    duck_db: dict[int, FloatArray] = field(default_factory=dict)
    key_active: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    parts: tuple[npt.NDArray[np.float32], ...] = ()

    def sum_of(self, clips: Iterable[int]) -> Audio:
        """What the clips ``clips`` (indices into the mixer's input) added to :attr:`audio`, on the whole
        timeline: ``[channels, frames]`` like the mix, silent where none of them plays. Summed over a
        partition of all clips, these add up to :attr:`audio` (up to float rounding).

        Raises:
            ValueError: The mix was made without ``keep_parts``.
        """
        if len(self.parts) != len(self.placements):
            raise ValueError("this mix kept no parts: call mix(..., keep_parts=True)")
        out = np.zeros_like(self.audio.samples)
        for i in clips:
            p = self.placements[i]
            out[:, p.start : p.stop] += self.parts[i]
        return Audio(out, self.audio.sample_rate)


def _db(gain_db: float) -> float:
    return float(10.0 ** (gain_db / 20.0))


def tick_edges(frames: int, sample_rate: int) -> npt.NDArray[np.int64]:
    """Frame index where each control tick starts, plus ``frames`` at the end: ``[ticks + 1]``."""
    ticks = math.ceil(frames * CONTROL_HZ / sample_rate)
    edges = np.round(np.arange(ticks + 1) * (sample_rate / CONTROL_HZ)).astype(np.int64)
    edges[-1] = frames
    return np.minimum(edges, frames)


def key_activity(key: FloatArray, sample_rate: int, threshold_db: float) -> npt.NDArray[np.bool_]:
    """Per tick: the key's mean square is within ``threshold_db`` of its loudest tick (and not zero).

    Args:
        key: ``[frames]`` mono key signal.
        sample_rate: Its rate (Hz).
        threshold_db: Relative level (dB, <= 0).

    Returns:
        ``[ticks]`` booleans; all false for a silent key.
    """
    edges = tick_edges(key.size, sample_rate)
    if edges.size < 2:
        return np.zeros(0, dtype=bool)
    sums = np.add.reduceat(key.astype(np.float64) ** 2, edges[:-1]) if key.size else np.zeros(edges.size - 1)
    counts = np.maximum(np.diff(edges), 1)
    ms = sums / counts
    loudest = float(ms.max()) if ms.size else 0.0
    if loudest <= 1e-20:
        return np.zeros(ms.size, dtype=bool)
    return np.asarray(ms >= loudest * 10.0 ** (threshold_db / 10.0))


def _extend(active: npt.NDArray[np.bool_], before: int, after: int) -> npt.NDArray[np.bool_]:
    """``out[k]`` is true when ``active`` is true anywhere in ``[k - after, k + before]``."""
    n = active.size
    counts = np.concatenate([[0], np.cumsum(active.astype(np.int64))])
    k = np.arange(n)
    lo = np.clip(k - after, 0, n)
    hi = np.clip(k + before + 1, 0, n)
    return np.asarray(counts[hi] - counts[lo] > 0)


def duck_gain_db(active: npt.NDArray[np.bool_], ducking: Ducking) -> FloatArray:
    """The ducking gain curve (dB, <= 0) per tick from the key's activity.

    The target is ``-depth_db`` from ``lookahead_s`` before every active tick to ``hold_s`` after it,
    else 0 dB; the gain follows the target in linear-in-dB ramps of ``depth_db / attack_s`` (down) and
    ``depth_db / release_s`` (up) dB per second. The first tick starts at its target.

    Args:
        active: ``[ticks]`` key activity (:func:`key_activity`).
        ducking: The clip's ducking.

    Returns:
        ``[ticks]`` gain in dB.
    """
    n = active.size
    depth = float(ducking.depth_db)
    if n == 0 or depth <= 0 or not active.any():
        return np.zeros(n)
    look = round(ducking.lookahead_s * CONTROL_HZ)
    hold = round(ducking.hold_s * CONTROL_HZ)
    target = np.where(_extend(active, look, hold), -depth, 0.0)
    down = depth / max(ducking.attack_s * CONTROL_HZ, 1.0)
    up = depth / max(ducking.release_s * CONTROL_HZ, 1.0)
    changes = np.flatnonzero(np.diff(target)) + 1  # ticks where the target changes
    gain = np.empty(n)
    g = float(target[0])
    k = 0
    while k < n:
        t = float(target[k])
        if g == t:  # at the target: it stays there until the target changes
            at = int(np.searchsorted(changes, k, side="right"))
            nxt = int(changes[at]) if at < changes.size else n
            gain[k:nxt] = t
            k = nxt
            continue
        g = max(t, g - down) if t < g else min(t, g + up)
        gain[k] = g
        k += 1
    return gain


def _pan_gains(pan: float, channels_in: int) -> tuple[float, float]:
    """(left, right) gains: constant power with unity at the centre for mono, balance for stereo."""
    if channels_in == 1:
        theta = (pan + 1.0) * math.pi / 4.0
        return math.sqrt(2.0) * math.cos(theta), math.sqrt(2.0) * math.sin(theta)
    return min(1.0, 1.0 - pan), min(1.0, 1.0 + pan)


def _prepared(clip: Clip, sample_rate: int, channels: int) -> npt.NDArray[np.float32]:
    """The clip at the mix rate and channel count, cut, faded and with its gain: ``[channels, frames]``."""
    audio = resample(clip.audio, sample_rate) if clip.audio.sample_rate != sample_rate else clip.audio
    fade_out = clip.fade_out_s
    if clip.length_s is not None:
        limit = round(clip.length_s * sample_rate)
        if audio.frames > limit:
            audio = Audio(audio.samples[:, :limit], sample_rate)
            fade_out = max(fade_out, CUT_FADE_S)
    audio = fade(audio, clip.fade_in_s, fade_out)
    x = audio.samples.astype(np.float32) * np.float32(_db(clip.gain_db))
    if channels == 1:
        return x.mean(axis=0, keepdims=True) if x.shape[0] > 1 else x
    left, right = _pan_gains(clip.pan, x.shape[0])
    if x.shape[0] == 1:
        return np.concatenate([x * np.float32(left), x * np.float32(right)])
    return np.stack([x[0] * np.float32(left), x[1:].mean(axis=0) * np.float32(right)])


def mix(
    clips: Sequence[Clip],
    *,
    sample_rate: int,
    channels: int = 2,
    length_s: float | None = None,
    keep_parts: bool = False,
) -> MixResult:
    """Place, duck and sum ``clips``.

    Args:
        clips: The timeline.
        sample_rate: Mix rate (Hz).
        channels: 1 or 2.
        length_s: Mix length (s); clips past it are cut (with a 5 ms fade). ``None``: the end of the
            last clip.
        keep_parts: Keep each clip as it was added to the sum (:attr:`MixResult.parts`), so
            :meth:`MixResult.sum_of` can give the stems of a scene (memory: about the clips' own size).

    Returns:
        The sum (not normalised; see :func:`master`), where each clip landed and the ducking curves.

    Raises:
        ValueError: No clips, a negative start, or a channel count other than 1 or 2.
    """
    if channels not in (1, 2):
        raise ValueError(f"a mix has 1 or 2 channels, got {channels}")
    if not clips:
        raise ValueError("nothing to mix")
    prepared: list[npt.NDArray[np.float32]] = []
    starts: list[int] = []
    for clip in clips:
        if not math.isfinite(clip.start_s) or clip.start_s < 0:
            raise ValueError(f"clip {clip.label!r} starts at {clip.start_s} s; starts must be >= 0")
        prepared.append(_prepared(clip, sample_rate, channels))
        starts.append(round(clip.start_s * sample_rate))
    end = max(s + x.shape[1] for s, x in zip(starts, prepared, strict=True))
    frames = round(length_s * sample_rate) if length_s is not None else end
    placements: list[Placement] = []
    for i, (start, x) in enumerate(zip(starts, prepared, strict=True)):
        stop = min(start + x.shape[1], frames)
        if stop < start + x.shape[1] and stop > start:  # cut by the end of the mix: de-click
            n = min(stop - start, round(CUT_FADE_S * sample_rate))
            cut = x[:, : stop - start].copy()
            cut[:, stop - start - n :] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
            prepared[i] = cut
        placements.append(Placement(start, max(start, stop)))
    key = np.zeros(frames, dtype=np.float64)
    for clip, x, p in zip(clips, prepared, placements, strict=True):
        if clip.key and p.stop > p.start:
            key[p.start : p.stop] += x[:, : p.stop - p.start].mean(axis=0)
    out = np.zeros((channels, frames), dtype=np.float32)
    duck_db: dict[int, FloatArray] = {}
    active_cache: dict[float, npt.NDArray[np.bool_]] = {}
    first_active: npt.NDArray[np.bool_] | None = None
    edges = tick_edges(frames, sample_rate)
    parts: list[npt.NDArray[np.float32]] = []
    for i, (clip, x, p) in enumerate(zip(clips, prepared, placements, strict=True)):
        if p.stop <= p.start:
            parts.append(np.zeros((channels, 0), dtype=np.float32))
            continue
        part = x[:, : p.stop - p.start]
        if clip.duck is not None and clip.duck.depth_db > 0:
            threshold = clip.duck.threshold_db
            if threshold not in active_cache:
                active_cache[threshold] = key_activity(key, sample_rate, threshold)
            active = active_cache[threshold]
            first_active = active if first_active is None else first_active
            curve = duck_gain_db(active, clip.duck)
            duck_db[i] = curve
            if curve.any():
                # value of tick k sits at the tick's first frame; straight lines in dB in between
                at = np.interp(np.arange(p.start, p.stop), edges[:-1], curve)
                part = part * (10.0 ** (at / 20.0)).astype(np.float32)
        out[:, p.start : p.stop] += part
        parts.append(part)
    if first_active is None:
        first_active = key_activity(key, sample_rate, Ducking().threshold_db)
    logger.debug("mixed %d clips into %.2f s at %d Hz", len(clips), frames / sample_rate, sample_rate)
    kept = tuple(parts) if keep_parts else ()
    return MixResult(Audio(out, sample_rate), tuple(placements), duck_db, first_active, kept)


def master(audio: Audio, target_lufs: float, true_peak_dbtp: float = -1.0) -> Audio:
    """Normalise a mix to ``target_lufs`` under the ``true_peak_dbtp`` ceiling (lookahead limiter).

    The same chain the worker runs on a scene's mix (:func:`~gen_server.scene_plan.mix_post`
    through :func:`~gen_server.audio.postprocess.apply_chain`): DC removal, then loudness.

    Args:
        audio: ``[channels, frames]`` mix.
        target_lufs: Integrated loudness target (LUFS).
        true_peak_dbtp: Ceiling (dBTP).

    Returns:
        The mastered mix, same shape and rate.
    """
    post = mix_post(target_lufs, true_peak_dbtp, audio.sample_rate, audio.channels)
    return apply_chain(audio, post, "music")
