"""/v1/uploads: reference audio for melody, continuation and voice cloning."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, UploadFile

from gen_server.audio.encode import decode, encode
from gen_server.contract.upload import UploadView
from gen_server.deps import job_service
from gen_server.errors import InvalidInput
from gen_server.jobs import JobService
from gen_server.storage import upload_key

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_UPLOAD_S = 300.0
MIN_UPLOAD_S = 0.5


async def read_file(file: UploadFile, limit_bytes: int, what: str) -> bytes:
    """The uploaded file's bytes, at most ``limit_bytes`` read.

    Raises:
        InvalidInput: on ``file`` when it is larger or empty (``what`` names it in the message).
    """
    data = await file.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise InvalidInput(f"{what} exceeds {limit_bytes // 2**20} MiB", field="file")
    if not data:
        raise InvalidInput(f"{what} is empty", field="file")
    return data


@router.post("", status_code=201, response_model=UploadView, summary="Upload reference audio")
async def upload_audio(file: UploadFile, service: Annotated[JobService, Depends(job_service)]) -> UploadView:
    """Decode the file (any common format) and keep it as WAV; refer to it by ``id`` in a job."""
    data = await read_file(file, MAX_UPLOAD_BYTES, "upload")
    try:
        audio = decode(data, max_duration_s=MAX_UPLOAD_S)
    except InvalidInput as e:
        raise InvalidInput(e.message, field="file") from e
    if audio.duration_s < MIN_UPLOAD_S:
        raise InvalidInput(
            f"upload holds {audio.duration_s:.3f} s of audio (truncated?); references need at least "
            f"{MIN_UPLOAD_S} s",
            field="file",
        )
    upload_id = uuid.uuid4().hex
    service.store.put(upload_key(upload_id), encode(audio, "wav", wav_subtype="float32", tags={}))
    return UploadView(
        id=upload_id,
        duration_s=round(audio.duration_s, 3),
        sample_rate=audio.sample_rate,
        channels=audio.channels,
    )
