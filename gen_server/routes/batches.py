"""/v1/batches: submit a batch file, follow it, download its files as one zip.

The whole file is validated before anything is queued (422 with every error, by line). Items are
queued through the job service with the same idempotency keys as ``soundry batch``, so a file sent
twice (or run from the CLI by the same caller) re-attaches to its existing jobs. A caller with a
concurrent-job quota gets as many items queued as the quota allows; the rest wait in the batch
(state ``pending``) and are queued as earlier ones finish, each time the batch is read.
The batch logic is :class:`gen_server.batch.service.BatchService`; these routes shape its answers.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse

from gen_server.batch.errors import BatchError, BatchInvalid
from gen_server.batch.parse import MAX_FILE_BYTES, BatchFormat
from gen_server.batch.service import BatchRecord, BatchService, ItemStatus
from gen_server.contract import examples
from gen_server.contract.batch import BatchItemView, BatchState, BatchSummaryView, BatchView
from gen_server.deps import caller, jobs_of
from gen_server.errors import InvalidInput
from gen_server.files import iter_chunks
from gen_server.jobs import Caller


async def batch_service(request: Request) -> BatchService:
    return BatchService(jobs_of(request))


router = APIRouter(prefix="/v1/batches", tags=["batches"])

Service = Annotated[BatchService, Depends(batch_service)]
Who = Annotated[Caller, Depends(caller)]
BatchId = Annotated[str, Path(description="The batch's id", examples=[examples.BATCH_ID])]

# -- answers ---------------------------------------------------------------------------------------


def _item_view(status: ItemStatus) -> BatchItemView:
    job = status.job
    return BatchItemView(
        item_id=job.item_id,
        line=job.line,
        index=job.index,
        name=job.name,
        variation=job.variation,
        seed=job.seed,
        file=job.file,
        job_id=status.job_id,
        state=status.state,
        error=status.error,
    )


def _view(service: BatchService, record: BatchRecord, who: Caller) -> BatchView:
    return _batch_view(record, [_item_view(s) for s in service.items(record, who)])


def _batch_view(record: BatchRecord, items: list[BatchItemView], *, with_items: bool = True) -> BatchView:
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
        plan = service.validate(data, source, fmt)
    except BatchInvalid as e:
        return _invalid(e.errors)
    return _view(service, service.submit(plan, who), who)


@router.get("", response_model=list[BatchSummaryView], summary="The caller's batches, newest first")
def list_batches(
    service: Service,
    who: Who,
    limit: Annotated[int, Query(ge=1, le=200, examples=[20])] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000, examples=[0])] = 0,
) -> list[BatchSummaryView]:
    return [
        BatchSummaryView(
            id=record.batch_id,
            name=record.name,
            source=record.source,
            created_at=record.created_at,
            total=len(record.jobs),
            links={"self": f"/v1/batches/{record.batch_id}"},
        )
        for record in service.list(who, limit=limit, offset=offset)
    ]


@router.get("/{batch_id}", response_model=BatchView, summary="A batch's state: counts and every item")
def get_batch(batch_id: BatchId, service: Service, who: Who) -> BatchView:
    return _view(service, service.get(batch_id, who), who)


@router.delete("/{batch_id}", response_model=BatchView, summary="Cancel a batch's unfinished jobs")
def cancel_batch(batch_id: BatchId, service: Service, who: Who) -> BatchView:
    return _view(service, service.cancel(batch_id, who), who)


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
    record = service.get(batch_id, who)
    items = service.items(record, who)
    summary = _batch_view(record, [_item_view(s) for s in items]).model_dump(mode="json")
    spool = service.archive(record, items, summary)
    filename = f"{record.name}.zip"
    return StreamingResponse(
        iter_chunks(spool),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


__all__ = ["BatchItemView", "BatchView", "batch_service", "router"]
