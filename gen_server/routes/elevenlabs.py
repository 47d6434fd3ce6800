"""ElevenLabs-compatible endpoints, for apps using its API or official SDKs (``base_url`` = this server).

The mapping onto Soundry jobs lives in :mod:`gen_server.elevenlabs`; errors on these paths take
ElevenLabs' shape (``{"detail": {"status", "message"}}``, see ``gen_server.main``).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from gen_server import elevenlabs as el
from gen_server.captions import character_alignment
from gen_server.contract import examples
from gen_server.contract.catalog import Catalog
from gen_server.contract.spec import JobRequest
from gen_server.deps import caller, catalog, job_service
from gen_server.jobs import Caller, JobService
from gen_server.streams import encoded_job_stream

router = APIRouter(tags=["compatibility"], responses=el.ERROR_RESPONSES)
Service = Annotated[JobService, Depends(job_service)]
Who = Annotated[Caller, Depends(caller)]
Models = Annotated[Catalog, Depends(catalog)]
OutputFormatQuery = Annotated[
    el.OutputFormatCode,
    Query(
        description="codec_samplerate[_bitrate]: mp3/opus at that rate and kbit/s; wav; pcm (raw s16le "
        "mono); ulaw/alaw (raw G.711, 8 kHz)",
        examples=["mp3_44100_128"],
    ),
]
Ignored = Query(description="Accepted for compatibility; no effect", examples=[True])
AUDIO: dict[int | str, dict[str, Any]] = {200: {"content": examples.binary(*el.MEDIA_TYPES_OUT)}}


@router.post(
    "/v1/sound-generation",
    summary="ElevenLabs-compatible text to sound effect (synchronous)",
    response_class=Response,
    responses=AUDIO,
)
async def sound_generation(
    body: el.SoundGenerationRequest,
    service: Service,
    who: Who,
    output_format: OutputFormatQuery = "mp3_44100_128",
    enable_logging: Annotated[bool | None, Ignored] = None,
) -> Response:
    """Make one sound effect and answer its audio in ``output_format`` (``duration_seconds`` null: 5 s)."""
    fmt = el.output_format(output_format)
    req = el.sound_job(body, fmt)
    data, _ = await run_in_threadpool(el.generate, service, who, req, fmt)
    return Response(data, media_type=fmt.media_type)


VoiceId = Annotated[
    str,
    Path(
        description="A voice from GET /v1/voices (<model> or <model>:<speaker>), a speaker name, or an "
        "ElevenLabs premade voice id (the default voice)",
        examples=["piper-en_US-joe-medium"],
    ),
]
LatencyQuery = Annotated[
    int | None, Query(ge=0, le=4, description="Accepted for compatibility; no effect", examples=[0])
]


def speech_job(
    service: JobService, who: Caller, voice_id: str, body: el.TextToSpeechRequest, fmt: el.OutputFormat
) -> JobRequest:
    """The job for a text-to-speech request: a model voice, or a voice of the caller's library."""
    from gen_server.records.voices import VoiceRecords
    from gen_server.voices.service import visible

    record = VoiceRecords(service.redis).read(voice_id) if len(voice_id) == 32 else None
    if record is not None and visible(record, who):
        return el.library_speech_job(record.view(), body, fmt, service.catalog)
    return el.speech_job(voice_id, body, fmt, service.catalog)


@router.post(
    "/v1/text-to-speech/{voice_id}",
    summary="ElevenLabs-compatible text to speech (whole file)",
    response_class=Response,
    responses=AUDIO,
)
async def text_to_speech(
    voice_id: VoiceId,
    body: el.TextToSpeechRequest,
    service: Service,
    who: Who,
    output_format: OutputFormatQuery = "mp3_44100_128",
    enable_logging: Annotated[bool | None, Ignored] = None,
    optimize_streaming_latency: LatencyQuery = None,
) -> Response:
    """Speak ``text`` with ``voice_id`` and answer the whole file in ``output_format``."""
    fmt = el.output_format(output_format)
    req = speech_job(service, who, voice_id, body, fmt)
    data, _ = await run_in_threadpool(el.generate, service, who, req, fmt)
    return Response(data, media_type=fmt.media_type)


@router.post(
    "/v1/text-to-speech/{voice_id}/with-timestamps",
    summary="ElevenLabs-compatible text to speech with character timings (JSON: base64 audio + alignment)",
    response_model=el.AudioWithTimestamps,
)
async def text_to_speech_with_timestamps(
    voice_id: VoiceId,
    body: el.TextToSpeechRequest,
    service: Service,
    who: Who,
    output_format: OutputFormatQuery = "mp3_44100_128",
    enable_logging: Annotated[bool | None, Ignored] = None,
    optimize_streaming_latency: LatencyQuery = None,
) -> el.AudioWithTimestamps:
    """Speak ``text`` and answer the file (base64) with when each character is spoken, derived from the
    job's word timings (``alignment`` over the text sent, ``normalized_alignment`` over the text as read)."""
    fmt = el.output_format(output_format)
    req = speech_job(service, who, voice_id, body, fmt)
    data, view = await run_in_threadpool(el.generate, service, who, req, fmt)
    words = (view.result.words if view.result else None) or []
    spoken = " ".join(w.text for w in words)
    return el.AudioWithTimestamps(
        audio_base64=base64.b64encode(data).decode(),
        alignment=character_alignment(body.text, words),
        normalized_alignment=character_alignment(spoken, words),
    )


@router.post(
    "/v1/text-to-speech/{voice_id}/stream",
    summary="ElevenLabs-compatible text to speech, streamed sentence by sentence",
    response_class=StreamingResponse,
    responses=AUDIO,
)
async def text_to_speech_stream(
    voice_id: VoiceId,
    body: el.TextToSpeechRequest,
    service: Service,
    who: Who,
    output_format: OutputFormatQuery = "mp3_44100_128",
    enable_logging: Annotated[bool | None, Ignored] = None,
    optimize_streaming_latency: LatencyQuery = None,
) -> StreamingResponse:
    """Speak ``text`` as one job; the file in ``output_format`` streams as each sentence is made."""
    fmt = el.output_format(output_format)
    req = speech_job(service, who, voice_id, body, fmt)
    with el.renamed_fields(el.JOB_FIELDS["speech"]):
        view = await run_in_threadpool(service.submit, req, who)
    stream_format = "ogg" if fmt.codec == "opus" else fmt.codec
    chunks, _, _ = await run_in_threadpool(
        encoded_job_stream, service, view.id, who, stream_format, fmt.bitrate_kbps
    )
    return StreamingResponse(chunks, media_type=fmt.media_type, headers={"X-Soundry-Job-Id": view.id})


@router.get(
    "/v1/voices",
    response_model=el.VoicesResponse,
    summary="ElevenLabs-compatible voice list: your library voices, then every speaker of every speech model",
)
def list_voices(
    models: Models,
    service: Service,
    who: Who,
    show_legacy: Annotated[bool | None, Ignored] = None,
    category: Annotated[
        Literal["cloned", "premade"] | None,
        Query(
            description="cloned: the voice library alone; premade: the models' voices alone",
            examples=["cloned"],
        ),
    ] = None,
) -> el.VoicesResponse:
    """The caller's library voices (category ``cloned``, newest first), then every model voice."""
    from gen_server.voices.service import VoiceService

    cloned = [] if category == "premade" else [el.library_voice(v) for v in VoiceService(service).list(who)]
    return el.VoicesResponse(voices=cloned + ([] if category == "cloned" else el.voices(models)))


@router.get("/v2/voices", response_model=el.VoicesPage, summary="ElevenLabs-compatible voice search")
def search_voices(
    models: Models,
    search: Annotated[
        str | None,
        Query(max_length=200, description="Part of a voice id (case-insensitive)", examples=["vits"]),
    ] = None,
    page_size: Annotated[int, Query(ge=1, le=100, examples=[10])] = 10,
    next_page_token: Annotated[
        str | None, Query(pattern=r"^\d{1,6}$", description="From the previous page", examples=["10"])
    ] = None,
) -> el.VoicesPage:
    """Voices whose id contains ``search``, ``page_size`` at a time (``next_page_token`` pages on)."""
    found = [v for v in el.voices(models) if not search or search.lower() in v.voice_id.lower()]
    start = int(next_page_token or 0)
    page = found[start : start + page_size]
    more = start + page_size < len(found)
    return el.VoicesPage(
        voices=page,
        has_more=more,
        total_count=len(found),
        next_page_token=str(start + page_size) if more else None,
    )
