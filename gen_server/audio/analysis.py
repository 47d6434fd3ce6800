"""What an editor needs to know about a music or SFX clip: tempo, beats, downbeats, key, loudness range.

Built on librosa (onset strength, dynamic-programming beat tracking, constant-Q chroma) and
pyloudnorm (BS.1770 loudness). Three small pieces are Soundry's own, because neither library (nor
any other maintained package that installs here: madmom does not build on NumPy 2, essentia is
AGPL and heavy, beat-this needs model weights from a hub) provides them:

* **Tempo refinement**: librosa's tempo estimate is quantised to its tempogram lag (about +-2 % at
  120 BPM); a least-squares line through the tracked beat times gives the beat period to a fraction
  of a percent.
* **Downbeats** (4/4 assumed): of the four possible bar phases, the one whose beats carry the most
  low-frequency onset energy (kick drums, accented clicks). A heuristic: its confidence is reported.
* **Key**: the Krumhansl-Kessler major/minor profiles correlated with the clip's mean chroma; the
  confidence is that Pearson correlation (below ~0.5 the clip has no clear key).
* **Loudness range** (EBU Tech 3342 LRA): short-term (3 s) loudness every 0.1 s through pyloudnorm,
  absolute gate -70 LUFS, relative gate -20 LU, spread between the 10th and 95th percentiles.

Pure numpy/librosa: imported lazily by the workers (the API never analyses audio).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gen_server.audio.types import Audio

ANALYSIS_RATE = 22050
HOP = 256
BEATS_PER_BAR = 4
MIN_BEATS = 4
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl & Kessler (1982) probe-tone ratings, tonic first
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
SHORT_TERM_S = 3.0
SHORT_TERM_HOP_S = 0.1

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Beats:
    """A clip's beat grid: tempo, beat and downbeat times (seconds from the clip's start)."""

    bpm: float
    beats: FloatArray
    downbeats: FloatArray
    downbeat_confidence: float

    @property
    def period_s(self) -> float:
        return 60.0 / self.bpm

    @property
    def bar_s(self) -> float:
        return BEATS_PER_BAR * self.period_s


@dataclass(frozen=True, slots=True)
class Key:
    tonic: str
    mode: str  # "major" | "minor"
    confidence: float

    @property
    def name(self) -> str:
        return f"{self.tonic} {self.mode}"


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything :func:`analyse` measures; ``beats``/``key`` are ``None`` for SFX or where undefined."""

    beats: Beats | None
    key: Key | None
    loudness_lufs: float
    loudness_range_lu: float | None
    true_peak_dbtp: float


def for_analysis(audio: Audio) -> Audio:
    """``audio`` mixed to mono at :data:`ANALYSIS_RATE` (a no-op for audio already in that form, so
    :func:`analyse` converts once for all its measurements)."""
    from gen_server.audio.postprocess import resample  # postprocess -> contract -> looping -> here

    if audio.channels == 1 and audio.sample_rate == ANALYSIS_RATE:
        return audio
    return resample(
        Audio(audio.samples.mean(axis=0, keepdims=True).astype(np.float32), audio.sample_rate), ANALYSIS_RATE
    )


def mono(audio: Audio) -> npt.NDArray[np.float32]:
    """The samples of :func:`for_analysis`."""
    return np.asarray(for_analysis(audio).samples[0], dtype=np.float32)


def _onset_envelope(y: npt.NDArray[np.float32], *, fmax: float | None = None) -> FloatArray:
    import librosa

    if fmax is None:
        return np.asarray(librosa.onset.onset_strength(y=y, sr=ANALYSIS_RATE, hop_length=HOP))
    return np.asarray(
        librosa.onset.onset_strength(y=y, sr=ANALYSIS_RATE, hop_length=HOP, fmax=fmax, n_mels=32)
    )


def detect_beats(audio: Audio, *, hint_bpm: float | None = None) -> Beats | None:
    """Tempo, beats and downbeats of ``audio``; ``None`` when fewer than four beats are found.

    Args:
        hint_bpm: The expected tempo (e.g. the one asked for): the tracker starts from it, so a clip
            at 120 BPM is not reported at its double or half.
    """
    import librosa

    y = mono(audio)
    if y.size < ANALYSIS_RATE or not np.any(y):
        return None
    envelope = _onset_envelope(y)
    if not np.any(envelope > 0):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, frames = librosa.beat.beat_track(
            onset_envelope=envelope,
            sr=ANALYSIS_RATE,
            hop_length=HOP,
            start_bpm=hint_bpm if hint_bpm else 120.0,
            tightness=400 if hint_bpm else 100,
            trim=False,
        )
    frames = np.asarray(frames)
    if frames.size < MIN_BEATS:
        return None
    times = _peak_times(envelope, frames)
    slope, on_grid = _beat_period(times)
    if slope <= 0:
        return None
    times = times[on_grid]
    low = _onset_envelope(y, fmax=200.0)
    downbeats, confidence = _downbeats(times, low)
    return Beats(
        bpm=60.0 / slope,
        beats=times,
        downbeats=downbeats,
        downbeat_confidence=confidence,
    )


def _peak_times(envelope: FloatArray, frames: npt.NDArray[np.int64]) -> FloatArray:
    """Beat times at the onset envelope's peak near each tracked frame, to a fraction of a frame
    (parabolic interpolation through the peak and its neighbours)."""
    times = np.empty(frames.size)
    last = envelope.size - 1
    for i, frame in enumerate(frames):
        lo, hi = max(0, int(frame) - 2), min(last, int(frame) + 2)
        peak = lo + int(np.argmax(envelope[lo : hi + 1]))
        offset = 0.0
        if 0 < peak < last:
            a, b, c = envelope[peak - 1], envelope[peak], envelope[peak + 1]
            denominator = a - 2 * b + c
            offset = 0.5 * (a - c) / denominator if denominator < 0 else 0.0
        times[i] = (peak + offset) * HOP / ANALYSIS_RATE
    return times


def _beat_period(times: FloatArray) -> tuple[float, npt.NDArray[np.bool_]]:
    """Seconds per beat and which beats are on the grid: each beat numbered by its position on the
    grid (a skipped or doubled beat does not bend the line), a robust line through them, then a
    least-squares line through the beats within 10 % of a beat of it (an edge beat or a
    syncopation leaves the fit)."""
    keep = np.ones(times.size, dtype=bool)
    period = float(np.median(np.diff(times)))
    if period <= 0:
        return 0.0, keep
    index = np.round((times - times[0]) / period)
    # start from a robust line (Theil-Sen: the median slope over all pairs), which outliers cannot pull
    i, j = np.triu_indices(times.size, 1)
    steps = index[j] - index[i]
    period = float(np.median((times[j] - times[i])[steps > 0] / steps[steps > 0]))
    offset = float(np.median(times - period * index))
    for _ in range(2):
        on_grid = np.abs(times - (offset + period * index)) < 0.1 * period
        if on_grid.sum() < MIN_BEATS:
            break
        keep = on_grid
        period, offset = (float(v) for v in np.polyfit(index[keep], times[keep], 1))
    return period, keep


def _downbeats(beats: FloatArray, low_envelope: FloatArray) -> tuple[FloatArray, float]:
    """The bar phase whose beats carry the most low-frequency onset energy, and its share of it."""
    frames = np.clip(np.round(beats * ANALYSIS_RATE / HOP).astype(int), 0, low_envelope.size - 1)
    # the strongest frame within +-2 frames of each beat (tracked beats can sit a frame off the peak)
    strength = np.array(
        [low_envelope[max(0, f - 2) : f + 3].max() if low_envelope.size else 0.0 for f in frames]
    )
    scores = np.array(
        [
            strength[p::BEATS_PER_BAR].mean() if strength[p::BEATS_PER_BAR].size else 0.0
            for p in range(BEATS_PER_BAR)
        ]
    )
    phase = int(np.argmax(scores))
    total = float(scores.sum())
    confidence = float(scores[phase] / total) if total > 0 else 0.0
    return beats[phase::BEATS_PER_BAR].astype(np.float64), round(confidence, 3)


def detect_key(audio: Audio) -> Key | None:
    """Tonic and mode by Krumhansl-Kessler profile correlation; ``None`` for silence."""
    import librosa

    y = mono(audio)
    if not np.any(y):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chroma = librosa.feature.chroma_cqt(y=y, sr=ANALYSIS_RATE, hop_length=2048)
    profile = chroma.mean(axis=1)
    if not np.any(profile > 0) or np.ptp(profile) == 0:
        return None
    best: tuple[float, int, str] = (-2.0, 0, "major")
    for mode, template in (("major", _MAJOR), ("minor", _MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(profile, np.roll(template, tonic))[0, 1])
            if r > best[0]:
                best = (r, tonic, mode)
    r, tonic, mode = best
    return Key(tonic=PITCH_CLASSES[tonic], mode=mode, confidence=round(max(0.0, r), 3))


def loudness_range_lu(audio: Audio) -> float | None:
    """EBU Tech 3342 loudness range (LU); ``None`` for clips shorter than one 3 s window."""
    import pyloudnorm

    rate = audio.sample_rate
    window = int(SHORT_TERM_S * rate)
    if audio.frames < window:
        return None
    hop = int(SHORT_TERM_HOP_S * rate)
    x = audio.samples.astype(np.float64).T
    meter = pyloudnorm.Meter(rate, block_size=SHORT_TERM_S)
    values = []
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        for start in range(0, audio.frames - window + 1, hop):
            block = x[start : start + window]
            value = float(meter.integrated_loudness(block if block.shape[1] > 1 else block[:, 0]))
            if math.isfinite(value) and value > -70.0:
                values.append(value)
    if not values:
        return None
    short_term = np.array(values)
    relative_gate = 10 * math.log10(float(np.mean(10 ** (short_term / 10)))) - 20.0
    gated = short_term[short_term > relative_gate]
    if gated.size == 0:
        return None
    return float(np.percentile(gated, 95) - np.percentile(gated, 10))


def analyse(audio: Audio, kind: str, *, hint_bpm: float | None = None) -> Analysis:
    """Measure a finished clip: beats and key for music, loudness figures for music and SFX."""
    from gen_server.audio.postprocess import loudness_lufs, true_peak_dbtp

    musical = kind == "music"
    converted = for_analysis(audio) if musical else audio
    return Analysis(
        beats=detect_beats(converted, hint_bpm=hint_bpm) if musical else None,
        key=detect_key(converted) if musical else None,
        loudness_lufs=loudness_lufs(audio),
        loudness_range_lu=loudness_range_lu(audio),
        true_peak_dbtp=true_peak_dbtp(audio),
    )


# ------------------------------------------------------------------------------------ loop seams

SEAM_FRAME = 1024
SEAM_HOP = 256


@dataclass(frozen=True, slots=True)
class Seam:
    """How a loop's wrap-around (last sample -> first sample) compares with the clip's own interior.

    ``jump``: the absolute sample step at the wrap (largest over channels); ``interior_jump``: the
    median of the clip's own sample-to-sample steps. ``flux``: the spectral flux across the wrap, the
    L2 distance between the magnitude spectra of the frame that ends there and the frame that starts
    there (Hann-windowed, :data:`SEAM_FRAME` samples); ``interior_flux``: the median of the same
    frame-to-frame distance at every :data:`SEAM_HOP` samples inside the clip (for a music loop, at its
    interior bar lines: the wrap is a bar line). A loop is seamless when both ratios are at most 1:
    the wrap is no rougher than a typical moment (or bar line) of the clip itself.
    """

    jump: float
    interior_jump: float
    flux: float
    interior_flux: float

    @property
    def jump_ratio(self) -> float:
        return self.jump / self.interior_jump if self.interior_jump > 0 else math.inf

    @property
    def flux_ratio(self) -> float:
        return self.flux / self.interior_flux if self.interior_flux > 0 else math.inf


def _magnitudes(y: FloatArray, starts: npt.NDArray[np.int64], frame: int) -> FloatArray:
    window = np.hanning(frame)
    return np.abs(np.fft.rfft(np.stack([y[s : s + frame] * window for s in starts]), axis=1))


def frame_flux(y: FloatArray, at: npt.NDArray[np.int64], frame: int = SEAM_FRAME) -> FloatArray:
    """Spectral flux between ``y[i - frame:i]`` and ``y[i:i + frame]`` for each ``i`` in ``at``."""
    flux: FloatArray = np.linalg.norm(_magnitudes(y, at - frame, frame) - _magnitudes(y, at, frame), axis=1)
    return flux


def interior(
    audio: Audio, frame: int = SEAM_FRAME, bar_lines_s: FloatArray | None = None
) -> tuple[float, float]:
    """The clip's median sample step and median frame-to-frame flux (the loop-seam yardsticks).

    ``bar_lines_s``: measure the flux only at these times (a music loop's wrap is a bar line, where
    the music itself changes most: it is compared with the clip's other bar lines).
    """
    x = audio.samples.astype(np.float64)
    if x.shape[1] < 4 * frame:
        raise ValueError(f"clip too short to measure a loop seam (< {4 * frame} samples)")
    steps = np.abs(np.diff(x, axis=1)).max(axis=0)
    at = np.arange(frame, x.shape[1] - frame + 1, SEAM_HOP)
    if bar_lines_s is not None:
        bars = np.round(np.asarray(bar_lines_s) * audio.sample_rate).astype(np.int64)
        bars = bars[(bars >= frame) & (bars <= x.shape[1] - frame)]
        at = bars if bars.size else at
    return float(np.median(steps)), float(np.median(frame_flux(x.mean(axis=0), at, frame)))


def wrap_roughness(audio: Audio, frame: int = SEAM_FRAME) -> tuple[float, float]:
    """Sample jump and spectral flux where ``audio`` wraps around (end -> start) on repeat."""
    x = audio.samples.astype(np.float64)
    jump = float(np.abs(x[:, 0] - x[:, -1]).max())
    y = x.mean(axis=0)
    around = np.concatenate([y[-frame:], y[:frame]])
    return jump, float(frame_flux(around, np.array([frame]), frame)[0])


def seam(audio: Audio, frame: int = SEAM_FRAME, bar_lines_s: FloatArray | None = None) -> Seam:
    """Measure the discontinuity where ``audio`` wraps around when played on repeat (against its
    interior, or against its bar lines ``bar_lines_s`` for music: see :func:`interior`)."""
    interior_jump, interior_flux = interior(audio, frame, bar_lines_s)
    jump, flux = wrap_roughness(audio, frame)
    return Seam(jump=jump, interior_jump=interior_jump, flux=flux, interior_flux=interior_flux)
