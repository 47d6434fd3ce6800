"""The job service: submit, look up, list, cancel and fetch audio. Routers stay thin over it."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from gen_server.audio.encode import MEDIA_TYPES, EncodeFormat, decode, encode
from gen_server.contract.catalog import Catalog
from gen_server.contract.result import JobError, JobResult, JobState, JobView
from gen_server.contract.spec import JobRequest, JobSpec, build_spec
from gen_server.errors import Conflict, NotFound
from gen_server.queue import JobQueue
from gen_server.records import keys
from gen_server.settings import Settings
from gen_server.storage import ArtifactStore, audio_key
from gen_server.webhooks import check_url

_CELERY_STATES: dict[str, JobState] = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "STARTED": "running",
    "PROGRESS": "running",
    "RETRY": "running",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
}
TERMINAL: frozenset[JobState] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: ``owner`` scopes jobs (``None`` on a keyless local server); admins see all."""

    owner: str | None = None
    admin: bool = False
    max_concurrent_jobs: int | None = None


class JobService:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        redis_client: redis.Redis,
        queue: JobQueue,
        store: ArtifactStore,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.redis = redis_client
        self.queue = queue
        self.store = store

    def submit(self, req: JobRequest, caller: Caller, *, idempotency_key: str | None = None) -> JobView:
        """Validate ``req``, record the job, queue it; a repeated idempotency key returns the first job."""
        owner = caller.owner or "local"
        if idempotency_key:
            existing = self.redis.get(keys.idempotency(owner, idempotency_key))
            if existing:
                return self.get(str(existing), caller)
        if caller.max_concurrent_jobs is not None:
            self.check_quota(owner, caller)
        job_id = uuid.uuid4().hex
        spec = build_spec(
            req,
            self.catalog,
            job_id=job_id,
            owner=caller.owner,
            max_prompt_chars=self.settings.max_prompt_chars,
            max_text_chars=self.settings.max_text_chars,
        )
        if spec.callback_url:
            check_url(spec.callback_url, allow_private=self.settings.allow_private_webhooks)
        for upload in (spec.melody_upload, spec.continuation_upload, *spec.reference_uploads):
            if upload is not None and not self.store.exists(f"uploads/{upload}"):
                raise NotFound(f"no upload '{upload}'")
        if idempotency_key and not self.redis.set(
            keys.idempotency(owner, idempotency_key), job_id, nx=True, ex=24 * 3600
        ):
            first = self.redis.get(keys.idempotency(owner, idempotency_key))
            return self.get(str(first or job_id), caller)
        pipe = self.redis.pipeline()
        self.record(pipe, spec, owner)
        pipe.execute()
        self.queue.send(spec)
        return self.get(job_id, caller)

    def record(self, pipe: redis.client.Pipeline, spec: JobSpec, owner: str, **extra: str) -> None:
        """Add the writes that record ``spec`` as ``owner``'s job (with ``extra`` fields) to ``pipe``."""
        now = time.time()
        fields: dict[FieldT, EncodableT] = {"spec": spec.model_dump_json(), "owner": owner, "created_at": now}
        fields.update(extra)
        pipe.hset(keys.job(spec.job_id), mapping=fields)
        pipe.expire(keys.job(spec.job_id), self.settings.job_retention_s)
        pipe.zadd(keys.ALL_JOBS, {spec.job_id: now})
        pipe.zadd(keys.owner_jobs(owner), {spec.job_id: now})
        pipe.sadd(keys.active_jobs(owner), spec.job_id)

    def check_quota(self, owner: str, caller: Caller, needed: int = 1) -> None:
        """429 when ``needed`` more jobs would pass the caller's ``max_concurrent_jobs``.

        Jobs that finished since they were counted are pruned from the count first.
        """
        active_key = keys.active_jobs(owner)
        for raw in self.redis.smembers(active_key):
            job_id = str(raw)
            try:
                if self.get(job_id, caller).state in TERMINAL:
                    self.redis.srem(active_key, job_id)
            except NotFound:
                self.redis.srem(active_key, job_id)
        limit = caller.max_concurrent_jobs or 0
        in_use = int(self.redis.scard(active_key))
        if in_use + needed > limit:
            from gen_server.auth import RateLimited

            raise RateLimited(
                f"{in_use} of this key's {limit} concurrent jobs are queued or running; this needs {needed}",
                retry_after_s=5,
            )

    def _record(self, job_id: str, caller: Caller) -> dict[str, str]:
        record: dict[str, str] = self.redis.hgetall(keys.job(job_id))  # type: ignore[assignment]
        if not record or (not caller.admin and caller.owner and record.get("owner") != caller.owner):
            raise NotFound(f"no job '{job_id}'", field="job_id")
        return record

    def get(self, job_id: str, caller: Caller) -> JobView:
        record = self._record(job_id, caller)
        spec = JobSpec.model_validate_json(record["spec"])
        async_result = self.queue.result(job_id)
        state: JobState = _CELERY_STATES.get(async_result.state, "queued")
        progress = 0.0
        result: JobResult | None = None
        error: JobError | None = None
        info: Any = async_result.info
        if state == "running" and isinstance(info, dict):
            progress = float(info.get("progress", 0.0))
        if state == "succeeded" and isinstance(info, dict):
            result = JobResult.model_validate(info)
            progress = 1.0
        if "error" in record:
            error = JobError.model_validate_json(record["error"])
            state = "cancelled" if error.code == "cancelled" else "failed"
        elif state == "failed":
            error = JobError(code="generation_failed", message=str(info))
        if record.get("cancelled") and state not in ("succeeded", "failed"):
            state = "cancelled"
        position = self.queue.position(self.redis, job_id, spec.queue) if state == "queued" else None
        links = {"self": f"/v1/jobs/{job_id}"}
        if result is not None:
            links["audio"] = f"/v1/jobs/{job_id}/audio"
        finished = record.get("finished_at")
        if finished is None and state in TERMINAL:  # it ended between reading the record and the result
            finished = str(self.redis.hget(keys.job(job_id), "finished_at") or "") or None
        return JobView(
            id=job_id,
            state=state,
            kind=spec.kind,
            model=spec.model,
            progress=min(max(progress, 0.0), 1.0),
            queue_position=position,
            created_at=float(record["created_at"]),
            finished_at=float(finished) if finished else None,
            worker=record.get("worker"),
            attempts=int(self.redis.get(keys.attempts(job_id)) or 0),
            webhook_attempts=[
                json.loads(a) for a in self.redis.lrange(keys.webhook_attempts(job_id), -50, -1)
            ]
            if spec.callback_url
            else [],
            spec=spec,
            result=result,
            error=error,
            links=links,
        )

    def list(
        self,
        caller: Caller,
        *,
        state: JobState | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobView]:
        """Newest first, filtered; the caller's own jobs unless admin."""
        index = keys.ALL_JOBS if caller.admin else keys.owner_jobs(caller.owner or "local")
        views: list[JobView] = []
        skipped = 0
        cursor = 0
        while len(views) < limit:
            ids: list[str] = self.redis.zrevrange(index, cursor, cursor + 99)  # type: ignore[assignment]
            if not ids:
                break
            cursor += len(ids)
            for raw in ids:
                try:
                    view = self.get(str(raw), caller)
                except NotFound:
                    self.redis.zrem(index, raw)
                    continue
                if (state and view.state != state) or (kind and view.kind != kind):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                views.append(view)
                if len(views) >= limit:
                    break
        return views

    def cancel(self, job_id: str, caller: Caller) -> JobView:
        """Revoke a queued job or stop a running one at its next generation step."""
        view = self.get(job_id, caller)
        if view.state in TERMINAL:
            if view.state == "cancelled":
                return view
            raise Conflict(f"job '{job_id}' already {view.state}", field="job_id")
        self.redis.set(keys.cancel(job_id), "1", ex=self.settings.job_retention_s)
        self.redis.hset(keys.job(job_id), "cancelled", "1")
        self.queue.revoke(job_id)
        return self.get(job_id, caller)

    def audio(self, job_id: str, caller: Caller, fmt: EncodeFormat | None = None) -> tuple[bytes, str, str]:
        """The job's audio as (bytes, media type, format); transcoded when ``fmt`` differs.

        ``fmt`` may also be a headerless raw format (``pcm``, ``ulaw``, ``alaw``) at the job's own rate.
        """
        view = self.get(job_id, caller)
        if view.result is None:
            raise Conflict(f"job '{job_id}' is {view.state}; audio exists once it succeeded", field="job_id")
        data = self.store.get(view.result.artifact)
        out = fmt or view.result.format
        if out != view.result.format:
            from gen_server.audio.encode import read_tags

            tags = read_tags(data, view.result.format)
            data = encode(decode(data), out, tags=tags)
        return data, MEDIA_TYPES[out], out

    def wait(self, job_id: str, caller: Caller, timeout_s: float = 60.0, poll_s: float = 0.1) -> JobView:
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.get(job_id, caller)
            if view.state in TERMINAL or time.monotonic() > deadline:
                return view
            time.sleep(poll_s)


def error_json(code: str, message: str, field: str | None = None) -> str:
    return json.dumps({"code": code, "message": message, "field": field})


__all__ = ["TERMINAL", "Caller", "JobService", "audio_key", "error_json"]
