"""The batch service: validate a batch file, record the batch, queue its items, report on it, zip it.

The whole file is validated before anything is queued. Items are queued through the job service with
the same idempotency keys as ``soundry batch``, so a file sent twice (or run from the CLI by the same
caller) re-attaches to its existing jobs. A caller with a concurrent-job quota gets as many items
queued as the quota allows; the rest wait in the batch (state ``pending``) and are queued as earlier
ones finish, each time the batch is read (:meth:`BatchService.advance`).

A batch is two Redis hashes: :func:`keys.batch` (owner, name, source, created_at, the planned jobs as
JSON, ``cancelled`` once cancelled) and :func:`keys.batch_jobs` (item id -> job id, or the error of an
item that could not be queued), and its id in the owner's :func:`keys.owner_batches`.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import tempfile
import time
import uuid
import zipfile
from typing import IO, Any

from gen_server.batch.errors import BatchError, BatchInvalid
from gen_server.batch.manifest import manifest_entry, manifest_lines
from gen_server.batch.parse import BatchFormat
from gen_server.batch.plan import BatchPlan, PlannedJob, idempotency_key, validate_batch_bytes
from gen_server.batch.template import MANIFEST_NAME, SUMMARY_NAME
from gen_server.captions import render
from gen_server.contract.batch import ItemState
from gen_server.contract.result import JobError, JobView
from gen_server.contract.spec import JobRequest
from gen_server.errors import Conflict, NotFound, RateLimited, SoundryError
from gen_server.jobs import TERMINAL, Caller, JobService
from gen_server.records import keys
from gen_server.storage import upload_key

logger = logging.getLogger(__name__)

_SPOOL_BYTES = 64 * 1024 * 1024
_FAILED_MARK = "!"  # a batch_jobs value starting with it holds the error of an item that could not be queued


@dataclasses.dataclass(slots=True)
class BatchRecord:
    """A batch as stored: its planned jobs and the job id (or error) of each item queued so far."""

    batch_id: str
    owner: str
    name: str
    source: str
    created_at: float
    cancelled: bool
    jobs: list[PlannedJob]
    job_ids: dict[str, str]


@dataclasses.dataclass(slots=True)
class ItemStatus:
    """Where one planned job of a batch stands: its job id, state, error and job view (once queued)."""

    job: PlannedJob
    job_id: str | None
    state: ItemState
    error: JobError | None
    view: JobView | None


def _owner(caller: Caller) -> str:
    return caller.owner or "local"


class BatchService:
    """Batches on top of the job service (same Redis, storage, catalog and settings)."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs

    # ------------------------------------------------------------------------------------- submit

    def validate(self, data: bytes, source: str, fmt: BatchFormat | None = None) -> BatchPlan:
        """Plan the batch file ``data`` against the catalog; every upload it names must exist.

        Raises:
            BatchInvalid: with every error found (parse, items, then missing uploads).
        """
        settings = self.jobs.settings
        plan = validate_batch_bytes(
            data,
            source,
            self.jobs.catalog,
            fmt=fmt,
            max_prompt_chars=settings.max_prompt_chars,
            max_text_chars=settings.max_text_chars,
        )
        missing = self._missing_uploads(plan)
        if missing:
            raise BatchInvalid(missing)
        return plan

    def _missing_uploads(self, plan: BatchPlan) -> list[BatchError]:
        errors: list[BatchError] = []
        for job in plan.jobs:
            if job.variation != 1:
                continue
            refs = [
                ("melody_upload", job.request.get("melody_upload")),
                ("continuation_upload", job.request.get("continuation_upload")),
                ("init_audio_upload", job.request.get("init_audio_upload")),
                *(("reference_uploads", u) for u in job.request.get("reference_uploads") or []),
            ]
            for fld, upload in refs:
                if upload and not self.jobs.store.exists(upload_key(str(upload))):
                    errors.append(BatchError(plan.source, job.line, None, fld, f"no upload '{upload}'"))
        return errors

    def submit(self, plan: BatchPlan, caller: Caller) -> BatchRecord:
        """Record the batch of a validated ``plan`` and queue as many of its items as the quota allows."""
        batch_id = self._save(plan, caller)
        record = self.load(batch_id, caller)
        self.advance(record, caller)
        return record

    def _save(self, plan: BatchPlan, caller: Caller) -> str:
        batch_id = uuid.uuid4().hex
        now = time.time()
        owner = _owner(caller)
        pipe = self.jobs.redis.pipeline()
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
        pipe.expire(keys.batch(batch_id), self.jobs.settings.job_retention_s)
        pipe.zadd(keys.owner_batches(owner), {batch_id: now})
        pipe.execute()
        return batch_id

    def advance(self, record: BatchRecord, caller: Caller) -> None:
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
                view = self.jobs.submit(req, caller, idempotency_key=idempotency_key(job), lane="batch")
                if view.state in ("failed", "cancelled"):  # an earlier run's attempt failed: try afresh
                    view = self.jobs.submit(req, caller, lane="batch")
            except RateLimited:
                break
            except SoundryError as e:  # e.g. an upload deleted since validation: the item fails
                logger.warning("batch %s item %s not queued: %s", record.batch_id, job.item_id, e.message)
                value = _FAILED_MARK + json.dumps(e.to_dict())
            else:
                value = view.id
            self.jobs.redis.hset(batch_jobs, job.item_id, value)
            self.jobs.redis.expire(batch_jobs, self.jobs.settings.job_retention_s)
            record.job_ids[job.item_id] = value

    # ---------------------------------------------------------------------------------------- read

    def load(self, batch_id: str, caller: Caller) -> BatchRecord:
        """The stored batch.

        Raises:
            NotFound: no such batch, or another key's.
        """
        redis = self.jobs.redis
        raw: dict[str, str] = redis.hgetall(keys.batch(batch_id))  # type: ignore[assignment]
        if not raw or (not caller.admin and caller.owner and raw.get("owner") != caller.owner):
            raise NotFound(f"no batch '{batch_id}'", field="batch_id")
        job_ids: dict[str, str] = redis.hgetall(keys.batch_jobs(batch_id))  # type: ignore[assignment]
        return BatchRecord(
            batch_id=batch_id,
            owner=raw["owner"],
            name=raw["name"],
            source=raw["source"],
            created_at=float(raw["created_at"]),
            cancelled=bool(raw.get("cancelled")),
            jobs=[PlannedJob(**j) for j in json.loads(raw["jobs"])],
            job_ids=job_ids,
        )

    def get(self, batch_id: str, caller: Caller) -> BatchRecord:
        """The stored batch, its pending items queued first as far as the quota allows."""
        record = self.load(batch_id, caller)
        self.advance(record, caller)
        return record

    def list(self, caller: Caller, *, limit: int, offset: int) -> list[BatchRecord]:
        """The caller's batches, newest first; ids of expired batches are dropped from the index."""
        index = keys.owner_batches(_owner(caller))
        out: list[BatchRecord] = []
        for raw in self.jobs.redis.zrevrange(index, offset, offset + limit - 1):
            batch_id = str(raw)
            try:
                out.append(self.load(batch_id, caller))
            except NotFound:
                self.jobs.redis.zrem(index, batch_id)
        return out

    def items(self, record: BatchRecord, caller: Caller) -> builtins.list[ItemStatus]:
        """Every planned job of the batch with the state of its job (``pending`` until queued)."""
        out: list[ItemStatus] = []
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
                    view = self.jobs.get(job_id, caller)
                    state, error = view.state, view.error
                except NotFound:
                    state = "failed"
                    error = JobError(code="not_found", message=f"job {job_id} no longer exists")
            out.append(ItemStatus(job=job, job_id=job_id, state=state, error=error, view=view))
        return out

    # -------------------------------------------------------------------------------------- cancel

    def cancel(self, batch_id: str, caller: Caller) -> BatchRecord:
        """Mark the batch cancelled (nothing more is queued) and cancel its unfinished jobs."""
        record = self.load(batch_id, caller)
        self.jobs.redis.hset(keys.batch(batch_id), "cancelled", "1")
        record.cancelled = True
        for job_id in record.job_ids.values():
            if job_id.startswith(_FAILED_MARK):
                continue
            try:
                if self.jobs.get(job_id, caller).state not in TERMINAL:
                    self.jobs.cancel(job_id, caller)
            except (NotFound, Conflict):
                continue
        return record

    # ------------------------------------------------------------------------------------- archive

    def archive(
        self, record: BatchRecord, items: builtins.list[ItemStatus], summary: dict[str, Any]
    ) -> IO[bytes]:
        """A zip of the batch's finished files under ``<batch name>/``, with the manifest and ``summary``.

        Returns:
            The zip, rewound (spooled to disk past 64 MiB); the caller closes it.

        Raises:
            Conflict: no item has finished yet.
        """
        done = [(s.job, s.view) for s in items if s.view is not None and s.state == "succeeded"]
        if not done:
            raise Conflict(f"batch '{record.batch_id}' has no finished files yet", field="batch_id")
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 (the caller closes it)
        try:
            self._write_zip(spool, record, done, summary)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool

    def _write_zip(
        self,
        spool: IO[bytes],
        record: BatchRecord,
        done: builtins.list[tuple[PlannedJob, JobView]],
        summary: dict[str, Any],
    ) -> None:
        root = record.name
        entries: list[dict[str, Any]] = []
        with zipfile.ZipFile(spool, "w") as zf:
            for job, view in done:
                if view.result is None:
                    continue
                data = self.jobs.store.get(view.result.artifact)
                zf.writestr(f"{root}/{job.file}", data, compress_type=zipfile.ZIP_STORED)
                if job.captions_file is not None and view.result.words is not None:
                    text = render(view.result.words, "vtt" if job.captions == "vtt" else "srt")
                    zf.writestr(f"{root}/{job.captions_file}", text, compress_type=zipfile.ZIP_DEFLATED)
                entries.append(manifest_entry(job, view))
            zf.writestr(f"{root}/{MANIFEST_NAME}", "".join(manifest_lines(entries)), zipfile.ZIP_DEFLATED)
            zf.writestr(f"{root}/{SUMMARY_NAME}", json.dumps(summary, indent=2) + "\n", zipfile.ZIP_DEFLATED)
