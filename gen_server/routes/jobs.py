"""/v1/jobs: submit, get, list, cancel, download, stream, events, captions."""

from __future__ import annotations

import asyncio
import functools
import re
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Literal, get_args

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from gen_server.audio.encode import MEDIA_TYPES
from gen_server.captions import MEDIA_TYPES as CAPTION_MEDIA_TYPES
from gen_server.captions import CaptionFormat
from gen_server.celery_config import Lane
from gen_server.contract import examples
from gen_server.contract.result import JobState, JobView
from gen_server.contract.spec import AudioFormat, JobRequest
from gen_server.deps import caller, job_service
from gen_server.errors import SoundryError
from gen_server.jobs import TERMINAL, Caller, JobService
from gen_server.streams import encoded_job_stream


class RangeNotSatisfiable(SoundryError):
    code = "range_not_satisfiable"
    http_status = 416


router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

Service = Annotated[JobService, Depends(job_service)]
Who = Annotated[Caller, Depends(caller)]
JobId = Annotated[str, Path(description="The job's id", examples=[examples.JOB_ID])]
IdempotencyKey = Annotated[
    str | None,
    Header(max_length=200, description="A repeat with this key gets the same job", examples=["order-1234"]),
]


SUBMIT_THREADS = 2
"""Threads that submit jobs at once. A few keep a burst of POSTs first come, first served: with one
thread per waiting request (the threadpool's 40) they contend for the GIL and a few wait far longer
than the rest (measured with benchmarks/api.py: p99 150 ms at 20 clients)."""

_submitters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def submitters() -> CapacityLimiter:
    """The running event loop's submit limiter (a limiter belongs to one loop; a server has one, test
    clients may run several at once)."""
    loop = asyncio.get_running_loop()
    limiter = _submitters.get(loop)
    if limiter is None:
        limiter = _submitters[loop] = CapacityLimiter(SUBMIT_THREADS)
    return limiter


PING_S = 15
"""Seconds between keep-alive comments (``: ping``) on an event stream with nothing new to say."""

MAX_PREFER_WAIT_S = 60
"""Longest ``Prefer: wait=N`` honoured (seconds); larger values wait this long."""

Prefer = Annotated[
    str | None,
    Header(
        max_length=200,
        description=f"RFC 7240 preferences: wait=N waits up to N s (at most {MAX_PREFER_WAIT_S}) for the job "
        "to end; ended: 201 with the finished job, else 202 as without it",
        examples=["wait=30"],
    ),
]


def prefer_wait_s(prefer: str | None) -> int | None:
    """The seconds a ``Prefer`` header's ``wait`` preference asks for, capped at :data:`MAX_PREFER_WAIT_S`.

    Preferences are comma-separated, each ``token[=value]`` with optional ``;`` parameters; a malformed
    or negative ``wait`` is ignored, as RFC 7240 says of preferences a server does not understand.
    """
    for preference in (prefer or "").split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        value = value.strip().strip('"')
        if name.strip().lower() == "wait" and value.isdigit():
            return min(int(value), MAX_PREFER_WAIT_S)
    return None


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    summary="Queue a generation job",
    responses={201: {"model": JobView, "description": "Prefer: wait=N given and the job ended in time"}},
)
async def submit_job(
    req: JobRequest,
    service: Service,
    who: Who,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    prefer: Prefer = None,
    lane: Annotated[
        Lane,
        Query(
            description="interactive (default): the UI and apps waiting on a result; batch: bulk work, "
            "handed out after every interactive job waiting in the same queue",
            examples=["batch"],
        ),
    ] = "interactive",
) -> JobView:
    """Validate and queue a job; returns at once with its id (poll it or stream its events).

    With ``Prefer: wait=N`` the answer waits up to N seconds (at most 60) for the job to end: 201 with
    the finished job (succeeded, failed or cancelled) and ``Location``, else 202 with the job as it is
    then; either way ``Preference-Applied: wait=N`` says how long it waited at most.

    Submitting runs on :data:`SUBMIT_THREADS` threads (it blocks on Redis and the broker, never for long);
    waiting runs in the server's threadpool: neither blocks the event loop.
    """
    view = await to_thread.run_sync(
        functools.partial(service.submit, req, who, idempotency_key=idempotency_key, lane=lane),
        limiter=submitters(),
    )
    wait_s = prefer_wait_s(prefer)
    if wait_s is None:
        return view
    response.headers["Preference-Applied"] = f"wait={wait_s}"
    if view.state not in TERMINAL and wait_s > 0:
        view = await run_in_threadpool(service.wait, view.id, who, timeout_s=wait_s)
    if view.state in TERMINAL:
        response.status_code = 201
        response.headers["Location"] = view.links["self"]
    return view


@router.get("", response_model=list[JobView], summary="List jobs, newest first")
def list_jobs(
    service: Service,
    who: Who,
    state: Annotated[JobState | None, Query(examples=["succeeded"])] = None,
    kind: Annotated[str | None, Query(pattern="^(speech|sfx|music)$", examples=["music"])] = None,
    limit: Annotated[int, Query(ge=1, le=200, examples=[20])] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000, examples=[0])] = 0,
) -> list[JobView]:
    return service.list(who, state=state, kind=kind, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobView, summary="A job's state, progress, result or error")
async def get_job(job_id: JobId, service: Service, who: Who) -> JobView:
    """The most frequent call (clients poll it): answered on the event loop, no threadpool hop."""
    return await service.aget(job_id, who)


@router.delete("/{job_id}", response_model=JobView, summary="Cancel a queued or running job")
@router.post(
    "/{job_id}/cancel", response_model=JobView, summary="Cancel a job (same as DELETE /v1/jobs/{id})"
)
def cancel_job(job_id: JobId, service: Service, who: Who) -> JobView:
    """Revoke a queued job or stop a running one at its next step; an ended job is 409 (cancelled: 200)."""
    return service.cancel(job_id, who)


@router.get(
    "/{job_id}/audio",
    summary="Download the job's audio",
    response_class=Response,
    responses={
        200: {"content": examples.binary("audio/wav", "audio/flac", "audio/mpeg", "audio/ogg")},
        206: {"description": "The requested byte range (Range: bytes=START-END)"},
    },
)
def job_audio(
    job_id: JobId,
    service: Service,
    who: Who,
    format: Annotated[
        AudioFormat | None, Query(description="Transcode to this format", examples=["mp3"])
    ] = None,
    range: Annotated[
        str | None, Header(max_length=100, description="One byte range", examples=["bytes=0-65535"])
    ] = None,
) -> Response:
    """The audio file, transcoded when ``format`` differs from the job's own; honours ``Range: bytes=``."""
    data, media_type, fmt = service.audio(job_id, who, format)
    headers = {"Content-Disposition": f'attachment; filename="{job_id}.{fmt}"', "Accept-Ranges": "bytes"}
    span = byte_range(range, len(data)) if range else None
    if span is None:
        return Response(data, media_type=media_type, headers=headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(data[start : end + 1], status_code=206, media_type=media_type, headers=headers)


@router.get(
    "/{job_id}/captions",
    summary="Captions of a speech job (SRT, WebVTT or JSON with every word's timing)",
    response_class=Response,
    responses={
        200: {
            "content": {
                CAPTION_MEDIA_TYPES["srt"]: {"example": examples.CAPTIONS_SRT},
                CAPTION_MEDIA_TYPES["vtt"]: {"example": examples.CAPTIONS_VTT},
                CAPTION_MEDIA_TYPES["json"]: {"example": examples.CAPTIONS_JSON},
            }
        }
    },
)
def job_captions(
    job_id: JobId,
    service: Service,
    who: Who,
    format: Annotated[CaptionFormat, Query(description="Caption file format", examples=["srt"])] = "srt",
) -> Response:
    """Cues cut at sentence ends (and at clauses when long), at most two lines of 42 characters and
    1-7 s each, timed from the result's ``words`` (the voice's own durations where it has them)."""
    text = service.captions(job_id, who, format)
    headers = {"Content-Disposition": f'attachment; filename="{job_id}.{format}"'}
    media_type = CAPTION_MEDIA_TYPES[format]
    return Response(text, media_type=f"{media_type}; charset=utf-8", headers=headers)


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (start, end) of a single ``bytes=`` range; ``None`` for forms we do not serve.

    Raises:
        RangeNotSatisfiable: when the range lies outside the file (HTTP 416).
    """
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # suffix: the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise RangeNotSatisfiable(f"range {header!r} is outside the {size}-byte file", field="range")
    return start, end


StreamFormat = Literal["wav", "pcm", "mp3", "ogg", "flac", "aac"]


@router.get(
    "/{job_id}/stream",
    summary="The job's audio while it is being made (everything so far, then live)",
    response_class=StreamingResponse,
    responses={200: {"content": examples.binary(*(MEDIA_TYPES[f] for f in get_args(StreamFormat)))}},
)
async def stream_job(
    job_id: JobId,
    service: Service,
    who: Who,
    format: Annotated[StreamFormat, Query(description="Container and codec", examples=["mp3"])] = "wav",
) -> StreamingResponse:
    """Speech streams sentence by sentence as the worker makes it, music and effects about a second at a
    time as the model's tokens become final, from any API host; a late client gets everything so far
    first. A job whose stream is gone (expired) sends its stored file when it ends. A job that fails
    before any audio answers with its error; one that fails mid-stream has its connection cut (an
    incomplete chunked body), so no client mistakes a cut file for a whole one.
    ``wav`` streams carry an unknown-length header; ``pcm`` is raw 16-bit little-endian at the job's rate
    (``X-Soundry-Sample-Rate``, ``X-Soundry-Channels``).
    """
    chunks, rate, channels = await run_in_threadpool(encoded_job_stream, service, job_id, who, format)
    headers = {"X-Soundry-Job-Id": job_id, "X-Soundry-Sample-Rate": str(rate)}
    headers["X-Soundry-Channels"] = str(channels)
    return StreamingResponse(chunks, media_type=MEDIA_TYPES[format], headers=headers)


@router.get(
    "/{job_id}/events",
    summary="Server-sent events: the job's state and progress until it ends",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"example": examples.EVENTS}}}},
)
def job_events(
    job_id: JobId,
    service: Service,
    who: Who,
    poll_s: Annotated[
        float,
        Query(
            ge=0.05,
            le=5,
            description="Deprecated and ignored: changes are pushed as they happen",
            examples=[1],
        ),
    ] = 0.25,
) -> EventSourceResponse:
    """``event: progress`` on every change of state or progress, then ``event: end`` with the final job.

    Changes are pushed from the job's record as workers write them; a ``: ping`` comment every
    15 s keeps proxies and clients from timing out while the job waits in the queue.
    """
    service.get(job_id, who)  # 404 before the stream starts
    views = service.watch(job_id, who)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        last = None
        try:
            while (view := await run_in_threadpool(next, views, None)) is not None:
                current = (view.state, round(view.progress, 3))
                if current != last:
                    last = current
                    event = "end" if view.state in TERMINAL else "progress"
                    yield ServerSentEvent(data=view.model_dump_json(), event=event)
        finally:
            await run_in_threadpool(views.close)

    return EventSourceResponse(stream(), ping=PING_S, headers={"Cache-Control": "no-cache"})
