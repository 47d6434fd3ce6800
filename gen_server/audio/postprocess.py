"""Post-processing: pure functions on :class:`Audio` (torch-free).

Every function returns a new :class:`Audio` and never emits NaN or infinity: silent input stays silent
(its loudness is ``-inf`` and gain stages leave it alone).

:func:`apply_chain` runs, in this order: DC removal -> trim -> resample -> channels -> fades ->
loudness or peak normalisation, with defaults per job kind (:data:`KIND_DEFAULTS`) that the
:class:`~gen_server.contract.spec.PostProcess` fields override.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, replace
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pyloudnorm
import soxr
from scipy import ndimage, signal

from gen_server.audio.types import Audio, shift_words
from gen_server.contract.spec import PostProcess
from gen_server.errors import InvalidInput

logger = logging.getLogger(__name__)

FadeShape = Literal["raised_cosine", "equal_power"]

LOUDNESS_BLOCK_S: Final[float] = 0.4
"""BS.1770 gating block (s); shorter clips are measured looped up to one block (see loudness_lufs)."""
TRUE_PEAK_OVERSAMPLING: Final[int] = 4
SILENCE_DBFS: Final[float] = -120.0
"""A clip whose loudest 10 ms window is below this level (dBFS RMS) is treated as silence."""
LIMITER_LOOKAHEAD_S: Final[float] = 0.005
LIMITER_RELEASE_S: Final[float] = 0.060
_LIMITER_MARGIN_DB: Final[float] = 0.15
LIMITER_ROUNDS: Final[int] = 10
MAX_MAKEUP_DB: Final[float] = 60.0


@dataclass(frozen=True, slots=True)
class KindDefaults:
    """Post-processing defaults for one job kind.

    Attributes:
        trim_silence: Trim leading/trailing silence.
        fade_in_s: Fade-in length (s).
        fade_out_s: Fade-out length (s) before the cap.
        fade_out_max_fraction: Cap on the default fade-out as a fraction of the clip length.
        target_lufs: Integrated loudness target (LUFS) in loudness mode.
        peak_normalize: Normalise to the true-peak ceiling instead of a loudness target.
    """

    trim_silence: bool
    fade_in_s: float
    fade_out_s: float
    fade_out_max_fraction: float
    target_lufs: float
    peak_normalize: bool


KIND_DEFAULTS: Final[dict[str, KindDefaults]] = {
    # Short de-click fades after trimming; speech is measured at -16 LUFS (podcast/broadcast speech).
    "speech": KindDefaults(True, 0.005, 0.02, 0.1, -16.0, False),
    # Music: streaming-platform loudness, a 10 ms fade-in and a 0.5 s fade-out capped at 10 % of length.
    "music": KindDefaults(False, 0.01, 0.5, 0.1, -14.0, False),
    # Effects: peak-normalised to the ceiling. target_lufs applies when peak_normalize is set to False.
    "sfx": KindDefaults(True, 0.002, 0.02, 0.1, -16.0, True),
}


def _new(audio: Audio, samples: npt.NDArray[np.floating], sample_rate: int | None = None) -> Audio:
    return audio.with_samples(samples, sample_rate)


def _db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


# ------------------------------------------------------------------------------------------ DC, trim


def remove_dc(audio: Audio, cutoff_hz: float = 5.0) -> Audio:
    """Remove DC offset and sub-audible drift.

    Subtracts each channel's mean, then applies a zero-phase 2nd-order Butterworth high-pass at
    ``cutoff_hz`` (skipped for clips shorter than one period of the cutoff) and subtracts the mean of
    what is left.

    Args:
        audio: ``[channels, frames]`` audio.
        cutoff_hz: High-pass corner (Hz); ``0`` subtracts the mean only.

    Returns:
        Audio with (near) zero mean per channel.
    """
    if audio.frames == 0:
        return audio
    x = audio.samples.astype(np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    if cutoff_hz > 0 and cutoff_hz < audio.sample_rate / 4:
        sos = signal.butter(2, cutoff_hz, btype="highpass", fs=audio.sample_rate, output="sos")
        period = int(audio.sample_rate / cutoff_hz)
        if audio.frames > period:
            # pad by up to 3 periods of the cutoff (odd extension) so the edges do not ring
            x = signal.sosfiltfilt(sos, x, axis=1, padlen=min(audio.frames - 1, 3 * period))
            x = x - x.mean(axis=1, keepdims=True)  # the filter's edge transients leave a little offset
    return _new(audio, x)


def _window_rms_db(audio: Audio, window_s: float) -> npt.NDArray[np.float64]:
    """Level (dBFS RMS, loudest channel) of consecutive ``window_s`` windows."""
    hop = max(1, round(window_s * audio.sample_rate))
    n = math.ceil(audio.frames / hop)
    padded = np.zeros((audio.channels, n * hop), dtype=np.float64)
    padded[:, : audio.frames] = audio.samples
    ms = (padded.reshape(audio.channels, n, hop) ** 2).mean(axis=2).max(axis=0)
    with np.errstate(divide="ignore"):
        db: npt.NDArray[np.float64] = 10.0 * np.log10(ms)
    return db


def trim_silence(audio: Audio, threshold_db: float = -50.0, pad_s: float = 0.05) -> Audio:
    """Cut leading and trailing silence.

    A 10 ms window counts as sound when its RMS (loudest channel) is within ``threshold_db`` of the
    loudest window in the clip, so the rule does not depend on the clip's overall level. ``pad_s`` of
    the original signal is kept on each side of the sound. Silent clips (loudest window below
    :data:`SILENCE_DBFS`) are returned unchanged, so the result never has zero frames.

    Args:
        audio: ``[channels, frames]`` audio.
        threshold_db: Level relative to the loudest window (dB, negative).
        pad_s: Margin kept before the first and after the last sounding window (s).

    Returns:
        The trimmed audio (at least one window long).
    """
    if audio.frames == 0:
        return audio
    window_s = 0.01
    hop = max(1, round(window_s * audio.sample_rate))
    level = _window_rms_db(audio, window_s)
    loudest = float(level.max())
    if not math.isfinite(loudest) or loudest < SILENCE_DBFS:
        return audio
    sounding = np.flatnonzero(level >= loudest + threshold_db)
    pad = round(pad_s * audio.sample_rate)
    start = max(0, int(sounding[0]) * hop - pad)
    stop = min(audio.frames, (int(sounding[-1]) + 1) * hop + pad)
    out = _new(audio, audio.samples[:, start:stop])
    if audio.words:  # the timeline now starts ``start`` frames later
        out = replace(out, words=shift_words(audio.words, -start / audio.sample_rate, out.duration_s))
    return out


# ------------------------------------------------------------------------------------------- fades


def _fade_curve(n: int, shape: FadeShape) -> npt.NDArray[np.float64]:
    """Rising curve of ``n`` samples from exactly 0 to exactly 1."""
    if n <= 1:
        return np.zeros(n)
    phase = np.linspace(0.0, np.pi / 2, n)
    return np.sin(phase) ** 2 if shape == "raised_cosine" else np.sin(phase)


def fade(audio: Audio, fade_in_s: float, fade_out_s: float, shape: FadeShape = "raised_cosine") -> Audio:
    """Fade in from and out to silence.

    The first sample of a fade-in and the last sample of a fade-out are exactly zero. Fades longer
    than the clip together are shortened in proportion so they do not overlap.

    Args:
        audio: ``[channels, frames]`` audio.
        fade_in_s: Fade-in length (s); 0 for none.
        fade_out_s: Fade-out length (s); 0 for none.
        shape: ``raised_cosine`` (sin², smooth, -6 dB at the midpoint) or ``equal_power`` (sin,
            -3 dB at the midpoint).

    Returns:
        Faded audio, same shape.

    Raises:
        ValueError: Negative or non-finite fade length.
    """
    for name, value in (("fade_in_s", fade_in_s), ("fade_out_s", fade_out_s)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number of seconds, got {value}")
    n_in = round(fade_in_s * audio.sample_rate)
    n_out = round(fade_out_s * audio.sample_rate)
    if n_in + n_out > audio.frames and n_in + n_out > 0:
        scale = audio.frames / (n_in + n_out)
        n_in, n_out = int(n_in * scale), int(n_out * scale)
    if n_in == 0 and n_out == 0:
        return audio
    gain = np.ones(audio.frames)
    if n_in:
        gain[:n_in] = _fade_curve(n_in, shape)
    if n_out:
        gain[audio.frames - n_out :] *= _fade_curve(n_out, shape)[::-1]
    return _new(audio, audio.samples * gain)


# --------------------------------------------------------------------------------- level measurement


def loudness_lufs(audio: Audio) -> float:
    """Integrated loudness per ITU-R BS.1770-4 (LUFS), via pyloudnorm.

    Clips shorter than one 400 ms gating block are measured looped (repeated end to end) up to one
    block, which gives the K-weighted mean-square loudness of the clip itself. Silence gives ``-inf``.

    Args:
        audio: ``[channels, frames]`` audio (1-5 channels).

    Returns:
        Loudness in LUFS, or ``-inf`` for silence or empty audio.
    """
    if audio.frames == 0 or not np.any(audio.samples):
        return -math.inf
    x = audio.samples.astype(np.float64).T
    block = math.ceil(LOUDNESS_BLOCK_S * audio.sample_rate) + 1
    if audio.frames < block:
        x = np.tile(x, (math.ceil(block / audio.frames), 1))
    meter = pyloudnorm.Meter(audio.sample_rate)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        value = float(meter.integrated_loudness(x if x.shape[1] > 1 else x[:, 0]))
    return value if math.isfinite(value) else -math.inf


_TP_BLOCK: Final[int] = 1 << 16
_TP_CONTEXT: Final[int] = 64  # > half the polyphase filter length of resample_poly(x, 4, 1)


def _frame_peaks(audio: Audio) -> npt.NDArray[np.float64]:
    """``[frames]`` largest magnitude of the 4x oversampled signal around each frame (any channel).

    Computed in blocks (with filter context on both sides) so long clips do not need 4x the memory.
    """
    os = TRUE_PEAK_OVERSAMPLING
    x = audio.samples.astype(np.float64)
    n = audio.frames
    out = np.empty(n)
    for start in range(0, n, _TP_BLOCK):
        stop = min(n, start + _TP_BLOCK)
        lo, hi = max(0, start - _TP_CONTEXT), min(n, stop + _TP_CONTEXT)
        up = np.abs(signal.resample_poly(x[:, lo:hi], os, 1, axis=1)).max(axis=0)
        out[start:stop] = up[(start - lo) * os : (stop - lo) * os].reshape(-1, os).max(axis=1)
    return out


def true_peak_dbtp(audio: Audio) -> float:
    """True peak (dBTP): peak magnitude of the 4x oversampled signal (BS.1770-4 Annex 2).

    Args:
        audio: ``[channels, frames]`` audio.

    Returns:
        True peak in dB relative to full scale, ``-inf`` for silence.
    """
    return _true_peak(audio)


def _true_peak(audio: Audio) -> float:
    # Module-internal name: several public functions take a ``true_peak_dbtp`` argument.
    if audio.frames == 0:
        return -math.inf
    peak = float(_frame_peaks(audio).max())
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


# ------------------------------------------------------------------------------------ level control


def peak_normalize(audio: Audio, true_peak_dbtp: float = -1.0) -> Audio:
    """Scale so the true peak sits at ``true_peak_dbtp``; silence is returned unchanged.

    Args:
        audio: ``[channels, frames]`` audio.
        true_peak_dbtp: Target true peak (dBTP).

    Returns:
        Scaled audio.
    """
    tp = _true_peak(audio)
    if not math.isfinite(tp):
        return audio
    return _new(audio, audio.samples.astype(np.float64) * _db_to_gain(true_peak_dbtp - tp))


def _limiter_gain(audio: Audio, ceiling: float) -> npt.NDArray[np.float64]:
    """Per-frame gain (<= 1) that keeps the oversampled peak under ``ceiling`` (linear).

    The needed gain at each frame (linked across channels) goes through a moving minimum of
    lookahead + release width, then two cascaded box smoothers, both centred. Each smoothed value
    averages minima whose windows contain the frame, so the gain never exceeds what that frame needs,
    while it ramps in over the lookahead and recovers over the release instead of clipping.
    """
    with np.errstate(divide="ignore"):
        need = np.minimum(1.0, ceiling / np.maximum(_frame_peaks(audio), 1e-12))
    look = max(1, round(LIMITER_LOOKAHEAD_S * audio.sample_rate))
    release = max(look, round(LIMITER_RELEASE_S * audio.sample_rate))
    half = look + release // 2
    held = ndimage.minimum_filter1d(need, size=2 * half + 1, mode="nearest")
    box = half + 1
    smooth = ndimage.uniform_filter1d(held, size=box, mode="nearest")
    smooth = ndimage.uniform_filter1d(smooth, size=box, mode="nearest")
    limited: npt.NDArray[np.float64] = np.minimum(smooth, need)
    return limited


def limit_true_peak(audio: Audio, true_peak_dbtp: float = -1.0) -> Audio:
    """Transparent true-peak limiter: smooth lookahead gain reduction, no hard clipping.

    Args:
        audio: ``[channels, frames]`` audio.
        true_peak_dbtp: Ceiling (dBTP).

    Returns:
        Audio whose true peak is at most the ceiling.
    """
    if audio.frames == 0:
        return audio
    ceiling = _db_to_gain(true_peak_dbtp - _LIMITER_MARGIN_DB)
    out = _new(audio, audio.samples * _limiter_gain(audio, ceiling))
    tp = _true_peak(out)
    if math.isfinite(tp) and tp > true_peak_dbtp:  # gain ripple between samples: a last tiny trim
        out = _new(out, out.samples * _db_to_gain(true_peak_dbtp - tp - 0.01))
    return out


def normalize_loudness(
    audio: Audio, target_lufs: float, true_peak_dbtp: float = -1.0, *, tolerance_db: float = 0.2
) -> Audio:
    """Gain to an integrated loudness target under a true-peak ceiling.

    Applies the gain that reaches ``target_lufs``; if the true peak then exceeds the ceiling, a
    lookahead limiter (:func:`limit_true_peak`) reduces the peaks and the gain into it is raised
    (secant steps, at most :data:`LIMITER_ROUNDS`) until the loudness is back within ``tolerance_db``.
    The ceiling always holds; the target holds when reachable (a signal whose short-term crest factor
    exceeds ``true_peak_dbtp - target_lufs`` ends up quieter: transparency wins over loudness). Silence is
    returned unchanged.

    Args:
        audio: ``[channels, frames]`` audio.
        target_lufs: Integrated loudness target (LUFS).
        true_peak_dbtp: True-peak ceiling (dBTP).
        tolerance_db: Acceptable loudness error after limiting (dB).

    Returns:
        Normalised audio.
    """
    current = loudness_lufs(audio)
    if not math.isfinite(current):
        return audio
    x = audio.samples.astype(np.float64)
    gain_db = target_lufs - current
    out = _new(audio, x * _db_to_gain(gain_db))
    if _true_peak(out) <= true_peak_dbtp:
        return out
    # the limited loudness rises more slowly than the gain into the limiter: secant steps on that curve
    points: list[tuple[float, float]] = []
    for _ in range(LIMITER_ROUNDS):
        out = limit_true_peak(_new(audio, x * _db_to_gain(gain_db)), true_peak_dbtp)
        level = loudness_lufs(out)
        if not math.isfinite(level) or abs(target_lufs - level) <= tolerance_db:
            break
        points.append((gain_db, level))
        slope = 1.0
        if len(points) >= 2:
            (g0, l0), (g1, l1) = points[-2], points[-1]
            slope = (l1 - l0) / (g1 - g0) if g1 != g0 else 1.0
        gain_db += (target_lufs - level) / min(max(slope, 0.05), 1.0)
        if gain_db > MAX_MAKEUP_DB:
            break
    return out


# ------------------------------------------------------------------------------- rate and channels


def resample(audio: Audio, sample_rate: int) -> Audio:
    """Change the sample rate with soxr (HQ); duration is kept.

    Args:
        audio: ``[channels, frames]`` audio.
        sample_rate: Target rate (Hz).

    Returns:
        Audio at ``sample_rate`` with ``round(frames * sample_rate / audio.sample_rate)`` frames.

    Raises:
        ValueError: Non-positive rate.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if sample_rate == audio.sample_rate or audio.frames == 0:
        return audio if sample_rate == audio.sample_rate else audio.with_samples(audio.samples, sample_rate)
    y = soxr.resample(audio.samples.T, audio.sample_rate, sample_rate, quality="HQ")
    return audio.with_samples(np.ascontiguousarray(y.T).reshape(audio.channels, -1), sample_rate)


def to_channels(audio: Audio, n: int) -> Audio:
    """Convert the channel count.

    Mono is duplicated to every channel; mixing down averages (mono = mean of all channels; otherwise
    output channel ``i`` is the mean of input channels ``j`` with ``j % n == i``).

    Args:
        audio: ``[channels, frames]`` audio.
        n: Output channels (>= 1).

    Returns:
        ``[n, frames]`` audio.

    Raises:
        ValueError: ``n`` < 1.
    """
    if n < 1:
        raise ValueError(f"channel count must be >= 1, got {n}")
    if n == audio.channels:
        return audio
    x = audio.samples
    if audio.channels == 1:
        return _new(audio, np.repeat(x, n, axis=0))
    if n == 1:
        return _new(audio, x.mean(axis=0, keepdims=True))
    out = np.stack([x[i::n].mean(axis=0) for i in range(n)])
    return _new(audio, out)


# ------------------------------------------------------------------------------------------ chain


def _check(audio: Audio, kind: str) -> None:
    if kind not in KIND_DEFAULTS:
        raise InvalidInput(f"unknown kind '{kind}'; expected one of {', '.join(KIND_DEFAULTS)}", field="kind")
    if not np.all(np.isfinite(audio.samples)):
        raise InvalidInput("audio contains NaN or infinite samples")


def apply_chain(audio: Audio, options: PostProcess, kind: str, *, to_loop: bool = False) -> Audio:
    """Run the post-processing chain for a job.

    Order: DC removal -> trim -> resample -> channels -> fades -> loudness (or peak) normalisation.
    ``to_loop``: a loop is cut from the result afterwards, so nothing trims or fades its ends.
    ``None`` fields of ``options`` take the kind's :data:`KIND_DEFAULTS`; a default fade-out is capped
    at 10 % of the clip, fades given explicitly are honoured (shortened only to fit the clip). Loudness
    mode is used when ``target_lufs`` is given or ``peak_normalize`` is false; the true-peak ceiling
    ``options.true_peak_dbtp`` holds in both modes.

    Args:
        audio: ``[channels, frames]`` audio straight from a backend.
        options: The job's post-processing options.
        kind: ``speech``, ``music`` or ``sfx``.

    Returns:
        The processed audio.

    Raises:
        InvalidInput: Unknown kind, or audio containing NaN/inf.
    """
    _check(audio, kind)
    d = KIND_DEFAULTS[kind]
    out = remove_dc(audio)
    if not to_loop and (options.trim_silence if options.trim_silence is not None else d.trim_silence):
        out = trim_silence(out)
    if options.sample_rate is not None:
        out = resample(out, options.sample_rate)
    if options.channels is not None:
        out = to_channels(out, options.channels)
    fade_in = options.fade_in_s if options.fade_in_s is not None else d.fade_in_s
    if options.fade_out_s is not None:
        fade_out = options.fade_out_s
    else:
        fade_out = min(d.fade_out_s, d.fade_out_max_fraction * out.duration_s)
    if not to_loop:
        out = fade(out, fade_in, fade_out)
    ceiling = options.true_peak_dbtp
    if options.target_lufs is not None:
        out = normalize_loudness(out, options.target_lufs, ceiling)
    elif options.peak_normalize if options.peak_normalize is not None else d.peak_normalize:
        out = peak_normalize(out, ceiling)
    else:
        out = normalize_loudness(out, d.target_lufs, ceiling)
    logger.debug("post-processed %s clip: %.2f s at %d Hz", kind, out.duration_s, out.sample_rate)
    return out


def stream_chain(audio: Audio, options: PostProcess, kind: str) -> Audio:
    """Post-processing for one chunk of a streamed job, before the whole clip exists.

    Resampling and channels as :func:`apply_chain`, then the level:

    * ``speech`` (a chunk is a sentence): loudness to the job's target (or the kind's) per chunk under
      the true-peak ceiling, so every sentence sits at the target.
    * ``music`` and ``sfx`` (a chunk is a slice of about a second cut anywhere): no per-chunk loudness,
      which would pump the level from chunk to chunk; the chunk keeps the model's own level and only a
      true-peak limiter (:func:`limit_true_peak`) holds the ceiling ``options.true_peak_dbtp``. The
      stored file is normalised over the whole clip, so its level differs from the stream's.

    Trimming and fades belong to the whole clip and are left out: the stored file (:func:`apply_chain`
    on the whole) may therefore differ slightly in level and length.

    Args:
        audio: ``[channels, frames]`` chunk at the model's rate.
        options: The job's post-processing options.
        kind: ``speech``, ``music`` or ``sfx``.

    Returns:
        The chunk, ready to stream.

    Raises:
        InvalidInput: Unknown kind, or audio containing NaN/inf.
    """
    _check(audio, kind)
    out = audio
    if options.sample_rate is not None:
        out = resample(out, options.sample_rate)
    if options.channels is not None:
        out = to_channels(out, options.channels)
    if kind != "speech":
        return limit_true_peak(out, options.true_peak_dbtp)
    target = options.target_lufs if options.target_lufs is not None else KIND_DEFAULTS[kind].target_lufs
    return normalize_loudness(out, target, options.true_peak_dbtp)
