"""Scene requests: planning rules, and 422s that name the item (``tracks[T].items[I].field``)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from gen_server.contract.catalog import Catalog, build_catalog
from gen_server.contract.scene import LOUDNESS_PRESETS, SCENE_MAX_S
from gen_server.errors import InvalidInput
from gen_server.scene_plan import STEM_LUFS, build_scene, estimate_speech_s, parse_scene
from gen_server.settings import Settings
from tests.helpers import ROOT

SCENES = sorted((ROOT / "prompts" / "scenes").glob("*.yaml"))


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog(Settings(dev_models=True))


def base() -> dict[str, Any]:
    """Narration over a bed, plus two effects on one track."""
    return {
        "name": "test",
        "tracks": [
            {
                "items": [
                    {"kind": "speech", "id": "host", "text": "Hello and welcome to the show.", "start_s": 1}
                ]
            },
            {
                "items": [
                    {"kind": "music", "id": "bed", "prompt": "calm pads", "duration_s": 8, "gain_db": -6}
                ]
            },
            {
                "items": [
                    {"kind": "sfx", "id": "whoosh", "prompt": "whoosh", "duration_s": 1.0, "start_s": 0.0},
                    {"kind": "sfx", "id": "chime", "prompt": "chime", "duration_s": 1.0, "start_s": 6.0},
                ]
            },
        ],
    }


def plan(catalog: Catalog, scene: dict[str, Any]) -> Any:
    ids = iter(f"job{i}" for i in range(1000))
    return build_scene(parse_scene(scene), catalog, scene_id="scene1", new_id=lambda: next(ids))


def refused(catalog: Catalog, change: Callable[[dict[str, Any]], None]) -> InvalidInput:
    scene = base()
    change(scene)
    with pytest.raises(InvalidInput) as info:
        plan(catalog, scene)
    return info.value


# ------------------------------------------------------------------------------------------- planning


@pytest.mark.parametrize("path", SCENES, ids=lambda p: p.name)
def test_example_scenes_are_valid(catalog: Catalog, path: Path) -> None:
    scene_plan, specs = plan(catalog, yaml.safe_load(path.read_text()))
    assert len(specs) == len(scene_plan.components) >= 3
    assert {c.kind for c in scene_plan.components} == {"speech", "music", "sfx"}
    assert scene_plan.planned_s <= 20


def test_plan_resolves_items_through_the_catalog(catalog: Catalog) -> None:
    scene = base()
    scene["seed"] = 100
    scene["tracks"][1]["gain_db"] = -2
    scene_plan, specs = plan(catalog, scene)
    assert [c.path for c in scene_plan.components] == [
        "tracks[0].items[0]",
        "tracks[1].items[0]",
        "tracks[2].items[0]",
        "tracks[2].items[1]",
    ]
    assert (
        [s.job_id for s in specs]
        == [c.job_id for c in scene_plan.components]
        == ["job0", "job1", "job2", "job3"]
    )
    models = ["piper-en_US-joe-medium", "dev-musicgen-tiny", "dev-audiogen-tiny", "dev-audiogen-tiny"]
    assert [s.model for s in specs] == models
    assert [s.seed for s in specs] == [100, 101, 102, 103]
    assert all(s.post.target_lufs == STEM_LUFS and s.post.sample_rate == 48000 for s in specs)
    bed = scene_plan.components[1]
    assert bed.gain_db == -8 and bed.duck is not None and bed.duck.duck_db == 15  # music ducks by default
    assert scene_plan.components[0].key and scene_plan.components[0].duck is None
    assert scene_plan.components[2].duck is None  # sfx do not duck unless asked
    assert scene_plan.spec.kind == "music" and scene_plan.spec.model == "scene"
    assert scene_plan.spec.post.target_lufs == -16.0 and scene_plan.spec.post.fade_out_s == 0.0
    assert scene_plan.true_peak_dbtp == -1.0 and scene_plan.spec.post.true_peak_dbtp == -1.5  # watermark room
    assert scene_plan.planned_s == 8.0


@pytest.mark.parametrize(("preset", "lufs"), [*LOUDNESS_PRESETS.items(), (-18.5, -18.5)])
def test_loudness_presets(catalog: Catalog, preset: str | float, lufs: float) -> None:
    scene = base()
    scene["loudness_target"] = preset
    assert plan(catalog, scene)[0].target_lufs == lufs


def test_a_speech_model_works_as_the_voice(catalog: Catalog) -> None:
    scene = base()
    scene["tracks"][0]["items"][0]["voice"] = "dev-vits-tiny"
    assert plan(catalog, scene)[1][0].model == "dev-vits-tiny"
    scene["tracks"][0]["items"][0].update(model="dev-vits-tiny", voice="bob")
    assert plan(catalog, scene)[1][0].voice == "bob"


def test_crossfades_may_overlap(catalog: Catalog) -> None:
    scene = base()
    effects = scene["tracks"][2]["items"]
    effects[0]["fade_out_s"] = 0.5
    effects[1].update(start_s=0.3, fade_in_s=0.5)  # 0.7 s overlap <= 0.5 crossfade + 0.25
    plan(catalog, scene)


def test_duck_zero_turns_ducking_off(catalog: Catalog) -> None:
    scene = base()
    scene["tracks"][1]["items"][0]["duck"] = {"duck_db": 0}
    assert plan(catalog, scene)[0].components[1].duck is None


def test_speech_length_estimate_is_plausible() -> None:
    text = "Welcome to the Soundry podcast. Today we talk about making music with machines."
    assert 4.0 < estimate_speech_s(text) < 7.0  # the bundled voice says it in about 5 s
    assert estimate_speech_s(text, 2.0) == pytest.approx(estimate_speech_s(text) / 2)


# ------------------------------------------------------------------------------------ refused, by item


def test_negative_start_names_the_item(catalog: Catalog) -> None:
    e = refused(catalog, lambda s: s["tracks"][2]["items"][1].update(start_s=-1))
    assert e.field == "tracks[2].items[1].start_s"
    assert "tracks[2].items[1] ('chime')" in e.message and "greater than or equal to 0" in e.message


def test_overlap_beyond_the_limit_names_the_later_item(catalog: Catalog) -> None:
    e = refused(catalog, lambda s: s["tracks"][2]["items"][1].update(start_s=0.5))
    assert e.field == "tracks[2].items[1].start_s"
    assert "('chime')" in e.message and "tracks[2].items[0] ('whoosh') ends at 1.00 s" in e.message
    assert "start it at 0.75 s or later" in e.message


def test_overlap_is_checked_in_time_order_not_list_order(catalog: Catalog) -> None:
    def swap(s: dict[str, Any]) -> None:
        items = s["tracks"][2]["items"]
        items[0]["start_s"], items[1]["start_s"] = 6.0, 0.0
        items[1]["duration_s"] = 6.5  # chime (listed second) plays first and runs into the whoosh

    e = refused(catalog, swap)
    assert e.field == "tracks[2].items[0].start_s"
    assert "('whoosh')" in e.message


def test_overlapping_speech_on_one_track_is_refused(catalog: Catalog) -> None:
    long_text = " ".join(["word"] * 40)  # at least 10 s even spoken fast

    def two_lines(s: dict[str, Any]) -> None:
        s["tracks"][0]["items"] = [
            {"kind": "speech", "text": long_text, "start_s": 0},
            {"kind": "speech", "text": "And then.", "start_s": 3},
        ]

    e = refused(catalog, two_lines)
    assert e.field == "tracks[0].items[1].start_s"
    assert "estimated from its text" in e.message


def test_unknown_voice_names_the_item_and_the_voices(catalog: Catalog) -> None:
    e = refused(catalog, lambda s: s["tracks"][0]["items"][0].update(voice="nobody"))
    assert e.field == "tracks[0].items[0].voice"
    assert "unknown voice 'nobody'" in e.message and "piper-en_US-joe-medium" in e.message
    e = refused(catalog, lambda s: s["tracks"][0]["items"][0].update(model="dev-vits-tiny", voice="carol"))
    assert e.field == "tracks[0].items[0].voice" and "alice, bob" in e.message


def test_total_length_beyond_the_limit(catalog: Catalog) -> None:
    e = refused(catalog, lambda s: s["tracks"][1]["items"][0].update(start_s=400, duration_s=250))
    assert e.field == "tracks[1].items[0].duration_s"
    assert f"past the {SCENE_MAX_S:g} s limit" in e.message
    long_text = " ".join(["word"] * 300)
    e = refused(catalog, lambda s: s["tracks"][0]["items"][0].update(text=long_text, start_s=550))
    assert e.field == "tracks[0].items[0].text"


def test_items_past_the_scene_length(catalog: Catalog) -> None:
    def shorter(s: dict[str, Any]) -> None:
        s["length_s"] = 7.5

    e = refused(catalog, shorter)
    assert e.field == "tracks[1].items[0].duration_s" and "at most 7.50 s" in e.message

    def late(s: dict[str, Any]) -> None:
        s["length_s"] = 5.0
        s["tracks"][1]["items"][0]["duration_s"] = 5.0

    e = refused(catalog, late)
    assert e.field == "tracks[2].items[1].start_s" and "after the scene ends" in e.message


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda s: s["tracks"][0]["items"][0].update(kind="banjo"), "tracks[0].items[0].kind", "speech"),
        (
            lambda s: s["tracks"][1]["items"][0].update(model="dev-audiogen-tiny"),
            "tracks[1].items[0].model",
            "makes sfx",
        ),
        (
            lambda s: s["tracks"][1]["items"][0].update(model="nope"),
            "tracks[1].items[0].model",
            "unknown model",
        ),
        (
            lambda s: s["tracks"][1]["items"][0].update(text="hi"),
            "tracks[1].items[0].text",
            "for speech items",
        ),
        (
            lambda s: s["tracks"][1]["items"][0].update(voice="bob"),
            "tracks[1].items[0].voice",
            "for speech items",
        ),
        (
            lambda s: s["tracks"][0]["items"][0].update(duration_s=3),
            "tracks[0].items[0].duration_s",
            "follows the text",
        ),
        (lambda s: s["tracks"][0]["items"][0].update(duck={}), "tracks[0].items[0].duck", "music and sfx"),
        (
            lambda s: s["tracks"][1]["items"][0].pop("duration_s"),
            "tracks[1].items[0].duration_s",
            "need duration_s",
        ),
        (lambda s: s["tracks"][1]["items"][0].update(prompt=""), "tracks[1].items[0].prompt", "non-empty"),
        (
            lambda s: s["tracks"][1]["items"][0].update(duration_s=400),
            "tracks[1].items[0].duration_s",
            "between",
        ),
        (
            lambda s: s["tracks"][1]["items"][0].update(duck={"duck_db": 99}),
            "tracks[1].items[0].duck.duck_db",
            "60",
        ),
        (
            lambda s: s["tracks"][1]["items"][0].update(colour="red"),
            "tracks[1].items[0].colour",
            "not permitted",
        ),
        (lambda s: s.update(loudness_target="loud"), "loudness_target", "podcast"),
        (lambda s: s.update(loudness_target=-60), "loudness_target", "-40"),
        (lambda s: s.update(tracks=[]), "tracks", "at least 1"),
        (lambda s: s["tracks"][2].update(items=[]), "tracks[2].items", "at least 1"),
    ],
)
def test_wrong_kinds_and_values_name_the_item(
    catalog: Catalog, change: Callable[[dict[str, Any]], Any], field: str, words: str
) -> None:
    e = refused(catalog, change)
    assert e.field == field, e.message
    assert words in e.message


def test_too_many_items(catalog: Catalog) -> None:
    def crowd(s: dict[str, Any]) -> None:
        s["tracks"] = [
            {
                "items": [
                    {"kind": "sfx", "prompt": "tick", "duration_s": 1, "start_s": 2 * i} for i in range(40)
                ]
            }
            for _ in range(2)
        ]

    e = refused(catalog, crowd)
    assert e.field == "tracks" and "at most 64 items" in e.message


# ----------------------------------------------------------------------------------- through the API


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s["tracks"][2]["items"][1].update(start_s=-1), "tracks[2].items[1].start_s"),
        (lambda s: s["tracks"][2]["items"][1].update(start_s=0.5), "tracks[2].items[1].start_s"),
        (lambda s: s["tracks"][0]["items"][0].update(voice="nobody"), "tracks[0].items[0].voice"),
        (lambda s: s["tracks"][1]["items"][0].update(start_s=595), "tracks[1].items[0].duration_s"),
        (lambda s: s["tracks"][1]["items"][0].update(kind="speech"), "tracks[1].items[0].duck"),
        (
            lambda s: s["tracks"][1]["items"][0].update(duck={"attack_ms": "fast"}),
            "tracks[1].items[0].duck.attack_ms",
        ),
    ],
)
def test_api_422_names_the_item(api: TestClient, change: Callable[[dict[str, Any]], Any], field: str) -> None:
    scene = base()
    scene["tracks"][1]["items"][0]["duck"] = {}
    change(scene)
    r = api.post("/v1/scenes", json=scene)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_input" and error["field"] == field
    assert error["message"].startswith(field.split("].", 2)[0] + "].items[")
    assert api.get("/v1/jobs").json() == []  # nothing was queued


def test_api_queues_a_scene_as_jobs(api: TestClient) -> None:
    r = api.post("/v1/scenes", json=base())
    assert r.status_code == 202, r.text
    scene = r.json()
    assert scene["state"] == "queued" and len(scene["components"]) == 4
    assert scene["links"]["job"] == f"/v1/jobs/{scene['id']}"
    for component in scene["components"]:
        job = api.get(f"/v1/jobs/{component['job_id']}").json()
        assert job["state"] == "queued" and job["kind"] == component["kind"]
    mixed = api.get(f"/v1/jobs/{scene['id']}").json()
    assert mixed["kind"] == "music" and mixed["model"] == "scene" and mixed["state"] == "queued"
    view = api.get(f"/v1/scenes/{scene['id']}").json()
    assert view["planned_s"] == 8.0 and view["target_lufs"] == -16.0 and view["result"] is None
    assert api.get(f"/v1/jobs/{scene['id']}/audio").status_code == 409
    listed = {j["id"] for j in api.get("/v1/jobs").json()}
    assert listed == {scene["id"], *(c["job_id"] for c in scene["components"])}


def test_api_cancel_cancels_every_component(api: TestClient) -> None:
    scene = api.post("/v1/scenes", json=base()).json()
    view = api.delete(f"/v1/scenes/{scene['id']}").json()
    assert view["state"] == "cancelled"
    assert {c["state"] for c in view["components"]} == {"cancelled"}
    assert api.get(f"/v1/jobs/{scene['id']}").json()["state"] == "cancelled"


def test_api_a_cancelled_component_fails_the_scene_naming_it(api: TestClient) -> None:
    scene = api.post("/v1/scenes", json=base()).json()
    chime = scene["components"][3]
    api.delete(f"/v1/jobs/{chime['job_id']}")
    view = api.get(f"/v1/scenes/{scene['id']}").json()
    assert view["state"] == "failed"
    assert view["error"]["code"] == "component_failed" and view["error"]["field"] == "tracks[2].items[1]"
    assert "('chime')" in view["error"]["message"] and "cancelled" in view["error"]["message"]
    job = api.get(f"/v1/jobs/{scene['id']}").json()  # the scene's own job says so too
    assert job["state"] == "failed" and job["error"]["code"] == "component_failed"


def test_api_idempotency_key_and_unknown_scene(api: TestClient) -> None:
    body = copy.deepcopy(base())
    a = api.post("/v1/scenes", json=body, headers={"Idempotency-Key": "k1"}).json()
    b = api.post("/v1/scenes", json=body, headers={"Idempotency-Key": "k1"}).json()
    assert a["id"] == b["id"] and a["components"] == b["components"]
    r = api.get("/v1/scenes/nope")
    assert r.status_code == 404 and r.json()["error"]["field"] == "scene_id"
