"""Apps that speak OpenAI's speech API work unchanged: the official ``openai`` client against Soundry."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import soundfile as sf
from openai import OpenAI

from gen_server.audio.encode import decode
from tests.helpers import transcribe, words

pytestmark = pytest.mark.e2e

TEXT = "Hello from Soundry. The weather today is sunny and warm."


@pytest.fixture(scope="module")
def openai_client(server_url: str) -> OpenAI:
    return OpenAI(base_url=f"{server_url}/v1", api_key="not-needed-on-a-keyless-server", timeout=120)


def test_models_list(openai_client: OpenAI) -> None:
    ids = {m.id for m in openai_client.models.list()}
    assert {"piper-en_US-joe-medium", "musicgen-small"} <= ids


def test_speech_wav_is_intelligible(openai_client: OpenAI) -> None:
    response = openai_client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="wav"
    )
    samples, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 24000
    heard = set(words(transcribe(samples, rate)))
    assert len([w for w in words(TEXT) if w in heard]) >= len(words(TEXT)) // 2, heard


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_speech_formats_decode(openai_client: OpenAI, fmt: str) -> None:
    response = openai_client.audio.speech.create(
        model="tts-1",
        voice="nova",
        input="Format check.",
        response_format=fmt,  # type: ignore[arg-type]
    )
    audio = decode(response.content)
    assert audio.duration_s > 0.3
    assert float(np.abs(audio.samples).max()) > 0.01


def test_speech_streams_pcm_chunks(openai_client: OpenAI) -> None:
    text = "First sentence arrives early. " + " ".join(f"Then sentence number {i} follows." for i in range(3))
    chunks: list[bytes] = []
    with openai_client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm", speed=1.2
    ) as response:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
    assert len(chunks) >= 2, "pcm was not streamed in pieces"
    pcm = np.frombuffer(b"".join(chunks), dtype=np.int16)
    assert pcm.size / 24000 > 2.0
    assert np.abs(pcm).max() > 1000


def test_unknown_voice_is_422_naming_voice(server_url: str) -> None:
    r = httpx.post(f"{server_url}/v1/audio/speech", json={"model": "tts-1", "input": "hi", "voice": "zzz"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "voice"


def test_sound_generation_returns_audio(server_url: str) -> None:
    r = httpx.post(
        f"{server_url}/v1/sound-generation",
        json={
            "text": "glass shattering",
            "duration_seconds": 1.5,
            "prompt_influence": 0.5,
            "output_format": "wav",
        },
        timeout=240,
    )
    assert r.status_code == 200, r.text
    samples, rate = sf.read(io.BytesIO(r.content), dtype="float32")
    assert rate == 16000
    assert abs(len(samples) / rate - 1.5) < 0.1
