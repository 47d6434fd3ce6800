"""Control values <-> job requests, and what a model's controls offer (pure functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gen_server.contract.catalog import DEV_MODELS, STATIC_MODELS
from gen_server.contract.spec import JobRequest
from ui.forms import (
    FIELDS,
    Capabilities,
    build_request,
    initial_model,
    model_label,
    reused_uploads,
    values_from_spec,
)


def _catalog() -> list[dict[str, Any]]:
    """Catalog rows shaped as ``GET /v1/models`` returns them."""
    return [m.model_dump(mode="json") for m in (*STATIC_MODELS, *DEV_MODELS)]


def test_untouched_music_form_sends_a_minimal_valid_request() -> None:
    values = {
        "prompt": " lofi piano ",
        "duration_s": 4,
        "model": "dev-musicgen-tiny",
        "seed": "",
        "trim": "default",
        "loudness": "default",
        "sample_rate": "native",
        "channels": "native",
        "true_peak_dbtp": -1.0,
        "format": "wav",
        "wav_subtype": "pcm16",
    }
    req = build_request("music", values)
    assert req == {
        "kind": "music",
        "model": "dev-musicgen-tiny",
        "prompt": " lofi piano ",
        "duration_s": 4.0,
        "format": "wav",
        "wav_subtype": "pcm16",
    }
    JobRequest.model_validate(req)  # the API's input model accepts it


def test_every_control_maps_to_its_request_field() -> None:
    values = {
        "prompt": "rain",
        "duration_s": 2.5,
        "model": "dev-audiogen-tiny",
        "seed": "42",
        "top_k": 50,
        "top_p": 0.9,
        "temperature": 0.8,
        "cfg_coef": 4.0,
        "trim": "off",
        "fade_in_s": "0.1",
        "fade_out_s": 0.5,
        "loudness": "LUFS target",
        "target_lufs": -20.0,
        "true_peak_dbtp": -2.0,
        "sample_rate": "44100",
        "channels": "stereo",
        "format": "mp3",
        "wav_subtype": "pcm24",
    }
    req = build_request("sfx", values, {"continuation_upload": "abc", "melody_upload": None})
    assert req["seed"] == 42
    assert req["sampling"] == {"top_k": 50, "top_p": 0.9, "temperature": 0.8, "cfg_coef": 4.0}
    assert req["post"] == {
        "trim_silence": False,
        "fade_in_s": 0.1,
        "fade_out_s": 0.5,
        "target_lufs": -20.0,
        "true_peak_dbtp": -2.0,
        "sample_rate": 44100,
        "channels": 2,
    }
    assert req["format"] == "mp3" and "wav_subtype" not in req
    assert req["continuation_upload"] == "abc" and "melody_upload" not in req
    JobRequest.model_validate(req)


def test_speech_request_has_text_voice_and_no_sampling() -> None:
    values = {
        "text": "Hello.",
        "model": "dev-vits-tiny",
        "voice": "bob",
        "language": "en",
        "speed": 1.25,
        "loudness": "peak normalise",
        "format": "ogg",
    }
    req = build_request("speech", values, {"reference_uploads": []})
    assert req == {
        "kind": "speech",
        "model": "dev-vits-tiny",
        "text": "Hello.",
        "voice": "bob",
        "language": "en",
        "speed": 1.25,
        "post": {"peak_normalize": True},
        "format": "ogg",
    }
    JobRequest.model_validate(req)


def test_a_seed_that_is_not_a_number_is_left_for_the_api_to_reject() -> None:
    assert build_request("music", {"prompt": "x", "seed": "abc"})["seed"] == "abc"
    assert "seed" not in build_request("music", {"prompt": "x", "seed": "  "})


@pytest.mark.parametrize("kind", ["music", "sfx", "speech"])
def test_reuse_reproduces_the_spec(kind: str) -> None:
    spec = {
        "kind": kind,
        "model": "m",
        "prompt": "a bell rings",
        "duration_s": None if kind == "speech" else 3.0,
        "seed": 1234,
        "sampling": {"top_k": 64, "top_p": 0.0, "temperature": 1.2, "cfg_coef": 2.0},
        "voice": "bob" if kind == "speech" else None,
        "language": None,
        "speed": 0.9 if kind == "speech" else 1.0,
        "post": {
            "trim_silence": True,
            "fade_in_s": None,
            "fade_out_s": 0.2,
            "target_lufs": -18.0,
            "peak_normalize": None,
            "true_peak_dbtp": -1.0,
            "sample_rate": 48000,
            "channels": 1,
        },
        "format": "flac",
        "wav_subtype": "pcm16",
        "melody_upload": "mel",
        "reference_uploads": ["r1"],
    }
    values = values_from_spec(spec)
    assert set(values) <= set(FIELDS[kind])  # only controls the tab has
    assert values["seed"] == "1234"
    req = build_request(kind, values)  # type: ignore[arg-type]
    assert req["seed"] == 1234 and req["model"] == "m" and req["format"] == "flac"
    assert req["post"] == {
        "trim_silence": True,
        "fade_out_s": 0.2,
        "target_lufs": -18.0,
        "sample_rate": 48000,
        "channels": 1,
    }
    if kind == "speech":
        assert req["text"] == "a bell rings" and req["voice"] == "bob" and req["speed"] == 0.9
    else:
        assert req["prompt"] == "a bell rings" and req["duration_s"] == 3.0
        assert req["sampling"] == {"top_k": 64, "top_p": 0.0, "temperature": 1.2, "cfg_coef": 2.0}
    assert reused_uploads(spec) == {"melody_upload": "mel", "reference_uploads": ["r1"]}


def test_capabilities_follow_the_catalog() -> None:
    rows = {m["id"]: m for m in _catalog()}
    melody = Capabilities.of(rows["musicgen-melody"])
    assert melody.melody and melody.continuation and melody.top_k_max == 2048 and melody.max_duration_s == 300
    assert "non-commercial" in melody.summary and "CC-BY-NC" in melody.summary
    tiny = Capabilities.of(rows["dev-musicgen-tiny"])
    assert not tiny.melody and tiny.top_k_max == 64
    xtts = Capabilities.of(rows["xtts-v2"])
    assert xtts.voice_cloning and "en" in xtts.languages and not xtts.speakers
    assert Capabilities.of(rows["vits-vctk"]).speakers[0] == "p225"
    assert Capabilities.of(None).summary == "Choose a model."


def test_model_choices_show_licences_and_start_on_a_runnable_model() -> None:
    rows = _catalog()
    assert initial_model(rows, "music") == "dev-musicgen-tiny"
    assert initial_model(rows, "speech") == "dev-vits-tiny"
    static_only = [m for m in rows if not m.get("dev")]
    assert initial_model(static_only, "music") == "musicgen-small"
    assert initial_model([], "sfx") is None
    label = model_label(next(m for m in rows if m["id"] == "audiogen-medium"))
    assert label.startswith("audiogen-medium — CC-BY-NC-4.0") and "non-commercial" in label


def test_default_top_k_is_left_to_the_api_so_small_codebooks_work() -> None:
    req = build_request("music", {"prompt": "x", "top_k": 250, "temperature": 1.0})
    assert req["sampling"] == {"temperature": 1.0}
    assert build_request("music", {"prompt": "x", "top_k": 64})["sampling"] == {"top_k": 64}


def test_values_of_hidden_controls_are_not_sent() -> None:
    rows = {m["id"]: m for m in _catalog()}
    stale = {
        "text": "hi",
        "model": "vits-ljspeech",
        "voice": "alice",
        "language": "de",
        "references": ["a.wav"],
    }
    values, reused = Capabilities.of(rows["vits-ljspeech"]).applicable(stale, {"reference_uploads": ["u1"]})
    assert values["voice"] is None and values["language"] is None and values["references"] is None
    assert reused == {}
    values, reused = Capabilities.of(rows["xtts-v2"]).applicable(stale, {"reference_uploads": ["u1"]})
    assert (
        values["language"] == "de"
        and values["references"] == ["a.wav"]
        and reused == {"reference_uploads": ["u1"]}
    )
    values, _ = Capabilities.of(rows["musicgen-small"]).applicable(
        {"melody": "m.wav", "continuation": "c.wav"}, {}
    )
    assert values == {"melody": None, "continuation": "c.wav"}


def test_each_tab_starts_on_the_model_the_api_would_use(api: Any) -> None:
    """The catalog's one rule decides the default per kind; the UI starts there (the dev preset's
    Speech tab used to start on the noise-making dev-vits-tiny while the API spoke with Piper)."""
    listed = api._http.get("/v1/models").json()["data"]  # the server's answer, with its `default` marks
    defaults = {m["kind"]: m["id"] for m in listed if m["default"]}
    assert defaults["speech"] == "piper-en_US-joe-medium" and defaults["music"] == "dev-musicgen-tiny"
    assert sorted(m["kind"] for m in listed if m["default"]) == ["music", "sfx", "speech"]
    rows = [m.model_dump(mode="json") for m in api.models()]  # the catalog as the UI keeps it (load_models)
    for kind, model in defaults.items():
        assert initial_model(rows, kind) == model


def test_edit_ready_controls_map_to_tempo_and_loop_fields() -> None:
    music = build_request(
        "music", {"prompt": "p", "duration_s": 8, "tempo_bpm": "128", "loop": True, "loop_bars": "4"}
    )
    assert music["tempo_bpm"] == 128.0 and music["loop"] is True and music["loop_bars"] == 4
    assert "duration_s" not in music  # the bars decide the length
    sfx = build_request("sfx", {"prompt": "rain", "duration_s": 4, "loop": True})
    assert sfx["loop"] is True and sfx["duration_s"] == 4 and "tempo_bpm" not in sfx
    plain = build_request("music", {"prompt": "p", "tempo_bpm": "", "loop": False, "loop_bars": "4"})
    assert not {"tempo_bpm", "loop", "loop_bars"} & set(plain)
    spec = {
        "kind": "music",
        "prompt": "p",
        "duration_s": 7.5,
        "tempo_bpm": 128.0,
        "loop": True,
        "loop_bars": 4,
    }
    values = values_from_spec(spec)
    assert (values["tempo_bpm"], values["loop"], values["loop_bars"]) == ("128", True, "4")
    assert set(values) <= set(FIELDS["music"])


def test_commercial_filter_keeps_allowed_and_conditional_models() -> None:
    from ui.forms import models_of

    rows = [
        {"id": "a", "kind": "music", "commercial_use": "not_allowed"},
        {"id": "b", "kind": "music", "commercial_use": "conditional", "commercial_condition": "credit"},
        {"id": "c", "kind": "music", "commercial_use": "allowed"},
        {"id": "d", "kind": "sfx", "commercial_use": "allowed"},
    ]
    assert [m["id"] for m in models_of(rows, "music")] == ["a", "b", "c"]
    assert [m["id"] for m in models_of(rows, "music", commercial_only=True)] == ["b", "c"]
    assert "non-commercial" in model_label(rows[0]) and "conditional" in model_label(rows[1])
    assert "non-commercial" not in model_label(rows[2])


def test_stable_audio_shows_diffusion_controls_in_music_and_sfx(tmp_path: Path) -> None:
    """With the dev preset, Stable Audio is offered in the Music and Sound effects tabs; its form sends
    steps, guidance and a negative prompt, never the token-sampling controls it does not take."""
    from gen_server.contract.catalog import build_catalog
    from gen_server.contract.spec import build_spec
    from gen_server.settings import Settings
    from ui.forms import models_of

    settings = Settings(data_dir=tmp_path, dev_models=True)
    rows = [e.model_dump(mode="json") for e in build_catalog(settings)]
    for kind in ("music", "sfx"):
        assert "dev-stable-audio-tiny" in [m["id"] for m in models_of(rows, kind)]
    entry = next(m for m in rows if m["id"] == "dev-stable-audio-tiny")
    cap = Capabilities.of(entry)
    assert cap.diffusion and cap.steps == 8 and cap.guidance == 7.0 and cap.stereo
    form = {"model": "dev-stable-audio-tiny", "prompt": "glass breaks", "duration_s": 2.0, "top_k": 250}
    form |= {"top_p": 0.0, "temperature": 1.0, "cfg_coef": 6.5, "steps": 12, "negative_prompt": " hiss "}
    values, _ = cap.applicable(form, {})
    req = build_request("sfx", values)
    assert req["sampling"] == {"cfg_coef": 6.5, "steps": 12, "negative_prompt": "hiss"}
    spec = build_spec(JobRequest.model_validate(req), build_catalog(settings), job_id="j")
    assert values_from_spec(spec.model_dump(mode="json"))["steps"] == 12
    token = Capabilities.of(next(m for m in rows if m["id"] == "dev-audiogen-tiny"))
    values, _ = token.applicable({**form, "model": "dev-audiogen-tiny"}, {})
    assert "steps" not in build_request("sfx", values)["sampling"]
