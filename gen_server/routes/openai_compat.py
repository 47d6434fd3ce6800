"""OpenAI-compatible speech: ``POST /v1/audio/speech`` and ``GET /v1/audio/voices``.

One request is one speech job (one record, one watermark payload). Its audio is streamed from the
job's stream (sentence by sentence, see :mod:`gen_server.streams`) through one encoder
(:class:`~gen_server.audio.stream_encode.StreamEncoder`), so every ``response_format`` is one valid
file, streamed or not; ``stream_format=sse`` sends OpenAI's ``speech.audio.delta`` / ``speech.audio.done``
events instead. Errors use the shape OpenAI's SDK reads (``error.message/type/param/code``).

``instructions``: only pace is mapped ("slowly", "quickly", ...: a speed factor); no model served here
takes style prompts, so tone, accent and emotion words are accepted and ignored.

``tts-1-hd`` (and its dated ids): once Kokoro-82M's weights are in the models folder
(``soundry models pull kokoro-82m``), it speaks with Kokoro, each OpenAI voice on the Kokoro voice of
:data:`KOKORO_HD_VOICES`; without them it is ``tts-1`` (the default speech model). ``SOUNDRY_OPENAI_VOICES``
overrides either map.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gen_server.audio.encode import MEDIA_TYPES
from gen_server.captions import CaptionFormat
from gen_server.contract import examples
from gen_server.contract.catalog import KOKORO_ID, Catalog, ModelEntry, kokoro_installed
from gen_server.contract.result import WordTiming
from gen_server.contract.spec import JobRequest
from gen_server.contract.voice_mix import check_voice, is_blend
from gen_server.deps import caller, job_service
from gen_server.errors import InvalidInput
from gen_server.jobs import Caller, JobService
from gen_server.settings import Settings
from gen_server.streams import encoded_job_stream

router = APIRouter(tags=["compatibility"])
Service = Annotated[JobService, Depends(job_service)]
Who = Annotated[Caller, Depends(caller)]

OPENAI_VOICES = (
    *("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse"),
    *("marin", "cedar"),
)
KOKORO_HD_VOICES: dict[str, str] = {
    "alloy": "af_alloy",
    "ash": "am_michael",
    "ballad": "bm_george",
    "coral": "af_heart",
    "echo": "am_echo",
    "fable": "bm_fable",
    "onyx": "am_onyx",
    "nova": "af_nova",
    "sage": "bf_emma",
    "shimmer": "af_bella",
    "verse": "am_eric",
    "marin": "af_sarah",
    "cedar": "am_liam",
}
"""OpenAI voice -> Kokoro-82M voice for ``tts-1-hd``: the Kokoro voice of the same name where there is
one (alloy, echo, fable, onyx, nova), else one of the voice's apparent gender and accent."""
HD_MODEL = re.compile(r"^tts-1-hd(-\d{4})?$")
OPENAI_MODEL = re.compile(r"^(tts-1(-hd)?(-\d{4})?|gpt-4o(-mini)?-tts(-\d{4}-\d{2}-\d{2})?)$")
"""OpenAI's speech model ids, dated snapshots included (tts-1-1106, gpt-4o-mini-tts-2025-03-20)."""
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
STREAM_FORMAT: dict[str, str] = {
    "mp3": "mp3",
    "opus": "ogg",
    "aac": "aac",
    "flac": "flac",
    "wav": "wav",
    "pcm": "pcm",
}
"""OpenAI ``response_format`` -> :class:`StreamEncoder` format."""
PCM_RATE = 24000
"""OpenAI's speech rate: ``pcm`` is 24 kHz 16-bit mono; every format is made at this rate."""
_PACE = (
    (re.compile(r"\b(very|extremely|really) (slow(ly)?|unhurried)\b", re.I), 0.75),
    (re.compile(r"\b(very|extremely|really) (fast|quick(ly)?|rapid(ly)?)\b", re.I), 1.35),
    (re.compile(r"\b(slow(ly|er)?|unhurried|leisurely|calm(ly)?)\b", re.I), 0.85),
    (re.compile(r"\b(fast(er)?|quick(ly|er)?|rapid(ly)?|brisk(ly)?|hurried(ly)?)\b", re.I), 1.15),
)


class SpeechRequest(BaseModel):
    """OpenAI ``POST /v1/audio/speech`` body."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [{"model": "tts-1", "input": "Hello from Soundry.", "voice": "alloy"}]
        },
    )

    model: str = Field(
        description="tts-1, tts-1-hd, gpt-4o-mini-tts (dated ids too) or a catalog speech model"
    )
    input: str = Field(min_length=1, max_length=4096)
    voice: str = Field("alloy", description="An OpenAI voice name (see GET /v1/audio/voices) or a speaker")
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(
        None, max_length=4096, description="Pace words set the speed factor; other style words are ignored"
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Soundry extension: repeat a take exactly")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: the file's bytes as they are made; sse: speech.audio.delta events"
    )


@dataclass(frozen=True, slots=True)
class Voice:
    """An OpenAI voice name and the Soundry model and speaker that speak it."""

    name: str
    model: str
    speaker: str | None


def hd_model(settings: Settings, catalog: Catalog) -> ModelEntry | None:
    """The model behind ``tts-1-hd``: Kokoro-82M when its weights are installed, else ``None``."""
    if KOKORO_ID in catalog and kokoro_installed(settings):
        return catalog.get(KOKORO_ID)
    return None


def voice_map(settings: Settings, catalog: Catalog, *, hd: bool = False) -> dict[str, Voice]:
    """Every OpenAI voice name -> a Soundry voice (``SOUNDRY_OPENAI_VOICES``, then the default model).

    Args:
        settings: ``openai_voices`` and the models folder.
        catalog: The models.
        hd: The map of ``tts-1-hd``: Kokoro-82M's voices (:data:`KOKORO_HD_VOICES`) when it is
            installed, else the same map as ``tts-1``.

    Raises:
        InvalidInput: ``SOUNDRY_OPENAI_VOICES`` is malformed or names an unknown model or speaker.
    """
    default = catalog.default_for("speech")
    voices = {
        name: Voice(
            name, default.id, default.speakers[i % len(default.speakers)] if default.speakers else None
        )
        for i, name in enumerate(OPENAI_VOICES)
    }
    kokoro = hd_model(settings, catalog) if hd else None
    if kokoro is not None:
        voices = {name: Voice(name, kokoro.id, speaker) for name, speaker in KOKORO_HD_VOICES.items()}
    for item in filter(None, (part.strip() for part in settings.openai_voices.split(","))):
        name, sep, target = item.partition("=")
        model_id, _, speaker = target.strip().partition(":")
        if not sep or not name.strip() or not model_id:
            raise InvalidInput(f"SOUNDRY_OPENAI_VOICES: '{item}' is not NAME=MODEL[:SPEAKER]", field="voice")
        entry = catalog.get(model_id, field="voice")
        if speaker and speaker not in entry.speakers:
            known = ", ".join(entry.speakers) or "none"
            raise InvalidInput(
                f"SOUNDRY_OPENAI_VOICES: '{entry.id}' has no speaker '{speaker}'; speakers: {known}",
                field="voice",
            )
        voices[name.strip()] = Voice(name.strip(), entry.id, speaker or None)
    return voices


def pace(instructions: str | None) -> float:
    """The speed factor that ``instructions`` ask for (1.0 when they say nothing about pace)."""
    for pattern, factor in _PACE:
        if instructions and pattern.search(instructions):
            return factor
    return 1.0


def speech_job(body: SpeechRequest, service: JobService) -> JobRequest:
    """The speech job an OpenAI request stands for: model and speaker from the voice, 24 kHz mono.

    Raises:
        InvalidInput: Unknown model or voice (fields ``model``/``voice``).
    """
    catalog = service.catalog
    voices = voice_map(service.settings, catalog, hd=bool(HD_MODEL.match(body.model)))
    entry: ModelEntry
    if OPENAI_MODEL.match(body.model):
        voice = voices.get(body.voice)
        hd = hd_model(service.settings, catalog) if HD_MODEL.match(body.model) else None
        entry = catalog.get(voice.model) if voice else hd or catalog.default_for("speech")
        speaker = voice.speaker if voice else None
    else:
        entry = catalog.get(body.model)
        voice = voices.get(body.voice)
        speaker = voice.speaker if voice and voice.model == entry.id else None
    if entry.kind != "speech":
        raise InvalidInput(f"model '{entry.id}' is not a speech model", field="model")
    if body.voice in entry.speakers or (entry.voice_blending and is_blend(body.voice)):
        check_voice(body.voice, entry)
        speaker = body.voice
    elif body.voice not in voices:
        known = ", ".join((*voices, *entry.speakers))
        raise InvalidInput(f"unknown voice '{body.voice}'; voices: {known}", field="voice")
    return JobRequest(
        kind="speech",
        model=entry.id,
        text=body.input,
        voice=speaker,
        speed=min(max(body.speed * pace(body.instructions), 0.25), 4.0),
        seed=body.seed,
        format="wav",
        post={"sample_rate": PCM_RATE, "channels": 1},
    )


def _sse(chunks: Iterator[bytes], body: SpeechRequest) -> Iterator[bytes]:
    """OpenAI's speech SSE: ``speech.audio.delta`` events (base64 audio), then ``speech.audio.done``."""
    for data in chunks:
        if data:
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
            yield f"data: {json.dumps(event)}\n\n".encode()
    tokens = len(body.input.split())  # no tokenizer here: words stand in for input tokens
    usage = {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens}
    yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()


@router.post(
    "/v1/audio/speech",
    summary="OpenAI-compatible text to speech, streamed as it is made",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                **examples.binary(*{MEDIA_TYPES[f] for f in STREAM_FORMAT.values()}),
                "text/event-stream": {"example": examples.SPEECH_SSE},
            }
        }
    },
)
async def speech(body: SpeechRequest, service: Service, who: Who) -> StreamingResponse:
    """Speak ``input`` as one job; the audio streams sentence by sentence in the asked format."""
    view = await run_in_threadpool(service.submit, speech_job(body, service), who)
    fmt = STREAM_FORMAT[body.response_format]
    chunks, _, _ = await run_in_threadpool(encoded_job_stream, service, view.id, who, fmt)
    headers = {"X-Soundry-Job-Id": view.id}
    if body.stream_format == "sse":
        return StreamingResponse(_sse(chunks, body), media_type="text/event-stream", headers=headers)
    return StreamingResponse(chunks, media_type=MEDIA_TYPES[fmt], headers=headers)


CAPTIONED_TIMEOUT_S = 600.0
"""Longest wait of ``POST /v1/audio/speech/captioned`` for its job."""


class CaptionedSpeechRequest(SpeechRequest):
    """``POST /v1/audio/speech/captioned`` body: OpenAI's speech request plus the captions' format."""

    caption_format: CaptionFormat = Field("srt", description="Captions returned beside the audio")


class CaptionedSpeech(BaseModel):
    """The whole file (base64) with its captions and word timings, in one answer."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.CAPTIONED_SPEECH]})

    job_id: str
    audio: str = Field(description="The file in response_format, base64")
    response_format: SpeechFormat
    captions: str = Field(description="The captions in caption_format")
    caption_format: CaptionFormat
    words: list[WordTiming]


@router.post(
    "/v1/audio/speech/captioned",
    response_model=CaptionedSpeech,
    summary="Soundry extension: speech with captions and word timings in one answer",
)
async def captioned_speech(body: CaptionedSpeechRequest, service: Service, who: Who) -> CaptionedSpeech:
    """The same job as ``POST /v1/audio/speech`` (voices, models, speed), answered when it is made:
    the file (``response_format``, base64), its captions (``caption_format``) and every word's
    timing, for subtitles or lip-sync (like Kokoro-FastAPI's captioned speech; OpenAI has no such
    call). ``stream_format`` is ignored."""

    def run() -> CaptionedSpeech:
        view = service.submit(speech_job(body, service), who)
        done = service.finished(view.id, who, CAPTIONED_TIMEOUT_S)
        fmt = STREAM_FORMAT[body.response_format]
        data, _, _ = service.audio(view.id, who, fmt)  # type: ignore[arg-type]
        return CaptionedSpeech(
            job_id=view.id,
            audio=base64.b64encode(data).decode(),
            response_format=body.response_format,
            captions=service.captions(view.id, who, body.caption_format),
            caption_format=body.caption_format,
            words=(done.result.words if done.result else None) or [],
        )

    return await run_in_threadpool(run)


class VoiceInfo(BaseModel):
    """One voice of ``GET /v1/audio/voices``."""

    id: str
    name: str
    model: str
    speaker: str | None


class VoiceList(BaseModel):
    voices: list[VoiceInfo]


@router.get(
    "/v1/audio/voices",
    summary="The OpenAI voice names and the Soundry voices behind them",
    responses={200: {"content": examples.json_example(examples.OPENAI_VOICES)}},
)
async def voices(
    service: Service,
    who: Who,
    model: Annotated[
        str,
        Query(description="Whose map: tts-1 (also gpt-4o-mini-tts) or tts-1-hd", examples=["tts-1-hd"]),
    ] = "tts-1",
) -> VoiceList:
    """Every OpenAI voice name (``SOUNDRY_OPENAI_VOICES`` decides which model and speaker speak it);
    ``?model=tts-1-hd``: the voices of ``tts-1-hd`` (Kokoro-82M's when it is installed)."""
    del who
    mapped = voice_map(service.settings, service.catalog, hd=bool(HD_MODEL.match(model))).values()
    return VoiceList(
        voices=[VoiceInfo(id=v.name, name=v.name, model=v.model, speaker=v.speaker) for v in mapped]
    )
