"""A music or sfx job's editing steps around post-processing: exact tempo, loops, analysis.

:func:`workers.pipeline.finish` runs, for every clip:

1. :func:`shape` on the model's audio: a job with ``tempo_bpm`` is measured and time-stretched to it
   (then trimmed to its length unless it loops); a loop job gets its cut planned: the first downbeat
   with room for the loop's whole bars (music) or a quiet point (sfx).
2. post-processing of the whole shaped clip (for a loop: no trim, no fades, since the loop is cut
   from inside it afterwards), watermarking;
3. :func:`cut_loop`: the loop cut and crossfaded (:func:`gen_server.audio.looping.make_loop`) from the
   marked audio, so the mark and the level carry across the wrap;
4. :func:`analysis_of` the file as stored: tempo, beats, key, loudness.

The DSP lives in :mod:`gen_server.audio.analysis` and :mod:`gen_server.audio.looping`; this module only
reads the job's spec and decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gen_server.audio import Audio, looping
from gen_server.audio import analysis as measure
from gen_server.contract.result import AudioAnalysis, LoopInfo, TempoFit
from gen_server.contract.spec import JobSpec

MAX_BACKTRACK_S = 0.04
"""A downbeat found at its onset's peak moves back at most this far, to where the attack starts."""


@dataclass(frozen=True, slots=True)
class LoopPlan:
    start_s: float
    length_s: float
    crossfade_s: float
    search_s: float
    quiet: bool
    bars: int | None = None
    bar_s: float | None = None


@dataclass(slots=True)
class Shaped:
    """The audio post-processing starts from, and what :func:`shape` decided on the way."""

    audio: Audio
    tempo: TempoFit | None = None
    loop: LoopPlan | None = None
    warnings: list[str] = field(default_factory=list)


def generation_seconds(spec: JobSpec) -> float | None:
    """Seconds the model must make for ``spec`` (its kept length plus room for a stretch or a cut)."""
    if spec.duration_s is None:
        return None
    return looping.generation_seconds(
        spec.kind, spec.duration_s, tempo_bpm=spec.tempo_bpm, loop=spec.loop, loop_bars=spec.loop_bars
    )


def model_prompt(spec: JobSpec) -> str:
    """The text the model is conditioned on: a music job's tempo is added unless its prompt names one."""
    if spec.tempo_bpm is None or "bpm" in spec.prompt.lower():
        return spec.prompt
    return f"{spec.prompt}, {spec.tempo_bpm:g} bpm"


def shape(spec: JobSpec, audio: Audio) -> Shaped:
    """Bring the model's ``audio`` to the job's tempo and plan its loop (see the module docstring)."""
    shaped = Shaped(audio)
    if spec.tempo_bpm is not None:
        _fit_tempo(shaped, spec.tempo_bpm)
    if spec.loop and spec.duration_s is not None:
        shaped.loop = _plan_loop(shaped, spec) if spec.kind == "music" else _quiet_plan(spec.duration_s)
    elif spec.duration_s is not None and spec.tempo_bpm is not None:
        shaped.audio = looping.trim_to(shaped.audio, spec.duration_s)
    return shaped


def _fit_tempo(shaped: Shaped, target: float) -> None:
    beats = measure.detect_beats(shaped.audio, hint_bpm=target)
    if beats is None:
        shaped.tempo = TempoFit(requested_bpm=target, generated_bpm=None, stretch=1.0)
        shaped.warnings.append(f"no beat found in the generated audio: not stretched to {target:g} BPM")
        return
    generated = looping.octave_fold(beats.bpm, target)
    shaped.audio, factor = looping.stretch_to_tempo(shaped.audio, generated, target)
    shaped.tempo = TempoFit(requested_bpm=target, generated_bpm=round(generated, 2), stretch=round(factor, 4))
    if abs(factor - 1.0) > looping.MAX_STRETCH:
        shaped.warnings.append(
            f"the model made {generated:.1f} BPM: stretched by {100 * (factor - 1):+.1f} % to {target:g} BPM "
            f"(beyond +-{100 * looping.MAX_STRETCH:.0f} %, artefacts likely; another seed may land closer)"
        )


def _quiet_plan(length_s: float) -> LoopPlan:
    half = looping.SFX_SLACK_S / 2
    return LoopPlan(
        start_s=half, length_s=length_s, crossfade_s=looping.SFX_CROSSFADE_S, search_s=half, quiet=True
    )


def _plan_loop(shaped: Shaped, spec: JobSpec) -> LoopPlan:
    """Whole bars from the first downbeat that leaves room for them (fewer bars when the model's
    tempo is slower than room was made for, unless ``loop_bars`` fixed them)."""
    assert spec.duration_s is not None
    analysed = measure.for_analysis(shaped.audio)  # mono at the analysis rate, once for both steps
    beats = measure.detect_beats(analysed, hint_bpm=spec.tempo_bpm)
    if beats is None or beats.downbeats.size == 0:
        shaped.warnings.append("no beat found: the loop is cut at a smooth point, not on bar lines")
        return _quiet_plan(spec.duration_s)
    bpm = spec.tempo_bpm or beats.bpm
    bar = looping.bar_seconds(bpm)
    crossfade = looping.music_crossfade_s(bpm)
    search = looping.MUSIC_SEARCH_S
    room = shaped.audio.duration_s - crossfade - search
    starts = _attack_starts(analysed, beats.downbeats)
    bars = spec.loop_bars or looping.loop_bars_for(spec.duration_s, bpm)
    for n in range(bars, 0 if spec.loop_bars is None else bars - 1, -1):
        for start in starts:
            if start >= search and start + n * bar <= room:
                if n < bars:
                    shaped.warnings.append(
                        f"the model's audio held {n} whole bars from a downbeat, not {bars}"
                    )
                return LoopPlan(start, n * bar, crossfade, search, quiet=False, bars=n, bar_s=bar)
    shaped.warnings.append(f"no downbeat left room for {bars} bars: the loop is cut at a smooth point")
    return _quiet_plan(
        min(spec.duration_s, shaped.audio.duration_s - looping.SFX_SLACK_S - looping.SFX_CROSSFADE_S)
    )


def _attack_starts(audio: Audio, downbeats: np.ndarray) -> list[float]:
    """Each downbeat moved back to where its attack starts (librosa's onset backtracking to the energy
    minimum before it, at most :data:`MAX_BACKTRACK_S`): a loop cut there keeps the whole attack."""
    import librosa

    y = measure.mono(audio)
    energy = librosa.feature.rms(y=y, frame_length=512, hop_length=64)[0]
    frames = np.round(downbeats * measure.ANALYSIS_RATE / 64).astype(int)
    frames = np.clip(frames, 0, energy.size - 1)
    backtracked = librosa.onset.onset_backtrack(frames, energy) * 64 / measure.ANALYSIS_RATE
    return [float(max(d - MAX_BACKTRACK_S, b)) for d, b in zip(downbeats, backtracked, strict=True)]


def cut_loop(shaped: Shaped, audio: Audio) -> tuple[Audio, LoopInfo | None]:
    """The planned loop cut from ``audio`` (the shaped clip, post-processed and marked)."""
    plan = shaped.loop
    if plan is None:
        return audio, None
    loop, cut = looping.make_loop(
        audio,
        plan.start_s,
        plan.length_s,
        crossfade_s=plan.crossfade_s,
        search_s=plan.search_s,
        quiet=plan.quiet,
        bar_s=plan.bar_s,
    )
    return loop, LoopInfo(
        bars=plan.bars,
        length_s=round(cut.length_s, 4),
        crossfade_s=round(cut.crossfade_s, 4),
        seam_jump_ratio=_rounded(cut.seam.jump_ratio),
        seam_flux_ratio=_rounded(cut.seam.flux_ratio),
    )


def analysis_of(spec: JobSpec, audio: Audio) -> AudioAnalysis | None:
    """Tempo, beats, key (music) and loudness (music, sfx) of the stored clip; none for speech."""
    if spec.kind not in ("music", "sfx"):
        return None
    found = measure.analyse(audio, spec.kind, hint_bpm=spec.tempo_bpm)
    beats, key = found.beats, found.key
    return AudioAnalysis(
        tempo_bpm=round(beats.bpm, 2) if beats else None,
        beats_s=[round(float(t), 3) for t in beats.beats] if beats else None,
        downbeats_s=[round(float(t), 3) for t in beats.downbeats] if beats else None,
        downbeat_confidence=beats.downbeat_confidence if beats else None,
        key=key.name if key else None,
        key_confidence=key.confidence if key else None,
        loudness_lufs=_rounded(found.loudness_lufs),
        loudness_range_lu=_rounded(found.loudness_range_lu),
        true_peak_dbtp=_rounded(found.true_peak_dbtp),
    )


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None
