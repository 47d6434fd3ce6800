"""OpenAI voice names and model ids -> Soundry speech jobs (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gen_server.contract.catalog import build_catalog
from gen_server.errors import InvalidInput
from gen_server.routes.openai_compat import OPENAI_MODEL, OPENAI_VOICES, SpeechRequest, pace, voice_map
from gen_server.settings import Settings


def test_voice_map_from_settings_makes_voices_distinct(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, dev_models=True, openai_voices="alloy=dev-vits-tiny:alice, nova=dev-vits-tiny:bob"
    )
    voices = voice_map(settings, build_catalog(settings))
    assert set(OPENAI_VOICES) <= set(voices)
    assert (voices["alloy"].model, voices["alloy"].speaker) == ("dev-vits-tiny", "alice")
    assert (voices["nova"].model, voices["nova"].speaker) == ("dev-vits-tiny", "bob")
    assert voices["marin"].model == "piper-en_US-joe-medium"  # unmapped: the default speech model


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("alloy", "is not NAME=MODEL"),
        ("alloy=nope", "unknown model 'nope'"),
        ("alloy=dev-vits-tiny:carol", "has no speaker 'carol'; speakers: alice, bob"),
    ],
)
def test_bad_voice_maps_are_refused_by_name(tmp_path: Path, mapping: str, message: str) -> None:
    settings = Settings(data_dir=tmp_path, dev_models=True, openai_voices=mapping)
    with pytest.raises(InvalidInput) as err:
        voice_map(settings, build_catalog(settings))
    assert message in err.value.message and err.value.field == "voice"


@pytest.mark.parametrize(
    "model",
    ["tts-1", "tts-1-hd", "tts-1-1106", "tts-1-hd-1106", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-03-20"],
)
def test_openai_model_ids_dated_ones_too(model: str) -> None:
    assert OPENAI_MODEL.match(model)


def test_non_openai_ids_are_catalog_ids() -> None:
    assert not OPENAI_MODEL.match("dev-vits-tiny") and not OPENAI_MODEL.match("tts-2")


@pytest.mark.parametrize(
    ("instructions", "factor"),
    [
        (None, 1.0),
        ("Cheerful and warm.", 1.0),
        ("Speak slowly.", 0.85),
        ("Very slowly, like a bedtime story", 0.75),
        ("Talk quickly and brightly", 1.15),
        ("really fast!", 1.35),
    ],
)
def test_pace_words_become_a_speed_factor(instructions: str | None, factor: float) -> None:
    assert pace(instructions) == factor


def test_request_defaults_match_openai() -> None:
    body = SpeechRequest(model="tts-1", input="Hi")
    assert (body.voice, body.response_format, body.speed) == ("alloy", "mp3", 1.0)
    assert body.stream_format == "audio"
