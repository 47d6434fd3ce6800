"""/v1/watermark/detect: is this audio ours, and which job made it?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from gen_server.contract import examples
from gen_server.deps import caller, job_service
from gen_server.errors import InvalidInput, NotFound
from gen_server.instance_secrets import resolve
from gen_server.jobs import Caller, JobService
from gen_server.provenance import detect_bytes
from gen_server.routes.uploads import read_file

router = APIRouter(prefix="/v1/watermark", tags=["watermark"])

MAX_DETECT_BYTES = 100 * 1024 * 1024


class DetectionView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.DETECTION_VIEW]})

    detected: bool
    confidence: float = Field(description="Pilot correlation score; ~N(0,1) on unmarked audio")
    payload: str | None = Field(None, description="32-bit payload (hex) when detected")
    job_id: str | None = Field(None, description="The job that made the audio, when you may see it")
    metadata_job_id: str | None = Field(None, description="job_id tag found in the file's metadata, if any")


@router.post("/detect", response_model=DetectionView, summary="Detect Soundry's watermark in an audio file")
async def detect(
    file: UploadFile,
    service: Annotated[JobService, Depends(job_service)],
    who: Annotated[Caller, Depends(caller)],
) -> DetectionView:
    """Decode the upload, look for the keyed watermark and map its payload back to a job."""
    data = await read_file(file, MAX_DETECT_BYTES, "file")
    try:
        key = resolve(service.settings).watermark_key
        found = await run_in_threadpool(detect_bytes, data, key, service.store)
    except InvalidInput as e:
        raise InvalidInput(e.message, field="file") from e
    job_id = found.job_id
    if job_id is not None:
        try:
            service.get(job_id, who)
        except NotFound:
            job_id = None  # the mark is ours, but the job is not the caller's to see
    return DetectionView(
        detected=found.detection.detected,
        confidence=round(found.detection.confidence, 3),
        payload=f"{found.detection.payload:08x}" if found.detection.payload is not None else None,
        job_id=job_id,
        metadata_job_id=found.metadata_job_id,
    )
