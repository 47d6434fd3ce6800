"""Scene exports: a mixed scene's stems, captions and editable timelines, and the zip that carries them.

A scene submitted with ``export: true`` gets, beside its mix (:func:`export_scene`, run by the mixing
task once the mix is stored; every file an artifact keyed from the scene id,
:func:`~gen_server.storage.export_key`):

* one stem per track (:mod:`gen_server.audio.stems`: what is baked in and what the timeline applies),
  on the scene's whole timeline, in the mix's length, rate, channels and file format, watermarked
  with the scene's payload like every output;
* captions (WebVTT and SRT, :func:`gen_server.captions.render`) from the scene's words, when it has speech;
* ``timeline.otio`` (OpenTimelineIO) and ``project.rpp`` (Reaper), written by
  :mod:`gen_server.timelines` from :func:`scene_timeline`: the stems at their track gains and a
  master gain, one clip per item.

Items of one track that overlap (a crossfade) are already summed in the stem, so their timeline clips
are cut where the later one starts: clip ``i`` covers its item from its start to the next item's start
(or its end), and the clips of a track tile the stem without playing any part of it twice.

:func:`write_bundle` zips the stored files for ``GET /v1/scenes/{id}/export?format=zip``::

    <scene name>/mix.<fmt>
    <scene name>/stems/01-<track name>.<fmt>       one per track
    <scene name>/captions.vtt, captions.srt         scenes with speech only
    <scene name>/timeline.otio
    <scene name>/project.rpp
    <scene name>/manifest.json                      the scene's manifest: components, levels, files
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import zipfile
from typing import IO, Any, Final

from gen_server.audio.encode import encode, read_tags
from gen_server.audio.mix import MixResult
from gen_server.audio.stems import StemLevels, stem, stem_levels
from gen_server.audio.watermark import Watermarker, payload_for_job
from gen_server.captions import CaptionFormat, render
from gen_server.content_credentials import Signing, sign_job_file
from gen_server.contract.result import JobResult
from gen_server.contract.scene import PlannedTrack, ScenePlan
from gen_server.storage import ArtifactStore, export_key
from gen_server.timelines import (
    REAPER_SOURCES,
    SceneTimeline,
    TimelineItem,
    TimelineTrack,
    levels_metadata,
    reaper_project,
    timeline_otio,
)

BUNDLE_FORMATS: Final[tuple[str, ...]] = ("zip",)
STEMS_DIR: Final[str] = "stems"
TIMELINE_NAME: Final[str] = "timeline.otio"
REAPER_NAME: Final[str] = "project.rpp"
MANIFEST_NAME: Final[str] = "manifest.json"
CAPTION_FORMATS: Final[tuple[CaptionFormat, ...]] = ("vtt", "srt")
_AUDIO_FORMATS: Final[tuple[str, ...]] = tuple(REAPER_SOURCES)  # the formats a scene is made in


# ------------------------------------------------------------------------------------------ names


def slug(name: str, fallback: str = "track") -> str:
    """``name`` as a file-name part: letters, digits, ``_.-`` (runs of anything else become ``-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:48] or fallback


def stem_name(track: int, name: str, fmt: str) -> str:
    """Path of track ``track``'s stem in the bundle: ``stems/01-voice.wav``."""
    return f"{STEMS_DIR}/{track + 1:02d}-{slug(name)}.{fmt}"


def mix_name(fmt: str) -> str:
    return f"mix.{fmt}"


# ------------------------------------------------------------------------------------------ timeline


def plan_tracks(plan: ScenePlan) -> tuple[PlannedTrack, ...]:
    """The plan's tracks (plans stored before exports existed: named ``track N``, gains in the items)."""
    if plan.tracks:
        return plan.tracks
    count = max(c.track for c in plan.components) + 1
    return tuple(PlannedTrack(name=f"track {t + 1}", gain_db=0.0) for t in range(count))


def track_clips(plan: ScenePlan) -> list[list[int]]:
    """Per track, the indices of its components (the mixer's clips, in plan order)."""
    groups: list[list[int]] = [[] for _ in plan_tracks(plan)]
    for i, component in enumerate(plan.components):
        groups[component.track].append(i)
    return groups


def scene_timeline(plan: ScenePlan, mixed: MixResult, levels: StemLevels, fmt: str) -> SceneTimeline:
    """The timeline of ``plan`` as mixed (:attr:`MixResult.placements`), stems named for ``fmt``."""
    tracks = plan_tracks(plan)
    out: list[TimelineTrack] = []
    for t, (track, clips) in enumerate(zip(tracks, track_clips(plan), strict=True)):
        placed = sorted(clips, key=lambda i: (mixed.placements[i].start, i))
        items: list[TimelineItem] = []
        covered = 0  # where the items so far end
        for n, i in enumerate(placed):
            c, p = plan.components[i], mixed.placements[i]
            covered = max(covered, p.stop)
            following = mixed.placements[placed[n + 1]].start if n + 1 < len(placed) else covered
            items.append(
                TimelineItem(
                    label=c.label,
                    path=c.path,
                    job_id=c.job_id,
                    kind=c.kind,
                    start=p.start,
                    stop=p.stop,
                    clip_start=p.start,
                    clip_stop=max(p.start, min(following, covered)),
                    gain_db=round(c.gain_db - track.gain_db, 6),
                    pan=c.pan,
                    fade_in_s=c.fade_in_s,
                    fade_out_s=c.fade_out_s,
                    ducked=i in mixed.duck_db and bool(mixed.duck_db[i].any()),
                )
            )
        out.append(TimelineTrack(track.name, stem_name(t, track.name, fmt), track.gain_db, tuple(items)))
    return SceneTimeline(
        scene_id=plan.scene_id,
        name=plan.name,
        sample_rate=mixed.audio.sample_rate,
        channels=mixed.audio.channels,
        frames=mixed.audio.frames,
        levels=levels,
        tracks=tuple(out),
    )


# ------------------------------------------------------------------------------------------ export


def export_scene(
    plan: ScenePlan,
    mixed: MixResult,
    result: JobResult,
    *,
    store: ArtifactStore,
    watermarker: Watermarker,
    watermark_key: bytes,
    created_at: float = 0.0,
    signing: Signing | None = None,
) -> dict[str, Any]:
    """Store the scene's stems, captions and timelines beside its mix; the manifest's ``export`` entry.

    Args:
        plan: The scene (``plan.export`` asked for this).
        mixed: Its mix before mastering, made with ``keep_parts``.
        result: The stored mix's result (format, words for the captions).
        store: Artifact storage (the mix is read from it for its tags; every file is written to it).
        watermarker: The worker's watermarker; stems carry the scene's payload.
        watermark_key: Key of the job payloads.
        created_at: Unix time for the Reaper project's header.
        signing: Signs each stem (WAV, MP3, FLAC) with C2PA Content Credentials, like the mix.

    Returns:
        ``{"format", "files": [{name, key, sha256, bytes}], "levels", "tracks", "relation"}``.
    """
    spec = plan.spec
    fmt = spec.format
    tracks = plan_tracks(plan)
    groups = track_clips(plan)
    post = spec.post
    levels = stem_levels(
        mixed,
        groups,
        [t.gain_db for t in tracks],
        target_lufs=post.target_lufs if post.target_lufs is not None else plan.target_lufs,
        true_peak_dbtp_ceiling=post.true_peak_dbtp,
    )
    payload = payload_for_job(spec.job_id, watermark_key)
    tags = read_tags(store.get(result.artifact), fmt)
    files: list[dict[str, Any]] = []

    def put(name: str, data: bytes) -> None:
        key = export_key(spec.job_id, name)
        store.put(key, data)
        files.append(
            {"name": name, "key": key, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        )

    for t, (track, clips) in enumerate(zip(tracks, groups, strict=True)):
        audio = watermarker.embed(stem(mixed, clips, levels.stem_gain_db - track.gain_db), payload)
        stem_tags = {**tags, "title": f"{plan.name}: {track.name}", "stem": track.name}
        data = encode(
            audio, fmt, wav_subtype=spec.wav_subtype, tags=stem_tags, bitrate_kbps=spec.bitrate_kbps
        )
        data, _ = sign_job_file(data, spec, signing, payload, [], stem=track.name)
        put(stem_name(t, track.name, fmt), data)
    if result.words:
        for caption_format in CAPTION_FORMATS:
            put(f"captions.{caption_format}", render(result.words, caption_format).encode())
    timeline = scene_timeline(plan, mixed, levels, fmt)
    put(TIMELINE_NAME, timeline_otio(timeline).encode())
    put(REAPER_NAME, reaper_project(timeline, created_at=created_at).encode())
    return {
        "format": fmt,
        "files": files,
        "levels": levels_metadata(timeline),
        "tracks": [
            {
                "name": track.name,
                "file": track.file,
                "gain_db": track.gain_db,
                "items": [item.path for item in track.items],
            }
            for track in timeline.tracks
        ],
    }


# ------------------------------------------------------------------------------------------ bundle


def bundle_root(name: str) -> str:
    """The folder a scene's bundle unpacks into: its name as a file name."""
    return slug(name, "scene")


def bundle_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The stored manifest as the bundle carries it: storage keys left out, the mix listed with the files."""
    out = copy.deepcopy(manifest)
    export = out.get("export") or {}
    result = out.get("result") or {}
    files = [{k: v for k, v in f.items() if k != "key"} for f in export.get("files", [])]
    mix = {"name": mix_name(str(result.get("format"))), "sha256": result.get("sha256")}
    export["files"] = [mix, *files]
    return out


def write_bundle(fh: IO[bytes], *, root: str, store: ArtifactStore, manifest: dict[str, Any]) -> None:
    """Zip a scene's export into ``fh``: ``<root>/`` holds the mix, stems, captions, timelines, manifest.

    Args:
        fh: A binary file open for writing.
        root: Folder name inside the zip (:func:`bundle_root`).
        store: Where the files are.
        manifest: The scene's stored manifest, with its ``export`` entry.

    Raises:
        NotFound: A listed file is missing from the store (expired).
    """
    result = manifest["result"]
    with zipfile.ZipFile(fh, "w") as zf:
        zf.writestr(f"{root}/{mix_name(result['format'])}", store.get(result["artifact"]), zipfile.ZIP_STORED)
        for entry in manifest["export"]["files"]:
            name = str(entry["name"])
            audio = name.rsplit(".", 1)[-1] in _AUDIO_FORMATS
            zf.writestr(
                f"{root}/{name}",
                store.get(entry["key"]),
                zipfile.ZIP_STORED if audio else zipfile.ZIP_DEFLATED,
            )
        text = json.dumps(bundle_manifest(manifest), indent=2) + "\n"
        zf.writestr(f"{root}/{MANIFEST_NAME}", text, zipfile.ZIP_DEFLATED)
