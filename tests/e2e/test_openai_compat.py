"""Apps that speak OpenAI's speech API work unchanged: the official ``openai`` client against Soundry.

Every ``response_format``, streamed (``with_streaming_response``) and not, is one file that PyAV
decodes whole, as long as the WAV of the same request (within 5%), for text with abbreviations.
"""

from __future__ import annotations

import base64
import io
import json

import av
import httpx
import mutagen.mp3
import numpy as np
import openai
import pytest
from openai import OpenAI

from tests.helpers import transcribe, words

pytestmark = pytest.mark.e2e

TEXT = "Hello from Soundry. The weather today is sunny and warm."
HARD_TEXT = (
    "Dr. Smith met Mr. Jones at 3 p.m. in the U.S. office. They talked for an hour! "
    "Was it useful? He lived in the U.K. until 1973."
)
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
RATE = 24000


@pytest.fixture(scope="module")
def openai_client(server_url: str) -> OpenAI:
    return OpenAI(base_url=f"{server_url}/v1", api_key="not-needed-on-a-keyless-server", timeout=240)


def decoded_seconds(data: bytes, fmt: str) -> float:
    """Length of ``data`` decoded whole by PyAV (an independent decoder; pcm: bytes / 2 / 24 kHz)."""
    if fmt == "pcm":
        assert len(data) % 2 == 0
        return len(data) / 2 / RATE
    with av.open(io.BytesIO(data)) as container:
        frames = sum(frame.samples for frame in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    return frames / rate


SEED = 7
"""Every request of the format tests sends this seed (Soundry's extension): without it each request
draws its own and Piper's durations vary by a few percent from request to request."""


def speak(client: OpenAI, fmt: str, *, streamed: bool, text: str = HARD_TEXT, **kw: object) -> bytes:
    args = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt, **kw}
    args.setdefault("extra_body", {"seed": SEED})
    if not streamed:
        return client.audio.speech.create(**args).content  # type: ignore[arg-type]
    chunks: list[bytes] = []
    with client.audio.speech.with_streaming_response.create(**args) as response:  # type: ignore[arg-type]
        chunks.extend(response.iter_bytes())
    return b"".join(chunks)


@pytest.fixture(scope="module")
def wav_seconds(openai_client: OpenAI) -> float:
    """The reference: the same request as WAV (seeded Piper: every request speaks the same audio)."""
    return decoded_seconds(speak(openai_client, "wav", streamed=False), "wav")


def test_models_list(openai_client: OpenAI) -> None:
    ids = {m.id for m in openai_client.models.list()}
    assert {"piper-en_US-joe-medium", "musicgen-small"} <= ids


def test_speech_wav_is_intelligible(openai_client: OpenAI) -> None:
    response = openai_client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="wav"
    )
    with av.open(io.BytesIO(response.content)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    heard = set(words(transcribe(samples.astype(np.float32) / 32768.0, RATE)))
    assert len([w for w in words(TEXT) if w in heard]) >= len(words(TEXT)) // 2, heard


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_is_one_whole_file(
    openai_client: OpenAI, wav_seconds: float, fmt: str, streamed: bool
) -> None:
    data = speak(openai_client, fmt, streamed=streamed)
    seconds = decoded_seconds(data, fmt)
    assert wav_seconds > 5.0  # four sentences, no cut inside "Dr. Smith ... U.S. office."
    assert abs(seconds - wav_seconds) <= 0.05 * wav_seconds, (fmt, seconds, wav_seconds)
    if fmt == "mp3":  # players read the length from the file (mutagen: what tag editors and players use)
        length = mutagen.mp3.MP3(io.BytesIO(data)).info.length
        assert abs(length - wav_seconds) <= 0.05 * wav_seconds, length
        # an ID3v2.3/2.4 tag header, not 3 stray bytes of audio: more than one means concatenated files
        assert data.count(b"ID3\x04\x00") + data.count(b"ID3\x03\x00") <= 1, "concatenated files"


def test_first_audio_arrives_while_the_job_still_runs(openai_client: OpenAI, server_url: str) -> None:
    """Streaming, judged by the job's own state: 40 sentences take the voice many seconds on any CPU
    (Piper's real-time factor is ~0.05-0.1, so ~150 s of speech), the first one a fraction of that."""
    text = " ".join(f"Here is sentence number {i} of a long narration." for i in range(40))
    states: list[str] = []
    size = 0
    with openai_client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm"
    ) as response:
        job_url = f"{server_url}/v1/jobs/{response.headers['x-soundry-job-id']}"
        for chunk in response.iter_bytes():
            if chunk and not states:
                states.append(httpx.get(job_url).json()["state"])
            size += len(chunk)
    assert states == ["running"], "the first audio came only after the job had ended"
    assert size / 2 / RATE > 60.0


def test_one_job_one_watermark_per_request(openai_client: OpenAI, server_url: str) -> None:
    before = {j["id"] for j in httpx.get(f"{server_url}/v1/jobs", params={"limit": 200}).json()}
    with openai_client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=HARD_TEXT, response_format="mp3"
    ) as response:
        job_id = response.headers["x-soundry-job-id"]
        data = response.read()
    after = {j["id"] for j in httpx.get(f"{server_url}/v1/jobs", params={"limit": 200}).json()}
    assert after - before == {job_id}, "one request, one job"
    job = httpx.get(f"{server_url}/v1/jobs/{job_id}").json()
    assert job["state"] == "succeeded"
    found = httpx.post(
        f"{server_url}/v1/watermark/detect", files={"file": ("speech.mp3", data, "audio/mpeg")}, timeout=120
    ).json()
    assert found["detected"] and found["payload"] == job["result"]["watermark_payload"], found


def test_sse_deltas_join_into_the_file(openai_client: OpenAI, server_url: str, wav_seconds: float) -> None:
    with httpx.stream(
        "POST",
        f"{server_url}/v1/audio/speech",
        json={
            "model": "gpt-4o-mini-tts",
            "voice": "marin",
            "input": HARD_TEXT,
            "response_format": "mp3",
            "stream_format": "sse",
        },
        timeout=240,
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events[-1:]] == ["speech.audio.done"]
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert abs(decoded_seconds(audio, "mp3") - wav_seconds) <= 0.05 * wav_seconds


@pytest.mark.parametrize("model", ["tts-1-hd", "tts-1-1106", "gpt-4o-mini-tts-2025-03-20", "gpt-4o-mini-tts"])
@pytest.mark.parametrize("voice", ["cedar", "verse"])
def test_current_voice_names_and_dated_models_are_accepted(
    openai_client: OpenAI, model: str, voice: str
) -> None:
    data = openai_client.audio.speech.create(
        model=model, voice=voice, input="Ok.", response_format="pcm"
    ).content
    assert len(data) / 2 / RATE > 0.2


def test_instructions_set_the_pace(openai_client: OpenAI) -> None:
    """Pace words become a speed factor (0.85 for "slowly"): the same audio as asking for that speed."""
    seeded = {"extra_body": {"seed": 5}}  # Soundry's extension: the same seed, the same voice
    normal = speak(openai_client, "pcm", streamed=False, text=TEXT, **seeded)
    slowly = "Speak slowly and calmly."
    slow = speak(openai_client, "pcm", streamed=False, text=TEXT, instructions=slowly, **seeded)
    asked = speak(openai_client, "pcm", streamed=False, text=TEXT, speed=0.85, **seeded)
    assert len(slow) > len(normal)
    assert len(slow) == len(asked)


def test_voices_are_listed(server_url: str) -> None:
    voices = httpx.get(f"{server_url}/v1/audio/voices").json()["voices"]
    assert {"alloy", "marin", "cedar"} <= {v["id"] for v in voices}
    assert all(v["model"] == "piper-en_US-joe-medium" for v in voices)


def test_errors_reach_the_sdk_in_openais_shape(openai_client: OpenAI, server_url: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        openai_client.audio.speech.create(model="tts-1", voice="zzz", input="hi")
    assert "unknown voice 'zzz'" in info.value.message
    body = httpx.post(
        f"{server_url}/v1/audio/speech", json={"model": "tts-1", "input": "hi", "voice": "zzz"}
    ).json()
    assert body["error"]["param"] == "voice" and body["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.UnprocessableEntityError) as info:
        openai_client.audio.speech.create(model="tts-1", voice="alloy", input="?!")  # nothing to speak
    assert info.value.body["param"] == "text"  # type: ignore[index]
    with pytest.raises(openai.UnprocessableEntityError):
        openai_client.audio.speech.create(model="musicgen-small", voice="alloy", input="hi")


def test_captioned_speech_answers_audio_captions_and_words(openai_client: OpenAI) -> None:
    """The extension through the SDK's raw POST: the file, its SRT and word timings in one answer."""
    text = "Captions come with the audio. Every word has its time."
    answer = openai_client.post(
        "/audio/speech/captioned",
        body={"model": "tts-1", "input": text, "voice": "alloy", "response_format": "mp3", "seed": 3},
        cast_to=httpx.Response,
    ).json()
    audio = base64.b64decode(answer["audio"])
    assert decoded_seconds(audio, "mp3") > 1.5
    assert [w["text"] for w in answer["words"]] == text.split()
    assert answer["caption_format"] == "srt" and "-->" in answer["captions"]
    assert answer["captions"].replace("\n", " ").count("Every word has its time.") == 1
