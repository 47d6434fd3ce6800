"""Editable timelines of a scene: OpenTimelineIO (:func:`timeline_otio`) and Reaper (:func:`reaper_project`).

Both describe one :class:`SceneTimeline` (built by :func:`gen_server.scene_export.scene_timeline`):
per scene track a stem (one file on the scene's whole timeline, aligned with it: second ``t`` of the
stem plays at second ``t`` of the scene) played at the track's gain, per item a clip of that stem
from where the item starts, and one master gain. What the stems carry and what these gains do:
:mod:`gen_server.audio.stems`.

``timeline.otio`` is built with the ``opentimelineio`` API (Apache-2.0). The ``.rpp`` is written by
hand: it is plain text, and no maintained Python writer for it exists; it follows Reaper's project
"state chunks" as the ReaTeam ``State Chunk Definitions`` document them (``REAPER_PROJECT``,
``MASTER_VOLUME``, ``TRACK`` with ``VOLPAN``, ``ITEM`` with ``POSITION``, ``LENGTH``, ``SOFFS``, ``FADEIN``,
``FADEOUT``, ``VOLPAN`` and a ``SOURCE`` block naming the ``FILE``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Final

from gen_server.audio.stems import StemLevels

REAPER_SOURCES: Final[dict[str, str]] = {"wav": "WAVE", "flac": "FLAC", "mp3": "MP3", "ogg": "OPUS"}
"""Reaper's source type per file format (it picks the decoder by this, not by the file); ``ogg`` is Opus."""
RELATION: Final[str] = (
    "sum over tracks of stem * 10^(track gain_db/20) * 10^(master_gain_db/20) = 10^(loudness_gain_db/20) "
    "* the mix before mastering: the mix at the scene's loudness target. Stems carry item gains, pans, "
    "fades and ducking. Not in the timeline: the master's 5 Hz DC high-pass and, when limited, its "
    "limiter (which it drives a few dB harder to hold the target)"
)


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """A scene item on the timeline (frames at the mix rate; its stem is aligned with the scene).

    Attributes:
        label, path, job_id, kind: Which item (its ``id`` or path, ``tracks[T].items[I]``, its job).
        start, stop: Where the item plays, frames ``[start, stop)`` of the scene and of its stem.
        clip_start, clip_stop: The part its timeline clip covers: from ``start`` to the next item's
            start on the track (or ``stop``); equal when another item starts at the same frame.
        gain_db, pan, fade_in_s, fade_out_s: The item's own settings (baked into the stem).
        ducked: The item ducked under speech (baked into the stem).
    """

    label: str
    path: str
    job_id: str
    kind: str
    start: int
    stop: int
    clip_start: int
    clip_stop: int
    gain_db: float
    pan: float
    fade_in_s: float
    fade_out_s: float
    ducked: bool


@dataclass(frozen=True, slots=True)
class TimelineTrack:
    """A scene track: its stem (path in the bundle), its gain (dB) and its items by start."""

    name: str
    file: str
    gain_db: float
    items: tuple[TimelineItem, ...]


@dataclass(frozen=True, slots=True)
class SceneTimeline:
    """What both timeline files describe: the scene's tracks, length and levels."""

    scene_id: str
    name: str
    sample_rate: int
    channels: int
    frames: int
    levels: StemLevels
    tracks: tuple[TimelineTrack, ...]

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def levels_metadata(tl: SceneTimeline) -> dict[str, Any]:
    """The levels (:class:`~gen_server.audio.stems.StemLevels`, dB) and how they relate, as JSON."""
    levels = {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(tl.levels).items()}
    return {**levels, "relation": RELATION}


def timeline_otio(tl: SceneTimeline) -> str:
    """The timeline as OpenTimelineIO JSON (``.otio``), built with the ``opentimelineio`` API.

    One audio :class:`~opentimelineio.schema.Track` per scene track, its stem's gain in
    ``metadata["soundry"]["gain_db"]``; per item a :class:`~opentimelineio.schema.Clip` whose media
    reference is the stem (its path in the bundle, relative to this file) and whose ``source_range``
    is the item's span in the stem (``clip_start`` to ``clip_stop``), with :class:`~opentimelineio.schema.Gap`
    s for the offsets, so the clip sits at its item's start; the item's settings in the clip's
    ``metadata["soundry"]``. The master and stem levels are in the timeline's ``metadata["soundry"]``.
    Times are in frames at the mix rate.
    """
    import opentimelineio as otio

    rate = float(tl.sample_rate)

    def span(start: int, frames: int) -> otio.opentime.TimeRange:
        return otio.opentime.TimeRange(
            otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(frames, rate)
        )

    timeline = otio.schema.Timeline(name=tl.name, global_start_time=otio.opentime.RationalTime(0, rate))
    timeline.metadata["soundry"] = {
        "scene_id": tl.scene_id,
        "sample_rate": tl.sample_rate,
        "channels": tl.channels,
        "duration_s": round(tl.duration_s, 6),
        **levels_metadata(tl),
    }
    for track in tl.tracks:
        lane = otio.schema.Track(name=track.name, kind=otio.schema.TrackKind.Audio)
        lane.metadata["soundry"] = {"gain_db": track.gain_db, "stem": track.file}
        cursor = 0
        for item in track.items:
            if item.clip_stop <= item.clip_start:
                continue
            if item.clip_start > cursor:
                lane.append(otio.schema.Gap(source_range=span(0, item.clip_start - cursor)))
            clip = otio.schema.Clip(
                name=item.label,
                media_reference=otio.schema.ExternalReference(
                    target_url=track.file, available_range=span(0, tl.frames)
                ),
                source_range=span(item.clip_start, item.clip_stop - item.clip_start),
            )
            clip.metadata["soundry"] = {
                "item": item.path,
                "job_id": item.job_id,
                "kind": item.kind,
                "start_s": round(item.start / rate, 6),
                "end_s": round(item.stop / rate, 6),
                "gain_db": item.gain_db,
                "pan": item.pan,
                "fade_in_s": item.fade_in_s,
                "fade_out_s": item.fade_out_s,
                "ducked": item.ducked,
                "baked_into_stem": ["gain_db", "pan", "fade_in_s", "fade_out_s", "ducking"],
            }
            lane.append(clip)
            cursor = item.clip_stop
        if cursor < tl.frames:
            lane.append(otio.schema.Gap(source_range=span(0, tl.frames - cursor)))
        timeline.tracks.append(lane)
    return str(otio.adapters.write_to_string(timeline, "otio_json"))


def _num(value: float) -> str:
    """A number as Reaper writes it: up to 14 decimals, no trailing zeros."""
    text = f"{value:.14f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _quote(text: str) -> str:
    """A string field: in double quotes, or single quotes / backticks when it holds double quotes."""
    text = re.sub(r"[\r\n\t]+", " ", text)
    for mark in ('"', "'", "`"):
        if mark not in text:
            return f"{mark}{text}{mark}"
    return "`" + text.replace("`", "'") + "`"


def _guid(scene_id: str, *parts: object) -> str:
    """A GUID in Reaper's spelling, always the same for one scene and part (redelivery writes the same)."""
    name = "/".join(str(p) for p in ("soundry", scene_id, *parts))
    return "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, name)).upper() + "}"


def _linear(gain_db: float) -> str:
    return _num(10.0 ** (gain_db / 20.0))


def reaper_project(tl: SceneTimeline, *, created_at: float = 0.0) -> str:
    """The timeline as a Reaper project (``.rpp``), plain text in Reaper's state-chunk format.

    ``MASTER_VOLUME`` is the master gain and each ``TRACK``'s ``VOLPAN`` its gain (linear, 1 = 0 dB,
    centre pan). Each item is an ``ITEM`` at ``POSITION``/``LENGTH`` (its clip's span, seconds), reading
    its stem from ``SOFFS`` = its position (the stem is aligned with the scene), with unity ``VOLPAN``
    and zero-length ``FADEIN``/``FADEOUT`` (gain, pan and fades are in the stem; the item's notes
    say which), ``LOOP 0`` and a ``SOURCE`` of the file's type whose ``FILE`` is the stem's path
    relative to the project.

    Args:
        tl: The timeline.
        created_at: Unix time written in the header.
    """
    rate = tl.sample_rate
    fmt = tl.tracks[0].file.rsplit(".", 1)[-1] if tl.tracks else "wav"
    source = REAPER_SOURCES.get(fmt, "WAVE")
    levels = tl.levels
    lines = [
        f'<REAPER_PROJECT 0.1 "6.0/soundry" {int(created_at)}',
        "  RIPPLE 0",
        f"  SAMPLERATE {rate} 1 0",
        f"  MASTER_NCH {tl.channels} {tl.channels}",
        f"  MASTER_VOLUME {_linear(levels.master_gain_db)} 0 -1 -1 1",
        "  <NOTES 0 2",
        f"    |Soundry scene {tl.name} ({tl.scene_id}): {len(tl.tracks)} stems, {tl.duration_s:.3f} s.",
        f"    |Master gain {levels.master_gain_db:+.2f} dB; track gains on the tracks.",
        "    |Stems carry item gains, pans, fades and ducking. Played here, they make the mix at the",
        "    |scene's loudness target"
        + (", before the limiter the scene's master used on its peaks." if levels.limited else "."),
        "  >",
    ]
    for t, track in enumerate(tl.tracks):
        lines += [
            f"  <TRACK {_guid(tl.scene_id, 'track', t)}",
            f"    NAME {_quote(track.name)}",
            f"    VOLPAN {_linear(track.gain_db)} 0 -1 -1 1",
            "    MUTESOLO 0 0 0",
            f"    NCHAN {max(2, tl.channels)}",
        ]
        for n, item in enumerate(track.items):
            if item.clip_stop <= item.clip_start:
                continue
            position = item.clip_start / rate
            note = (
                f"{item.path} ({item.kind}, job {item.job_id}): gain {item.gain_db:+g} dB, pan {item.pan:g}, "
                f"fade in {item.fade_in_s:g} s, fade out {item.fade_out_s:g} s"
                f"{', ducked under speech' if item.ducked else ''} (in the stem)"
            )
            lines += [
                "    <ITEM",
                f"      POSITION {_num(position)}",
                "      SNAPOFFS 0",
                f"      LENGTH {_num((item.clip_stop - item.clip_start) / rate)}",
                "      LOOP 0",
                "      ALLTAKES 0",
                "      FADEIN 1 0 0 1 0 0 0",
                "      FADEOUT 1 0 0 1 0 0 0",
                "      MUTE 0 0",
                "      SEL 0",
                f"      IGUID {_guid(tl.scene_id, 'item', t, n)}",
                "      <NOTES",
                f"        |{note}",
                "      >",
                f"      NAME {_quote(item.label)}",
                "      VOLPAN 1 0 1 -1",
                f"      SOFFS {_num(position)}",
                "      PLAYRATE 1 1 0 -1 0 0.0025",
                "      CHANMODE 0",
                f"      GUID {_guid(tl.scene_id, 'take', t, n)}",
                f"      <SOURCE {source}",
                f"        FILE {_quote(track.file)}",
                "      >",
                "    >",
            ]
        lines.append("  >")
    lines.append(">")
    return "\n".join(lines) + "\n"
