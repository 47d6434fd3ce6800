"""/v1/watermark/detect: is this audio ours, and which job made it? With the file's C2PA verdict."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from gen_server.content_credentials import Verdict, resolve_identity
from gen_server.contract import examples
from gen_server.deps import caller, job_service
from gen_server.errors import InvalidInput, NotFound
from gen_server.instance_secrets import resolve
from gen_server.jobs import Caller, JobService
from gen_server.provenance import clone_of, detect_bytes
from gen_server.routes.uploads import read_file

router = APIRouter(prefix="/v1/watermark", tags=["watermark"])

MAX_DETECT_BYTES = 100 * 1024 * 1024


class C2paView(BaseModel):
    """The file's C2PA Content Credentials: present, valid, who signed, whether the audio changed since."""

    supported: bool = Field(description="False for formats that cannot carry C2PA (ogg, raw, unknown)")
    present: bool = Field(description="The file carries a C2PA manifest")
    valid: bool | None = Field(
        None, description="Signature and hashes hold (the signer may still be untrusted); null without one"
    )
    state: str | None = Field(None, description="c2pa's validation_state: Trusted, Valid or Invalid")
    trusted: bool = Field(
        False, description="The signer chains to a trusted root (this installation's own CA counts)"
    )
    signer: str | None = Field(None, description="Common name of the signing certificate")
    issuer: str | None = Field(None, description="Organisation that issued the signing certificate")
    altered: bool | None = Field(
        None, description="The audio bytes changed after signing (data hash mismatch); null without one"
    )
    errors: list[str] = Field(default_factory=list, description="Validation failures, 'code: explanation'")
    actions: list[str] = Field(default_factory=list, description="Actions of the active manifest")
    ingredients: list[str] = Field(default_factory=list, description="Titles of its ingredients")
    generation: dict[str, Any] | None = Field(
        None, description="Soundry's generation assertion: model, licence, commercial_use, job_id, seed, ..."
    )
    summary: str = Field(description="The verdict in one line")

    @classmethod
    def of(cls, verdict: Verdict) -> C2paView:
        data = verdict.public()
        data.pop("format")
        data.pop("note")
        return cls(**data, summary=verdict.summary())


class SpanView(BaseModel):
    """A stretch of the file that carries Soundry's mark (0.5 s resolution or better)."""

    start_s: float = Field(description="Where the marked stretch starts in the file (s)")
    end_s: float = Field(description="Where it ends (s)")
    payload: str = Field(description="32-bit payload (hex) it carries")
    job_id: str | None = Field(None, description="The job that made it, when you may see it")
    confidence: float = Field(description="z-score of the payload's pattern inside the stretch")


class DetectionView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.DETECTION_VIEW]})

    detected: bool
    confidence: float = Field(description="Pilot correlation score; ~N(0,1) on unmarked audio")
    payload: str | None = Field(None, description="32-bit payload (hex) when detected")
    method: Literal["decoded", "matched"] | None = Field(
        None,
        description="How the payload was found: decoded from the mark (anyone holding the key can), or "
        "matched: too weak to decode, it matched one of the payloads this installation issued (or the "
        "job named in the request) "
        "(confidence is then that match's z-score, against a threshold for all issued payloads)",
    )
    job_id: str | None = Field(None, description="The job that made the audio, when you may see it")
    metadata_job_id: str | None = Field(None, description="job_id tag found in the file's metadata, if any")
    c2pa: C2paView | None = Field(None, description="The file's C2PA Content Credentials, checked")
    clone: bool | None = Field(
        None, description="The job behind the mark spoke with a cloned voice (null: not traced to a job here)"
    )
    cloned_voice: str | None = Field(
        None, description="'cloned voice <id>': the library voice, when you may see the job (owner or admin)"
    )
    spans: list[SpanView] = Field(
        default_factory=list,
        description="Where the mark is, per payload: a clip inside a longer recording, or several clips",
    )


@router.post(
    "/detect",
    response_model=DetectionView,
    summary="Detect Soundry's watermark in an audio file and check its C2PA Content Credentials",
)
async def detect(
    file: UploadFile,
    service: Annotated[JobService, Depends(job_service)],
    who: Annotated[Caller, Depends(caller)],
    claim: Annotated[
        str | None,
        Form(
            alias="job_id",
            description="Check the file against this job's mark (one of yours): a single test, so marks "
            "too weak to find among every payload issued (short crops, noisy copies) still confirm it",
        ),
    ] = None,
) -> DetectionView:
    """Decode the upload, look for the keyed watermark and map its payload back to a job; read and
    validate its C2PA manifest (trusting this installation's own CA)."""
    if claim is not None:
        try:
            await service.aget(claim, who)
        except NotFound as e:
            raise NotFound(e.message, field="job_id") from e
    data = await read_file(file, MAX_DETECT_BYTES, "file")
    try:
        key = resolve(service.settings).watermark_key
        identity = resolve_identity(service.settings)
        found = await run_in_threadpool(
            partial(detect_bytes, data, key, service.store, identity, claim=claim)
        )
    except InvalidInput as e:
        raise InvalidInput(e.message, field="file") from e

    def visible(job_id: str | None) -> str | None:
        if job_id is not None:
            try:
                service.get(job_id, who)
            except NotFound:
                return None  # the mark is ours, but the job is not the caller's to see
        return job_id

    job_id = visible(found.job_id)
    # anyone learns that a traced mark is a clone (the point of marking them); only the job's owner or
    # an admin learns which voice
    clone = clone_of(service.store, found.job_id) if found.job_id is not None else None
    return DetectionView(
        detected=found.detection.detected,
        confidence=round(found.detection.confidence, 3),
        payload=f"{found.detection.payload:08x}" if found.detection.payload is not None else None,
        method=found.method,
        job_id=job_id,
        metadata_job_id=found.metadata_job_id,
        c2pa=C2paView.of(found.c2pa),
        clone=None if found.job_id is None else clone is not None,
        cloned_voice=clone.describe() if clone is not None and job_id is not None else None,
        spans=[
            SpanView(
                start_s=round(s.span.start_s, 3),
                end_s=round(s.span.end_s, 3),
                payload=f"{s.span.payload:08x}",
                job_id=visible(s.job_id),
                confidence=round(s.span.confidence, 3),
            )
            for s in found.spans
        ],
    )
