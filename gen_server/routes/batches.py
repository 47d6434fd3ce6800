"""/v1/batches: submit a batch file, follow it, download its files as one zip.

The whole file is validated before anything is queued (422 with every error, by line). Items are
queued through the job service with the same idempotency keys as ``soundry batch``, so a file sent
twice (or run from the CLI by the same caller) re-attaches to its existing jobs. A caller with a
concurrent-job quota gets as many items queued as the quota allows; the rest wait in the batch
(state ``pending``) and are queued as earlier ones finish, each time the batch is read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gen_server.batch import (
    MANIFEST_NAME,
    MAX_FILE_BYTES,
    SUMMARY_NAME,
    BatchError,
    BatchFormat,
    BatchInvalid,
    BatchPlan,
    PlannedJob,
    idempotency_key,
    manifest_entry,
    manifest_lines,
    validate_batch_bytes,
)
from gen_server.contract import examples
from gen_server.contract.result import JobError, JobView
from gen_server.contract.spec import JobRequest
from gen_server.deps import caller, job_service
from gen_server.errors import Conflict, InvalidInput, NotFound, RateLimited, SoundryError
from gen_server.jobs import TERMINAL, Caller, JobService
from gen_server.records import keys
from gen_server.storage import upload_key

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/batches", tags=["batches"])

Service = Annotated[JobService, Depends(job_service)]
Who = Annotated[Caller, Depends(caller)]
BatchId = Annotated[str, Path(description="The batch's id", examples=[examples.BATCH_ID])]

ItemState = Literal["pending", "queued", "running", "succeeded", "failed", "cancelled"]
BatchState = Literal["running", "succeeded", "failed", "cancelled"]
_SPOOL_BYTES = 64 * 1024 * 1024
_FAILED_MARK = "!"  # a batch_jobs value starting with it holds the error of an item that could not be queued


class BatchItemView(BaseModel):
    """One file of a batch: its item (line in the file), variation, job and state."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.BATCH_ITEM]})

    item_id: str
    line: int
    index: int
    name: str
    variation: int
    seed: int
    file: str
    job_id: str | None = None
    state: ItemState
    error: JobError | None = None


class BatchView(BaseModel):
    """A batch as the API shows it; ``state`` is ``failed`` when it ended with any job failed."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.BATCH_VIEW]})

    id: str
    name: str
    source: str
    created_at: float
    state: BatchState
    total: int
    counts: dict[str, int]
    items: list[BatchItemView] = Field(default_factory=list)
    links: dict[str, str] = Field(default_factory=dict)


class BatchSummaryView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.BATCH_SUMMARY]})

    id: str
    name: str
    source: str
    created_at: float
    total: int
    links: dict[str, str] = Field(default_factory=dict)


# -- the batch record ------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Record:
    batch_id: str
    owner: str
    name: str
    source: str
    created_at: float
    cancelled: bool
    jobs: list[PlannedJob]
    job_ids: dict[str, str]


def _owner(who: Caller) -> str:
    return who.owner or "local"


def _load(service: JobService, batch_id: str, who: Caller) -> _Record:
    raw: dict[str, str] = service.redis.hgetall(keys.batch(batch_id))  # type: ignore[assignment]
    if not raw or (not who.admin and who.owner and raw.get("owner") != who.owner):
        raise NotFound(f"no batch '{batch_id}'", field="batch_id")
    job_ids: dict[str, str] = service.redis.hgetall(keys.batch_jobs(batch_id))  # type: ignore[assignment]
    return _Record(
        batch_id=batch_id,
        owner=raw["owner"],
        name=raw["name"],
        source=raw["source"],
        created_at=float(raw["created_at"]),
        cancelled=bool(raw.get("cancelled")),
        jobs=[PlannedJob(**j) for j in json.loads(raw["jobs"])],
        job_ids=job_ids,
    )


def _save(service: JobService, plan: BatchPlan, who: Caller) -> str:
    batch_id = uuid.uuid4().hex
    now = time.time()
    owner = _owner(who)
    pipe = service.redis.pipeline()
    pipe.hset(
        keys.batch(batch_id),
        mapping={
            "owner": owner,
            "name": plan.name,
            "source": plan.source,
            "created_at": now,
            "jobs": json.dumps([dataclasses.asdict(j) for j in plan.jobs], separators=(",", ":")),
        },
    )
    pipe.expire(keys.batch(batch_id), service.settings.job_retention_s)
    pipe.zadd(keys.owner_batches(owner), {batch_id: now})
    pipe.execute()
    return batch_id


def _advance(service: JobService, record: _Record, who: Caller) -> None:
    """Queue the batch's pending items, in file order, until the caller's job quota says stop."""
    if record.cancelled:
        return
    pending = [j for j in record.jobs if j.item_id not in record.job_ids]
    if not pending:
        return
    batch_jobs = keys.batch_jobs(record.batch_id)
    for job in pending:
        req = JobRequest.model_validate(job.request)
        try:
            view = service.submit(req, who, idempotency_key=idempotency_key(job))
            if view.state in ("failed", "cancelled"):  # an earlier run's attempt failed: try afresh
                view = service.submit(req, who)
        except RateLimited:
            break
        except SoundryError as e:  # e.g. an upload deleted since validation: the item fails
            logger.warning("batch %s item %s not queued: %s", record.batch_id, job.item_id, e.message)
            value = _FAILED_MARK + json.dumps(e.to_dict())
        else:
            value = view.id
        service.redis.hset(batch_jobs, job.item_id, value)
        service.redis.expire(batch_jobs, service.settings.job_retention_s)
        record.job_ids[job.item_id] = value


def _item_views(
    service: JobService, record: _Record, who: Caller
) -> list[tuple[PlannedJob, BatchItemView, JobView | None]]:
    out: list[tuple[PlannedJob, BatchItemView, JobView | None]] = []
    for job in record.jobs:
        job_id = record.job_ids.get(job.item_id)
        view: JobView | None = None
        state: ItemState = "cancelled" if record.cancelled else "pending"
        error: JobError | None = None
        if job_id is not None and job_id.startswith(_FAILED_MARK):
            state, error = "failed", JobError.model_validate_json(job_id[len(_FAILED_MARK) :])
            job_id = None
        elif job_id is not None:
            try:
                view = service.get(job_id, who)
                state, error = view.state, view.error
            except NotFound:
                state, error = "failed", JobError(code="not_found", message=f"job {job_id} no longer exists")
        item = BatchItemView(
            item_id=job.item_id,
            line=job.line,
            index=job.index,
            name=job.name,
            variation=job.variation,
            seed=job.seed,
            file=job.file,
            job_id=job_id,
            state=state,
            error=error,
        )
        out.append((job, item, view))
    return out


def _batch_view(record: _Record, items: list[BatchItemView], *, with_items: bool = True) -> BatchView:
    counts = dict.fromkeys(("pending", "queued", "running", "succeeded", "failed", "cancelled"), 0)
    for item in items:
        counts[item.state] += 1
    state: BatchState
    if counts["pending"] or counts["queued"] or counts["running"]:
        state = "running"
    elif counts["failed"]:
        state = "failed"
    elif counts["cancelled"]:
        state = "cancelled"
    else:
        state = "succeeded"
    base = f"/v1/batches/{record.batch_id}"
    return BatchView(
        id=record.batch_id,
        name=record.name,
        source=record.source,
        created_at=record.created_at,
        state=state,
        total=len(items),
        counts=counts,
        items=items if with_items else [],
        links={"self": base, "archive": f"{base}/archive"},
    )


def _invalid(errors: list[BatchError]) -> JSONResponse:
    exc = BatchInvalid(errors)
    return JSONResponse(
        {
            "error": {"code": exc.code, "message": exc.message, "field": exc.field},
            "errors": [e.to_dict() for e in exc.errors],
        },
        status_code=422,
    )


def _missing_uploads(service: JobService, plan: BatchPlan) -> list[BatchError]:
    errors: list[BatchError] = []
    for job in plan.jobs:
        if job.variation != 1:
            continue
        refs = [
            ("melody_upload", job.request.get("melody_upload")),
            ("continuation_upload", job.request.get("continuation_upload")),
            *(("reference_uploads", u) for u in job.request.get("reference_uploads") or []),
        ]
        for fld, upload in refs:
            if upload and not service.store.exists(upload_key(str(upload))):
                errors.append(BatchError(plan.source, job.line, None, fld, f"no upload '{upload}'"))
    return errors


# -- routes ----------------------------------------------------------------------------------------


@router.post(
    "",
    status_code=202,
    response_model=BatchView,
    summary="Submit a batch file (YAML, JSONL or CSV)",
    responses={422: {"description": "The file has errors: `errors` lists each with file, line, column"}},
)
def submit_batch(
    file: UploadFile,
    service: Service,
    who: Who,
    format: Annotated[
        Literal["yaml", "jsonl", "csv"] | None,
        Query(description="The file's format; from its name when omitted", examples=["yaml"]),
    ] = None,
) -> BatchView | JSONResponse:
    """Validate the whole file, then queue its jobs; returns the batch (poll it, then get its archive).

    Nothing is queued when the file has any error: the 422 answer carries the usual ``error`` plus
    ``errors``, a list of ``{file, line, column, field, message}``.
    """
    data = file.file.read(MAX_FILE_BYTES + 1)
    source = PurePosixPath((file.filename or "batch").replace("\\", "/")).name or "batch"
    fmt: BatchFormat | None = format
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput(f"batch file exceeds {MAX_FILE_BYTES // 2**20} MiB", field="file")
    try:
        plan = validate_batch_bytes(
            data,
            source,
            service.catalog,
            fmt=fmt,
            max_prompt_chars=service.settings.max_prompt_chars,
            max_text_chars=service.settings.max_text_chars,
        )
    except BatchInvalid as e:
        return _invalid(e.errors)
    missing = _missing_uploads(service, plan)
    if missing:
        return _invalid(missing)
    batch_id = _save(service, plan, who)
    record = _load(service, batch_id, who)
    _advance(service, record, who)
    return _batch_view(record, [item for _, item, _ in _item_views(service, record, who)])


@router.get("", response_model=list[BatchSummaryView], summary="The caller's batches, newest first")
def list_batches(
    service: Service,
    who: Who,
    limit: Annotated[int, Query(ge=1, le=200, examples=[20])] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000, examples=[0])] = 0,
) -> list[BatchSummaryView]:
    index = keys.owner_batches(_owner(who))
    out: list[BatchSummaryView] = []
    for raw in service.redis.zrevrange(index, offset, offset + limit - 1):
        batch_id = str(raw)
        try:
            record = _load(service, batch_id, who)
        except NotFound:
            service.redis.zrem(index, batch_id)
            continue
        out.append(
            BatchSummaryView(
                id=record.batch_id,
                name=record.name,
                source=record.source,
                created_at=record.created_at,
                total=len(record.jobs),
                links={"self": f"/v1/batches/{record.batch_id}"},
            )
        )
    return out


@router.get("/{batch_id}", response_model=BatchView, summary="A batch's state: counts and every item")
def get_batch(batch_id: BatchId, service: Service, who: Who) -> BatchView:
    record = _load(service, batch_id, who)
    _advance(service, record, who)
    return _batch_view(record, [item for _, item, _ in _item_views(service, record, who)])


@router.delete("/{batch_id}", response_model=BatchView, summary="Cancel a batch's unfinished jobs")
def cancel_batch(batch_id: BatchId, service: Service, who: Who) -> BatchView:
    record = _load(service, batch_id, who)
    service.redis.hset(keys.batch(batch_id), "cancelled", "1")
    record.cancelled = True
    for job_id in record.job_ids.values():
        if job_id.startswith(_FAILED_MARK):
            continue
        try:
            if service.get(job_id, who).state not in TERMINAL:
                service.cancel(job_id, who)
        except (NotFound, Conflict):
            continue
    return _batch_view(record, [item for _, item, _ in _item_views(service, record, who)])


@router.get(
    "/{batch_id}/archive",
    summary="A zip of the batch's finished files with manifest.jsonl and summary.json",
    response_class=StreamingResponse,
    responses={200: {"content": examples.binary("application/zip")}},
)
def batch_archive(batch_id: BatchId, service: Service, who: Who) -> StreamingResponse:
    """Every finished file under ``<batch name>/`` in the zip, named by the file's output template.

    Files of jobs still running are left out (``summary.json`` says which); 409 while none is done.
    """
    record = _load(service, batch_id, who)
    _advance(service, record, who)
    views = _item_views(service, record, who)
    done = [(job, view) for job, item, view in views if view is not None and item.state == "succeeded"]
    if not done:
        raise Conflict(f"batch '{batch_id}' has no finished files yet", field="batch_id")
    summary = _batch_view(record, [item for _, item, _ in views]).model_dump(mode="json")
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 (closed by the stream)
    try:
        _write_zip(spool, record, done, summary, service)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    filename = f"{record.name}.zip"
    return StreamingResponse(
        _chunks(spool),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _write_zip(
    spool: IO[bytes],
    record: _Record,
    done: list[tuple[PlannedJob, JobView]],
    summary: dict[str, Any],
    service: JobService,
) -> None:
    root = record.name
    entries: list[dict[str, Any]] = []
    with zipfile.ZipFile(spool, "w") as zf:
        for job, view in done:
            if view.result is None:
                continue
            data = service.store.get(view.result.artifact)
            zf.writestr(f"{root}/{job.file}", data, compress_type=zipfile.ZIP_STORED)
            entries.append(manifest_entry(job, view.public()))
        zf.writestr(f"{root}/{MANIFEST_NAME}", "".join(manifest_lines(entries)), zipfile.ZIP_DEFLATED)
        zf.writestr(f"{root}/{SUMMARY_NAME}", json.dumps(summary, indent=2) + "\n", zipfile.ZIP_DEFLATED)


def _chunks(fh: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    try:
        while chunk := fh.read(size):
            yield chunk
    finally:
        fh.close()


__all__ = ["BatchItemView", "BatchView", "router"]
