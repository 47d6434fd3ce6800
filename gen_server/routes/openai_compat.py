"""Drop-in endpoints for apps that already speak OpenAI's speech API or the common SFX API shape."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import numpy as np
import soundfile as sf
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gen_server.audio.encode import MEDIA_TYPES, EncodeFormat, decode, encode
from gen_server.contract import examples
from gen_server.contract.spec import JobRequest
from gen_server.deps import caller, job_service
from gen_server.errors import GenerationFailed, InvalidInput
from gen_server.jobs import Caller, JobService

router = APIRouter(tags=["compatibility"])
Service = Annotated[JobService, Depends(job_service)]
SPEECH_MEDIA_TYPES = ("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav", "audio/pcm")
Who = Annotated[Caller, Depends(caller)]

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
)
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
_OUR_FORMAT: dict[str, EncodeFormat] = {
    "mp3": "mp3",
    "opus": "ogg",
    "aac": "aac",
    "flac": "flac",
    "wav": "wav",
    "pcm": "pcm",
}
_STREAMED = ("pcm", "wav", "mp3")
PCM_RATE = 24000
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")


class SpeechRequest(BaseModel):
    """OpenAI ``POST /v1/audio/speech`` body."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"model": "tts-1", "input": "Hello from Soundry.", "voice": "alloy"}]
        },
    )

    model: str = Field(description="tts-1, tts-1-hd, gpt-4o-mini-tts (the default voice) or a catalog id")
    input: str = Field(min_length=1, max_length=4096)
    voice: str = Field("alloy", description="An OpenAI voice name (default speaker) or a catalog speaker")
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(None, description="Accepted for compatibility; not used")


def _job_request(body: SpeechRequest, service: JobService, text: str, fmt: str) -> JobRequest:
    catalog = service.catalog
    entry = catalog.default_for("speech") if body.model in OPENAI_MODELS else catalog.get(body.model)
    if entry.kind != "speech":
        raise InvalidInput(f"model '{entry.id}' is not a speech model", field="model")
    voice: str | None
    if body.voice in entry.speakers:
        voice = body.voice
    elif body.voice in OPENAI_VOICES:
        voice = None
    else:
        known = ", ".join((*OPENAI_VOICES, *entry.speakers))
        raise InvalidInput(f"unknown voice '{body.voice}'; voices: {known}", field="voice")
    return JobRequest(
        kind="speech",
        model=entry.id,
        text=text,
        voice=voice,
        speed=body.speed,
        format=fmt,
        post={"sample_rate": PCM_RATE, "channels": 1},
    )


def _chunks(text: str, first_chars: int = 120, rest_chars: int = 400) -> list[str]:
    """Sentences grouped so the first chunk is short (fast first audio) and later ones larger."""
    groups: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE.split(text.strip())):
        if not sentence:
            continue
        limit = first_chars if len(groups) <= 1 else rest_chars
        if groups and len(groups) > 1 and len(groups[-1]) + len(sentence) < limit:
            groups[-1] = f"{groups[-1]} {sentence}"
        else:
            groups.append(sentence)
    return groups or [text]


def _run(service: JobService, who: Caller, req: JobRequest) -> bytes:
    view = service.submit(req, who)
    done = service.wait(view.id, who, timeout_s=600)
    if done.state != "succeeded":
        message = done.error.message if done.error else f"speech job ended {done.state}"
        raise GenerationFailed(message)
    data, _, _ = service.audio(view.id, who)
    return data


def _wav_stream_header(rate: int) -> bytes:
    """A 16-bit mono WAV header with unknown length (streamed WAV, as OpenAI sends it)."""
    byte_rate = rate * 2
    return (
        b"RIFF"
        + (0xFFFFFFFF).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + byte_rate.to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + (0xFFFFFFFF).to_bytes(4, "little")
    )


def _pcm16(wav: bytes) -> bytes:
    samples, _ = sf.read(io.BytesIO(wav), dtype="int16")
    return np.asarray(samples).tobytes()


@router.post(
    "/v1/audio/speech",
    summary="OpenAI-compatible text to speech (streamed for pcm, wav and mp3)",
    response_class=StreamingResponse,
    responses={200: {"content": examples.binary(*SPEECH_MEDIA_TYPES)}},
)
async def speech(body: SpeechRequest, service: Service, who: Who) -> StreamingResponse:
    """Speak ``input``; pcm/wav/mp3 stream sentence by sentence as soon as each is ready."""
    fmt = body.response_format
    media_type = MEDIA_TYPES[_OUR_FORMAT[fmt]]
    if fmt not in _STREAMED:
        req = _job_request(body, service, body.input, "wav")
        wav = await run_in_threadpool(_run, service, who, req)
        data = await run_in_threadpool(lambda: encode(decode(wav), _OUR_FORMAT[fmt], tags={}))
        return StreamingResponse(iter([data]), media_type=media_type)
    chunks = _chunks(body.input)
    requests = [_job_request(body, service, c, "mp3" if fmt == "mp3" else "wav") for c in chunks]
    views = [service.submit(r, who) for r in requests]  # all queued at once, served in order
    gap = np.zeros(int(0.25 * PCM_RATE), dtype=np.int16).tobytes()

    async def stream() -> AsyncIterator[bytes]:
        if fmt == "wav":
            yield _wav_stream_header(PCM_RATE)
        for i, view in enumerate(views):
            done = await run_in_threadpool(service.wait, view.id, who, 600.0, 0.02)
            if done.state != "succeeded":
                return
            data, _, _ = await run_in_threadpool(service.audio, view.id, who)
            if fmt == "mp3":
                yield data
            else:
                yield (gap if i else b"") + await run_in_threadpool(_pcm16, data)

    return StreamingResponse(stream(), media_type=media_type)
