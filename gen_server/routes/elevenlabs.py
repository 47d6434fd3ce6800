"""ElevenLabs-compatible endpoints (sound effects; speech to follow), for apps using its official SDK."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gen_server.audio.encode import MEDIA_TYPES
from gen_server.contract import examples
from gen_server.contract.spec import JobRequest, Sampling
from gen_server.deps import caller, job_service
from gen_server.jobs import Caller, JobService
from gen_server.routes.openai_compat import _run

router = APIRouter(tags=["compatibility"])
Service = Annotated[JobService, Depends(job_service)]
Who = Annotated[Caller, Depends(caller)]


class SoundGenerationRequest(BaseModel):
    """The common ``POST /v1/sound-generation`` shape for sound effects."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "glass shattering on concrete", "duration_seconds": 2.0}]},
    )

    text: str = Field(min_length=1, max_length=2000)
    duration_seconds: float | None = Field(None, ge=0.5, le=60.0, allow_inf_nan=False)
    prompt_influence: float = Field(0.3, ge=0.0, le=1.0, allow_inf_nan=False)
    model_id: str | None = Field(None, description="A catalog sfx model (the default when omitted)")
    output_format: Literal["mp3", "wav", "flac", "ogg"] = "mp3"
    seed: int | None = Field(None, ge=0, le=2**31 - 1)


def influence_to_cfg(influence: float) -> float:
    """Map prompt influence (0..1) to classifier-free guidance: 0 -> 1.0, 0.3 -> 2.8, 1 -> 7.0."""
    return 1.0 + 6.0 * influence


@router.post(
    "/v1/sound-generation",
    summary="Synchronous text to sound effect",
    response_class=Response,
    responses={200: {"content": examples.binary("audio/mpeg", "audio/wav", "audio/flac", "audio/ogg")}},
)
async def sound_generation(body: SoundGenerationRequest, service: Service, who: Who) -> Response:
    """Queue an sfx job, wait for it and return the audio (``duration_seconds`` omitted: 4 s)."""
    req = JobRequest(
        kind="sfx",
        model=body.model_id,
        prompt=body.text,
        duration_s=body.duration_seconds or 4.0,
        seed=body.seed,
        sampling=Sampling(cfg_coef=influence_to_cfg(body.prompt_influence)),
        format=body.output_format,
    )
    data = await run_in_threadpool(_run, service, who, req)
    return Response(data, media_type=MEDIA_TYPES[body.output_format])
