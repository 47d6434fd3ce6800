"""ElevenLabs-compatible routes without a worker: the official SDK parses voices and gets readable errors.

The SDK runs over FastAPI's TestClient (an ``httpx.Client``); whole generations are in
``tests/e2e/test_elevenlabs.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import redis
from elevenlabs import ElevenLabs, VoiceSettings
from elevenlabs.core.api_error import ApiError
from fastapi.testclient import TestClient

from gen_server import elevenlabs as el
from gen_server.auth import KeyStore, keys_path
from gen_server.contract import examples
from gen_server.contract.catalog import build_catalog
from gen_server.main import create_app
from gen_server.redis_server import EmbeddedRedis
from gen_server.settings import Settings


@pytest.fixture
def key_and_api(redis_server: EmbeddedRedis, data_dir: Path) -> Iterator[tuple[str, TestClient]]:
    redis.Redis.from_url(redis_server.url).flushall()
    secret, _ = KeyStore(keys_path(data_dir)).create("sdk-app")
    settings = Settings(data_dir=data_dir, dev_models=True)
    with TestClient(create_app(settings, redis_url=redis_server.url, ui=False)) as client:
        yield secret, client


@pytest.fixture
def api(key_and_api: tuple[str, TestClient]) -> TestClient:
    return key_and_api[1]


@pytest.fixture
def sdk(key_and_api: tuple[str, TestClient]) -> ElevenLabs:
    secret, client = key_and_api
    return ElevenLabs(base_url=str(client.base_url), api_key=secret, httpx_client=client)


def detail(e: ApiError) -> dict[str, Any]:
    assert isinstance(e.body, dict), e.body
    found: dict[str, Any] = e.body["detail"]
    return found


def test_sdk_lists_voices(sdk: ElevenLabs) -> None:
    ids = {v.voice_id for v in sdk.voices.get_all().voices}
    assert {"piper-en_US-joe-medium", "dev-vits-tiny:alice", "dev-vits-tiny:bob"} <= ids
    assert not any(i.startswith("dev-xtts") for i in ids)  # cloning models need reference audio


def test_sdk_searches_voices_page_by_page(sdk: ElevenLabs) -> None:
    first = sdk.voices.search(search="dev-vits", page_size=1)
    assert first.total_count == 2 and first.has_more and first.next_page_token
    second = sdk.voices.search(search="dev-vits", page_size=1, next_page_token=first.next_page_token)
    assert not second.has_more
    assert {first.voices[0].voice_id, second.voices[0].voice_id} == {
        "dev-vits-tiny:alice",
        "dev-vits-tiny:bob",
    }


def test_xi_api_key_works_on_every_route(key_and_api: tuple[str, TestClient]) -> None:
    secret, api = key_and_api
    assert api.get("/v1/jobs", headers={"xi-api-key": secret}).status_code == 200
    assert api.get("/v1/voices", headers={"xi-api-key": secret}).status_code == 200
    assert api.get("/v1/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_wrong_key_is_401_in_each_routes_shape(api: TestClient) -> None:
    r = api.get("/v1/voices", headers={"xi-api-key": "sk-soundry-wrong"})
    assert r.status_code == 401 and r.json()["detail"]["status"] == "unauthorized"
    r = api.get("/v1/jobs", headers={"xi-api-key": "sk-soundry-wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = api.get("/v1/voices")
    assert r.status_code == 401 and "xi-api-key" in r.json()["detail"]["message"]


def test_sdk_with_a_wrong_key_gets_api_error(key_and_api: tuple[str, TestClient]) -> None:
    _, client = key_and_api
    sdk = ElevenLabs(base_url=str(client.base_url), api_key="sk-soundry-wrong", httpx_client=client)
    with pytest.raises(ApiError) as e:
        sdk.voices.get_all()
    assert e.value.status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"duration_seconds": 45.0}, "duration_seconds"),
        ({"prompt_influence": 1.5}, "prompt_influence"),
        ({"loop": True, "duration_seconds": 0.6}, "duration_seconds"),
        ({"model_id": "eleven_multilingual_v2"}, "model_id"),
        ({"model_id": "dev-musicgen-tiny"}, "model_id"),
        ({"output_format": "mp3_44100_320"}, "output_format"),
    ],
)
def test_sound_generation_refusals_name_the_field(
    sdk: ElevenLabs, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiError) as e:
        b"".join(sdk.text_to_sound_effects.convert(text="a door creaks", **kwargs))
    assert e.value.status_code == 422
    assert detail(e.value)["message"].startswith(f"{field}:"), detail(e.value)


def test_output_format_in_the_body_says_it_is_a_query_parameter(key_and_api: tuple[str, TestClient]) -> None:
    secret, api = key_and_api
    r = api.post(
        "/v1/sound-generation",
        json={"text": "glass", "output_format": "wav"},
        headers={"xi-api-key": secret},
    )
    assert r.status_code == 422
    assert "query parameter" in r.json()["detail"]["message"]


def test_unknown_voice_is_404_voice_not_found(sdk: ElevenLabs) -> None:
    with pytest.raises(ApiError) as e:
        b"".join(sdk.text_to_speech.convert(voice_id="no-such-voice", text="Hello."))
    assert e.value.status_code == 404
    assert detail(e.value)["status"] == "voice_not_found"
    assert "dev-vits-tiny:alice" in detail(e.value)["message"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"voice_settings": VoiceSettings(speed=9.0)}, "voice_settings.speed"),
        ({"language_code": "fr"}, "language_code"),
        ({"model_id": "dev-vits-tiny"}, "model_id"),  # the voice is piper's
        ({"model_id": "dev-audiogen-tiny"}, "model_id"),
        ({"seed": -1}, "seed"),
    ],
)
def test_speech_refusals_name_the_field(sdk: ElevenLabs, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as e:
        b"".join(sdk.text_to_speech.convert(voice_id="piper-en_US-joe-medium", text="Hello.", **kwargs))
    assert e.value.status_code == 422
    assert detail(e.value)["message"].startswith(f"{field}:"), detail(e.value)


def test_output_formats_map_to_codec_rate_and_bitrate() -> None:
    for code in get_args(el.OutputFormatCode):
        fmt = el.output_format(code)
        assert code.startswith(fmt.codec) and str(fmt.sample_rate) in code
    mp3 = el.output_format("mp3_22050_32")
    assert (mp3.job_format, mp3.delivered, mp3.sample_rate, mp3.bitrate_kbps) == ("mp3", "mp3", 22050, 32)
    opus = el.output_format("opus_48000_64")
    assert (opus.job_format, opus.delivered, opus.bitrate_kbps) == ("ogg", "ogg", 64)
    pcm = el.output_format("pcm_24000")
    assert (pcm.job_format, pcm.delivered, pcm.bitrate_kbps, pcm.media_type) == (
        "wav",
        "pcm",
        None,
        "audio/pcm",
    )
    assert el.output_format("ulaw_8000").delivered == "ulaw"


def test_default_voice_comes_first_as_the_openapi_example_shows(tmp_path: Path) -> None:
    catalog = build_catalog(Settings(data_dir=tmp_path, dev_models=True))
    assert el.voices(catalog)[0].model_dump() == examples.ELEVENLABS_VOICE


def test_voice_ids_resolve(tmp_path: Path) -> None:
    catalog = build_catalog(Settings(data_dir=tmp_path, dev_models=True))
    default = catalog.default_for("speech")
    assert el.resolve_voice(catalog, "JBFqnCBsd6RMkjVDRZzb", None) == (default, None)  # premade: default
    assert el.resolve_voice(catalog, "dev-vits-tiny:bob", None)[1] == "bob"
    assert el.resolve_voice(catalog, "alice", None) == (catalog.get("dev-vits-tiny"), "alice")
    assert el.resolve_voice(catalog, "dev-vits-tiny", "eleven_flash_v2_5") == (
        catalog.get("dev-vits-tiny"),
        None,
    )
    assert el.resolve_voice(catalog, "21m00Tcm4TlvDq8ikWAM", "dev-vits-tiny")[0].id == "dev-vits-tiny"
    with pytest.raises(el.VoiceNotFound):
        el.resolve_voice(catalog, "dev-vits-tiny:carol", None)
