"""Scene exports: stems that sum back to the mix, timelines that point at them, the zip and its route.

The mixing task is played here with the real pieces it calls (``mix`` with ``keep_parts``,
``export_scene``, ``write_bundle``) on synthetic component audio; the timelines are read back with
``opentimelineio`` and a small ``.rpp`` reader, and the stems are decoded with soundfile.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import opentimelineio as otio
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from gen_server.audio import Audio
from gen_server.audio.encode import encode
from gen_server.audio.mix import Clip, MixResult, clip_for, master, mix
from gen_server.audio.postprocess import loudness_lufs
from gen_server.audio.stems import STEM_PEAK_DBFS, stem, stem_levels
from gen_server.audio.watermark import Bands, Detection
from gen_server.contract.catalog import Catalog, build_catalog
from gen_server.contract.result import JobResult, WordTiming
from gen_server.contract.scene import ScenePlan
from gen_server.jobs import Caller, JobService
from gen_server.scene_export import export_scene, track_clips, write_bundle
from gen_server.scene_plan import build_scene, parse_scene
from gen_server.scenes import SceneService
from gen_server.settings import Settings
from gen_server.storage import ArtifactStore, LocalStore, audio_key, manifest_key
from tests.helpers import read_rpp, rpp_blocks, rpp_field

RATE = 16000
LIMIT_DB = -40.0


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog(Settings(dev_models=True))


def scene(**extra: Any) -> dict[str, Any]:
    """Speech over a ducked bed, and three effects on one track, two of them crossfading."""
    return {
        "name": "export test",
        "sample_rate": RATE,
        "channels": 2,
        "export": True,
        "format": "wav",
        "wav_subtype": "pcm24",
        "tracks": [
            {
                "name": "voice",
                "items": [{"kind": "speech", "id": "host", "text": "Hello there.", "start_s": 0.5}],
            },
            {
                "name": "bed",
                "gain_db": -3,
                "items": [
                    {
                        "kind": "music",
                        "id": "bed",
                        "prompt": "pads",
                        "duration_s": 4,
                        "gain_db": -2,
                        "fade_in_s": 0.5,
                        "fade_out_s": 1,
                    }
                ],
            },
            {
                "name": "fx / hits",
                "gain_db": 2,
                "items": [
                    {
                        "kind": "sfx",
                        "id": "whoosh",
                        "prompt": "w",
                        "duration_s": 1,
                        "start_s": 0.2,
                        "fade_out_s": 0.3,
                    },
                    {
                        "kind": "sfx",
                        "id": "boom",
                        "prompt": "b",
                        "duration_s": 1,
                        "start_s": 1.0,
                        "fade_in_s": 0.3,
                    },
                    {
                        "kind": "sfx",
                        "id": "chime",
                        "prompt": "c",
                        "duration_s": 0.5,
                        "start_s": 3.0,
                        "pan": 0.5,
                    },
                ],
            },
        ],
        **extra,
    }


def planned(catalog: Catalog, data: dict[str, Any]) -> ScenePlan:
    ids = iter(f"job{i}" for i in range(1000))
    return build_scene(parse_scene(data), catalog, scene_id="scene1", new_id=lambda: next(ids))[0]


def component_audio(plan: ScenePlan) -> list[Audio]:
    """Made-up component audio: noise for speech (1.5 s), stereo noise for music, tones for effects."""
    rng = np.random.default_rng(7)
    out = []
    for c in plan.components:
        seconds = 1.5 if c.kind == "speech" else float(c.duration_s or 1.0)
        n = round(seconds * RATE)
        if c.kind == "music":
            out.append(Audio((0.2 * rng.standard_normal((2, n))).astype(np.float32), RATE))
        elif c.kind == "sfx":
            t = np.arange(n) / RATE
            out.append(Audio.mono(0.3 * np.sin(2 * np.pi * rng.uniform(200, 900) * t), RATE))
        else:
            out.append(Audio.mono(0.1 * rng.standard_normal(n), RATE))
    return out


def clips_for(plan: ScenePlan, audios: list[Audio]) -> list[Clip]:
    """The mixer's view of the components (as the mixing task makes it)."""
    return [clip_for(c, audio) for c, audio in zip(plan.components, audios, strict=True)]


class NoMark:
    """A watermarker that leaves the audio alone (the sums are checked sample by sample)."""

    def embed(self, audio: Audio, payload: int, *, at_s: float = 0.0, bands: Bands | None = None) -> Audio:
        return audio

    def detect(self, audio: Audio) -> Detection:  # pragma: no cover - not used
        raise NotImplementedError


WORDS = [WordTiming(text="Hello", start_s=0.6, end_s=0.9, source="model"),
         WordTiming(text="there.", start_s=1.0, end_s=1.4, source="model")]  # fmt: skip


def play_mixing_task(
    plan: ScenePlan, store: ArtifactStore, *, speech: bool = True
) -> tuple[MixResult, JobResult, dict[str, Any]]:
    """What ``soundry.scene_mix`` does for ``plan``: mix, master, store the mix, then the export."""
    mixed = mix(
        clips_for(plan, component_audio(plan)),
        sample_rate=plan.sample_rate,
        channels=plan.channels,
        length_s=plan.length_s,
        keep_parts=plan.export,
    )
    spec = plan.spec
    final = master(mixed.audio, spec.post.target_lufs or plan.target_lufs, spec.post.true_peak_dbtp)
    data = encode(final, spec.format, wav_subtype=spec.wav_subtype, tags={"job_id": spec.job_id})
    result = JobResult(
        job_id=spec.job_id,
        artifact=audio_key(spec.job_id, spec.format),
        manifest=manifest_key(spec.job_id),
        format=spec.format,
        sample_rate=final.sample_rate,
        channels=final.channels,
        duration_s=round(final.duration_s, 4),
        seed=spec.seed,
        model=spec.model,
        sha256="0" * 64,
        watermark_payload="00000000",
        words=WORDS if speech else None,
    )
    store.put(result.artifact, data)
    manifest: dict[str, Any] = {
        "spec": spec.model_dump(mode="json"),
        "result": result.model_dump(mode="json"),
    }
    if plan.export:
        manifest["export"] = export_scene(
            plan, mixed, result, store=store, watermarker=NoMark(), watermark_key=b"k", created_at=1.0e9
        )
    store.put(result.manifest, json.dumps(manifest).encode())
    return mixed, result, manifest


def residual_db(got: npt.NDArray[np.floating[Any]], want: npt.NDArray[np.floating[Any]]) -> float:
    """Energy of ``got - want`` relative to ``want`` (dB)."""
    err = float(np.sum((np.asarray(got, np.float64) - np.asarray(want, np.float64)) ** 2))
    return 10 * math.log10(max(err, 1e-30) / float(np.sum(np.asarray(want, np.float64) ** 2)))


def at_target(mixed: MixResult, loudness_gain_db: float) -> npt.NDArray[np.float64]:
    """The mix before mastering, at the gain the master brings it to its loudness target with."""
    return mixed.audio.samples.astype(np.float64) * 10 ** (loudness_gain_db / 20)


# ------------------------------------------------------------------------------------------- stems


def test_stems_with_their_track_gains_sum_to_the_mix_before_mastering(catalog: Catalog) -> None:
    plan = planned(catalog, scene())
    mixed = mix(clips_for(plan, component_audio(plan)), sample_rate=RATE, channels=2, keep_parts=True)
    groups = track_clips(plan)
    gains = [t.gain_db for t in plan.tracks]
    assert gains == [0.0, -3.0, 2.0]
    levels = stem_levels(mixed, groups, gains, target_lufs=-16.0, true_peak_dbtp_ceiling=-1.5)
    assert levels.master_gain_db == pytest.approx(levels.loudness_gain_db - levels.stem_gain_db)
    stems = [stem(mixed, g, levels.stem_gain_db - gain) for g, gain in zip(groups, gains, strict=True)]
    assert all(s.samples.shape == mixed.audio.samples.shape for s in stems)
    with pytest.raises(ValueError, match="keep_parts"):
        mix(clips_for(plan, component_audio(plan)), sample_rate=RATE, channels=2).sum_of([0])
    summed = sum(s.samples.astype(np.float64) * 10 ** (g / 20) for s, g in zip(stems, gains, strict=True))
    # the timeline's track gains: the mix before mastering, times the gain the stems carry
    assert residual_db(summed, mixed.audio.samples * 10 ** (levels.stem_gain_db / 20)) < LIMIT_DB - 60
    # ... and with the master gain: the mix at the scene's loudness target
    timeline = summed * 10 ** (levels.master_gain_db / 20)
    assert residual_db(timeline, at_target(mixed, levels.loudness_gain_db)) < -100
    assert loudness_lufs(Audio(timeline.astype(np.float32), RATE)) == pytest.approx(-16.0, abs=0.05)
    # the bed's stem carries its ducking: quieter while the host speaks
    bed = stems[1].samples[0]
    under, alone = bed[round(1.0 * RATE) : round(1.8 * RATE)], bed[round(3.0 * RATE) : round(3.4 * RATE)]
    assert 20 * math.log10(np.std(alone) / np.std(under)) > 10


def test_loud_stems_are_turned_down_together_and_the_master_makes_it_up(catalog: Catalog) -> None:
    data = scene()
    data["tracks"][1]["gain_db"] = -20  # the bed's item gain +18 dB: its stem leaves its track gain out
    data["tracks"][1]["items"][0]["gain_db"] = 18
    plan = planned(catalog, data)
    mixed = mix(clips_for(plan, component_audio(plan)), sample_rate=RATE, channels=2, keep_parts=True)
    groups, gains = track_clips(plan), [t.gain_db for t in plan.tracks]
    levels = stem_levels(mixed, groups, gains, target_lufs=-16.0, true_peak_dbtp_ceiling=-1.5)
    assert levels.stem_gain_db < levels.loudness_gain_db and levels.master_gain_db > 0
    stems = [stem(mixed, g, levels.stem_gain_db - gain) for g, gain in zip(groups, gains, strict=True)]
    peak = max(float(np.max(np.abs(s.samples))) for s in stems)
    assert 20 * math.log10(peak) == pytest.approx(STEM_PEAK_DBFS, abs=0.01)
    summed = sum(s.samples.astype(np.float64) * 10 ** (g / 20) for s, g in zip(stems, gains, strict=True))
    assert (
        residual_db(summed * 10 ** (levels.master_gain_db / 20), at_target(mixed, levels.loudness_gain_db))
        < -100
    )


# ------------------------------------------------------------------------------------------- bundle


def unzip(data: bytes, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(into)
        (root,) = {name.split("/", 1)[0] for name in zf.namelist()}
    return into / root


def decoded(path: Path) -> npt.NDArray[np.float64]:
    samples, rate = sf.read(path, dtype="float64", always_2d=True)
    assert rate == RATE
    return samples.T


@pytest.fixture(scope="module")
def bundle(
    catalog: Catalog, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ScenePlan, MixResult, dict]:
    """The test scene exported into a local store and zipped as the API does, then unpacked."""
    tmp = tmp_path_factory.mktemp("export")
    store = LocalStore(tmp / "artifacts")
    plan = planned(catalog, scene())
    mixed, _, manifest = play_mixing_task(plan, store)
    fh = io.BytesIO()
    write_bundle(fh, root="export-test", store=store, manifest=manifest)
    return unzip(fh.getvalue(), tmp / "unzipped"), plan, mixed, manifest


def test_bundle_holds_the_mix_stems_captions_timelines_and_manifest(bundle: Any) -> None:
    root = bundle[0]
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert names == [
        "captions.srt",
        "captions.vtt",
        "manifest.json",
        "mix.wav",
        "project.rpp",
        "stems/01-voice.wav",
        "stems/02-bed.wav",
        "stems/03-fx-hits.wav",
        "timeline.otio",
    ]
    mix_file = sf.info(root / "mix.wav")
    for name in names:
        if name.startswith("stems/"):
            info = sf.info(root / name)
            assert (info.frames, info.samplerate, info.channels, info.subtype) == (
                mix_file.frames,
                mix_file.samplerate,
                mix_file.channels,
                mix_file.subtype,
            )
    assert (root / "captions.vtt").read_text().startswith("WEBVTT")
    assert "Hello there." in (root / "captions.srt").read_text()
    manifest = json.loads((root / "manifest.json").read_text())
    listed = {f["name"] for f in manifest["export"]["files"]}
    assert listed == set(names) - {"manifest.json"}
    assert not any("key" in f for f in manifest["export"]["files"])  # storage keys stay inside
    assert manifest["export"]["levels"]["master_gain_db"] == pytest.approx(0.0, abs=1e-6)


def test_otio_clips_point_at_the_stems_at_each_items_offset(bundle: Any) -> None:
    root, plan, mixed, manifest = bundle
    timeline = otio.adapters.read_from_file(str(root / "timeline.otio"))
    assert [t.name for t in timeline.tracks] == ["voice", "bed", "fx / hits"]
    assert all(t.kind == otio.schema.TrackKind.Audio for t in timeline.tracks)
    assert [t.metadata["soundry"]["gain_db"] for t in timeline.tracks] == [0.0, -3.0, 2.0]
    by_label = {c.label: (c, mixed.placements[i]) for i, c in enumerate(plan.components)}
    for track in timeline.tracks:
        assert track.duration().value == mixed.audio.frames  # every track lasts the scene
        for clip in track.find_clips():
            component, placed = by_label[clip.name]
            assert clip.media_reference.target_url == track.metadata["soundry"]["stem"]
            assert (root / clip.media_reference.target_url).is_file()
            where = clip.range_in_parent()
            assert where.start_time.value == placed.start == clip.source_range.start_time.value
            assert where.start_time.rate == RATE
            meta = clip.metadata["soundry"]
            assert meta["item"] == component.path and meta["job_id"] == component.job_id
            assert meta["gain_db"] == pytest.approx(component.gain_db - plan.tracks[component.track].gain_db)
            if (
                clip.name != "whoosh"
            ):  # the whoosh is cut where the boom starts (their crossfade is in the stem)
                assert clip.source_range.duration.value == placed.stop - placed.start
    whoosh = next(c for c in timeline.find_clips() if c.name == "whoosh")
    assert whoosh.source_range.end_time_exclusive().value == by_label["boom"][1].start
    assert timeline.metadata["soundry"]["master_gain_db"] == manifest["export"]["levels"]["master_gain_db"]


def test_otio_timeline_with_its_gains_reproduces_the_mix(bundle: Any) -> None:
    """Each clip's span of its stem, placed where the timeline puts it, at the track and master gains."""
    root, _, mixed, _ = bundle
    timeline = otio.adapters.read_from_file(str(root / "timeline.otio"))
    levels = timeline.metadata["soundry"]
    out = np.zeros_like(mixed.audio.samples, dtype=np.float64)
    for track in timeline.tracks:
        gain = 10 ** (track.metadata["soundry"]["gain_db"] / 20)
        for clip in track.find_clips():
            source = decoded(root / clip.media_reference.target_url)
            at, frm = (
                round(clip.range_in_parent().start_time.value),
                round(clip.source_range.start_time.value),
            )
            n = round(clip.source_range.duration.value)
            out[:, at : at + n] += gain * source[:, frm : frm + n]
    out *= 10 ** (levels["master_gain_db"] / 20)
    assert residual_db(out, at_target(mixed, levels["loudness_gain_db"])) < LIMIT_DB


def test_rpp_tracks_and_items_match_the_timeline_and_reproduce_the_mix(bundle: Any) -> None:
    root, plan, mixed, manifest = bundle
    project = read_rpp((root / "project.rpp").read_text())
    assert project["head"][0] == "REAPER_PROJECT"
    assert rpp_field(project, "SAMPLERATE")[0] == str(RATE)
    levels = manifest["export"]["levels"]
    master_gain = float(rpp_field(project, "MASTER_VOLUME")[0])
    assert master_gain == pytest.approx(10 ** (levels["master_gain_db"] / 20))
    tracks = rpp_blocks(project, "TRACK")
    assert [rpp_field(t, "NAME")[0] for t in tracks] == ["voice", "bed", "fx / hits"]
    placed = {c.label: mixed.placements[i] for i, c in enumerate(plan.components)}
    out = np.zeros_like(mixed.audio.samples, dtype=np.float64)
    for track, planned_track in zip(tracks, plan.tracks, strict=True):
        volume = float(rpp_field(track, "VOLPAN")[0])
        assert volume == pytest.approx(10 ** (planned_track.gain_db / 20))
        for item in rpp_blocks(track, "ITEM"):
            position, length, offset = (float(rpp_field(item, k)[0]) for k in ("POSITION", "LENGTH", "SOFFS"))
            assert round(position * RATE) == placed[rpp_field(item, "NAME")[0]].start
            assert offset == position  # the stem is aligned with the scene
            assert rpp_field(item, "LOOP") == ["0"] and rpp_field(item, "VOLPAN")[:3] == ["1", "0", "1"]
            assert (
                float(rpp_field(item, "FADEIN")[1]) == 0 and float(rpp_field(item, "FADEOUT")[1]) == 0
            )  # baked in
            (source,) = rpp_blocks(item, "SOURCE")
            assert source["head"][1] == "WAVE"
            stem_file = rpp_field(source, "FILE")[0]
            assert stem_file.startswith("stems/")
            audio = decoded(root / stem_file)
            at, n = round(position * RATE), round(length * RATE)
            out[:, at : at + n] += volume * audio[:, round(offset * RATE) : round(offset * RATE) + n]
    assert len(rpp_blocks(tracks[2], "ITEM")) == 3
    assert residual_db(out * master_gain, at_target(mixed, levels["loudness_gain_db"])) < LIMIT_DB


def test_no_captions_without_speech(catalog: Catalog, tmp_path: Path) -> None:
    data = scene()
    del data["tracks"][0]
    store = LocalStore(tmp_path)
    _, _, manifest = play_mixing_task(planned(catalog, data), store, speech=False)
    names = [f["name"] for f in manifest["export"]["files"]]
    assert names == ["stems/01-bed.wav", "stems/02-fx-hits.wav", "timeline.otio", "project.rpp"]


# ------------------------------------------------------------------------------------------- the API


def service(api: TestClient) -> JobService:
    svc: JobService = api.app.state.jobs  # type: ignore[attr-defined]
    return svc


def finish_scene(api: TestClient, scene_id: str) -> None:
    """Play the mixing task for a scene submitted through the API, and record it as succeeded."""
    svc = service(api)
    plan, _ = SceneService(svc).plan(scene_id, Caller(admin=True))
    _, result, _ = play_mixing_task(plan, svc.store)
    svc.records.succeed(scene_id, result)


def test_api_export_downloads_the_bundle(api: TestClient, tmp_path: Path) -> None:
    scene_id = api.post("/v1/scenes", json=scene()).json()["id"]
    early = api.get(f"/v1/scenes/{scene_id}/export")
    assert early.status_code == 409 and early.json()["error"]["field"] == "scene_id"
    assert "queued" in early.json()["error"]["message"]
    finish_scene(api, scene_id)
    view = api.get(f"/v1/scenes/{scene_id}").json()
    assert view["links"]["export"] == f"/v1/scenes/{scene_id}/export?format=zip"
    r = api.get(view["links"]["export"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert 'filename="export-test.zip"' in r.headers["content-disposition"]
    root = unzip(r.content, tmp_path)
    assert root.name == "export-test"
    assert (root / "mix.wav").read_bytes() == api.get(f"/v1/jobs/{scene_id}/audio").content
    assert otio.adapters.read_from_file(str(root / "timeline.otio")).name == "export test"


def test_api_export_refuses_other_formats_unknown_scenes_and_scenes_without_export(api: TestClient) -> None:
    scene_id = api.post("/v1/scenes", json=scene(export=False)).json()["id"]
    finish_scene(api, scene_id)
    r = api.get(f"/v1/scenes/{scene_id}/export")
    assert r.status_code == 409 and r.json()["error"]["field"] == "export"
    assert "export: true" in r.json()["error"]["message"]
    assert "export" not in api.get(f"/v1/scenes/{scene_id}").json()["links"]
    bad = api.get(f"/v1/scenes/{scene_id}/export", params={"format": "tar"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "format"
    missing = api.get("/v1/scenes/nope/export")
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "scene_id"
