"""The job service: submit, look up, list, cancel and fetch audio. Routers stay thin over it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import weakref
from collections.abc import Generator
from dataclasses import dataclass

import redis
from redis.asyncio import Redis as AsyncRedis

from gen_server.audio.encode import MEDIA_TYPES, EncodeFormat, decode, encode
from gen_server.captions import CaptionFormat, render
from gen_server.celery_config import LANE_PRIORITY, Lane
from gen_server.content_credentials import (
    Signing,
    SigningError,
    can_sign,
    generation_of_file,
    resolve_identity,
    sign_transcoded,
)
from gen_server.contract.catalog import Catalog
from gen_server.contract.result import JobResult, JobState, JobView
from gen_server.contract.spec import JobRequest, JobSpec, build_spec
from gen_server.errors import (
    Conflict,
    GenerationFailed,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    RateLimited,
)
from gen_server.lexicon import LexiconStore
from gen_server.queue import JobQueue
from gen_server.records import keys
from gen_server.records.jobs import TERMINAL, JobRead, JobRecord, JobRecords
from gen_server.records.speed import eta_s
from gen_server.settings import Settings
from gen_server.storage import ArtifactStore, audio_key, transcoded_key
from gen_server.webhooks import check_url

logger = logging.getLogger(__name__)

_ENDED: frozenset[JobState | None] = frozenset({*TERMINAL, None})
"""Final states, and ``None``: an expired record."""


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
        async_redis_url: str | None = None,
    ) -> None:
        """``async_redis_url``: the same Redis for an asyncio client, for the event loop's hot reads
        (:meth:`aget`); without it they run the sync read."""
        self.settings = settings
        self.catalog = catalog
        self.redis = redis_client
        self._async_url = async_redis_url
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRedis] = (
            weakref.WeakKeyDictionary()
        )
        self.queue = queue
        self.store = store
        self.records = JobRecords(redis_client, settings.job_retention_s)

    def submit(
        self,
        req: JobRequest,
        caller: Caller,
        *,
        idempotency_key: str | None = None,
        lane: Lane = "interactive",
    ) -> JobView:
        """Validate ``req``, record the job, queue it; a repeated idempotency key returns the first job.

        ``lane``: ``batch`` jobs wait behind interactive ones in the same queue (a lower priority step).
        """
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
        if spec.kind == "speech":
            entry = self.catalog.get(spec.model)
            language = spec.language or (entry.languages[0] if entry.languages else "en")
            used = LexiconStore(self.redis).for_text(caller.owner, language, spec.prompt)
            if used:
                spec = spec.model_copy(update={"lexicon": used})
        if spec.reference_uploads or spec.voice_id:
            spec = self.cloned(spec, caller, language_given=req.language is not None)
        if spec.callback_url:
            check_url(spec.callback_url, allow_private=self.settings.allow_private_webhooks)
        for upload in (
            spec.melody_upload,
            spec.continuation_upload,
            spec.init_audio_upload,
            *spec.reference_uploads,
        ):
            if upload is not None and not self.store.exists(f"uploads/{upload}"):
                raise NotFound(f"no upload '{upload}'")
        if idempotency_key and not self.redis.set(
            keys.idempotency(owner, idempotency_key), job_id, nx=True, ex=24 * 3600
        ):
            first = self.redis.get(keys.idempotency(owner, idempotency_key))
            return self.get(str(first or job_id), caller)
        pipe = self.redis.pipeline()
        self.records.create(pipe, spec, owner, priority=LANE_PRIORITY[lane])
        self.records.add_read(pipe, job_id, with_schedule=True)  # the answer, in the same round trip
        read = self.records.parse_read(job_id, pipe.execute(), with_schedule=True)
        self.queue.send(spec, priority=LANE_PRIORITY[lane])
        return self._shown(read, job_id, caller)

    def cloned(self, spec: JobSpec, caller: Caller, *, language_given: bool = True) -> JobSpec:
        """``spec`` under the cloning policy (``SOUNDRY_CLONING``), with its library voice resolved.

        ``verified`` (default): raw ``reference_uploads`` are refused; a ``voice_id`` must be an active
        voice the caller may see (its consent hash goes into the spec, so into the manifest and tags).
        ``open``: raw uploads are cloned as given. ``off``: no cloning. A job that named no language
        speaks the voice's own (when the model offers it).

        Raises:
            InvalidInput: refused by the policy (field ``reference_uploads`` or ``voice_id``).
            NotFound: no such voice for ``caller``.
            Conflict: the voice is not usable yet (pending approval).
        """
        from gen_server.records.voices import VoiceRecords
        from gen_server.voices.service import usable_voice

        policy = self.settings.cloning
        if spec.reference_uploads and policy != "open":
            raise InvalidInput(
                f"cloning from raw reference_uploads is off on this server (SOUNDRY_CLONING={policy})"
                + (
                    ": create a voice with its speaker's consent at POST /v1/voices and send its voice_id"
                    if policy == "verified"
                    else ""
                ),
                field="reference_uploads",
            )
        if spec.voice_id is None:
            return spec
        if policy == "off":
            raise InvalidInput("voice cloning is off on this server (SOUNDRY_CLONING=off)", field="voice_id")
        voice = usable_voice(VoiceRecords(self.redis), spec.voice_id, caller)
        update: dict[str, str] = {"voice_consent_sha256": voice.consent_sha256}
        offered = self.catalog.get(spec.model).languages
        if not language_given and voice.language in offered:
            update["language"] = voice.language
        return spec.model_copy(update=update)

    def check_quota(self, owner: str, caller: Caller, needed: int = 1) -> None:
        """429 when ``needed`` more jobs would pass the caller's ``max_concurrent_jobs``.

        Jobs that finished since they were counted are pruned from the count first.
        """
        active_key = keys.active_jobs(owner)
        active = [str(raw) for raw in self.redis.smembers(active_key)]
        ended = [j for j, state in zip(active, self.records.states(active), strict=True) if state in _ENDED]
        if ended:
            self.redis.srem(active_key, *ended)
        limit = caller.max_concurrent_jobs or 0
        in_use = len(active) - len(ended)
        if in_use + needed > limit:
            raise RateLimited(
                f"{in_use} of this key's {limit} concurrent jobs are queued or running; this needs {needed}",
                retry_after_s=5,
            )

    def _owned(self, record: JobRecord | None, job_id: str, caller: Caller) -> JobRecord:
        if record is None or (not caller.admin and caller.owner and record.owner != caller.owner):
            raise NotFound(f"no job '{job_id}'", field="job_id")
        return record

    def get(self, job_id: str, caller: Caller) -> JobView:
        """The job as the API shows it, its queue position included while queued: one Redis round trip.

        Raises:
            NotFound: No such job for ``caller``.
        """
        return self._shown(self.records.read(job_id, with_schedule=True), job_id, caller)

    async def aget(self, job_id: str, caller: Caller) -> JobView:
        """:meth:`get` on the event loop (no threadpool hop) when the service has an asyncio client."""
        client = self._async_client()
        if client is None:
            return self.get(job_id, caller)
        read = await self.records.aread(client, job_id, with_schedule=True)
        return self._shown(read, job_id, caller)

    async def count_request(self, counter: str, *, expire_s: int) -> int:
        """Add one to a rate-limit ``counter`` (expiring after ``expire_s``); its new value."""
        client = self._async_client()
        if client is None:
            pipe = self.redis.pipeline()
            pipe.incr(counter)
            pipe.expire(counter, expire_s)
            return int(pipe.execute()[0])
        apipe = client.pipeline()
        apipe.incr(counter)
        apipe.expire(counter, expire_s)
        return int((await apipe.execute())[0])

    def _async_client(self) -> AsyncRedis | None:
        """The asyncio client of the running event loop (its connections belong to that loop: a
        server has one; test clients may start several)."""
        if self._async_url is None:
            return None
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = self._async[loop] = AsyncRedis.from_url(self._async_url, decode_responses=True)
        return client

    def _shown(self, read: JobRead, job_id: str, caller: Caller) -> JobView:
        record = self._owned(read.record, job_id, caller)
        eta = eta_s(
            record.spec,
            record.state,
            progress=record.progress,
            started_at=record.started_at,
            position=read.position,
            speed=read.speed,
            workers=read.workers,
        )
        return self._view(record, read.position, read.webhook_attempts, eta)

    @staticmethod
    def _view(
        record: JobRecord,
        position: int | None = None,
        webhook_attempts: list[str] | None = None,
        eta: float | None = None,
    ) -> JobView:
        job_id = record.job_id
        links = {"self": f"/v1/jobs/{job_id}"}
        if record.result is not None:
            links["audio"] = f"/v1/jobs/{job_id}/audio"
        return JobView(
            id=job_id,
            state=record.state,
            kind=record.spec.kind,
            model=record.spec.model,
            progress=min(max(record.progress, 0.0), 1.0),
            queue_position=position,
            eta_s=eta,
            created_at=record.created_at,
            finished_at=record.finished_at,
            worker=record.worker,
            attempts=record.attempts,
            webhook_attempts=[json.loads(a) for a in webhook_attempts or []]
            if record.spec.callback_url
            else [],
            spec=record.spec,
            result=record.result,
            error=record.error,
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
            for job_id, record in zip(ids, self.records.read_many([str(i) for i in ids]), strict=True):
                if record is None:
                    self.redis.zrem(index, job_id)
                    continue
                if (state and record.state != state) or (kind and record.spec.kind != kind):
                    continue
                view = self._view(record)
                if skipped < offset:
                    skipped += 1
                    continue
                views.append(view)
                if len(views) >= limit:
                    break
        return views

    def cancel(self, job_id: str, caller: Caller) -> JobView:
        """Cancel a queued or running job at once (a running one stops at its next generation step).

        Raises:
            NotFound: No such job for ``caller``.
            Conflict: The job already succeeded or failed.
        """
        self._owned(self.records.read_many([job_id])[0], job_id, caller)
        state = self.records.cancel(job_id)
        if state in ("succeeded", "failed"):
            raise Conflict(f"job '{job_id}' already {state}", field="job_id")
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
            data = self._transcoded(view, view.result, data, out)
        return data, MEDIA_TYPES[out], out

    def _transcoded(self, view: JobView, result: JobResult, original: bytes, out: EncodeFormat) -> bytes:
        """``original`` in ``out``; signed anew with C2PA (the original as its parent) where ``out`` can
        carry it, and kept in the store so that every download of it is the same file."""
        from gen_server.audio.encode import read_tags

        signed = can_sign(out)
        key = transcoded_key(view.id, out)
        if signed:
            with contextlib.suppress(NotFound):
                return self.store.get(key)
        data = encode(decode(original), out, tags=read_tags(original, result.format))
        if not signed:
            return data
        source = result.format
        identity = resolve_identity(self.settings)
        generation = generation_of_file(original, source)
        if generation is None and view.model in self.catalog and result.watermark_payload:
            # e.g. an ogg original, which has no manifest of its own: the assertion the worker would write
            entry = self.catalog.get(view.model)
            signing = Signing(identity, entry.licence_terms, entry.commercial_use)
            generation = signing.assertion(view.spec, int(result.watermark_payload, 16))
        try:
            data = sign_transcoded(
                data,
                out,
                identity,
                original=original,
                original_format=source,
                title=f"{view.id}.{out}",
                generation=generation,
            )
        except SigningError:
            logger.exception(
                "C2PA signing of the %s download of job %s failed; served unsigned", out, view.id
            )
            return data
        self.store.put(key, data)
        return data

    def captions(self, job_id: str, caller: Caller, fmt: CaptionFormat) -> str:
        """The speech job's captions in ``fmt`` (from its result's word timings)."""
        view = self.get(job_id, caller)
        if view.result is None:
            raise Conflict(
                f"job '{job_id}' is {view.state}; captions exist once it succeeded", field="job_id"
            )
        if view.result.words is None:
            raise Conflict(f"job '{job_id}' is {view.kind}: only speech jobs have captions", field="job_id")
        return render(view.result.words, fmt)

    def finished(self, job_id: str, caller: Caller, timeout_s: float) -> JobView:
        """The job once it succeeded, for routes that answer with the result (blocking: run in a thread).

        Raises:
            ModelUnavailable: the model's weights are missing on the worker.
            GenerationFailed: the job failed, was cancelled or did not finish within ``timeout_s``.
        """
        done = self.wait(job_id, caller, timeout_s=timeout_s)
        if done.state == "succeeded":
            return done
        if done.error is not None and done.error.code == ModelUnavailable.code:
            raise ModelUnavailable(done.error.message)
        raise GenerationFailed(
            done.error.message if done.error else f"job {job_id} is {done.state} after {timeout_s:g} s"
        )

    def wait(self, job_id: str, caller: Caller, timeout_s: float = 60.0) -> JobView:
        """The job once it ended, or as it is after ``timeout_s``; woken by the record's events."""
        deadline = time.monotonic() + timeout_s
        for view in self.watch(job_id, caller):
            if view.state in TERMINAL or time.monotonic() >= deadline:
                return view
        raise AssertionError("unreachable: watch() ends only after a final state")

    def watch(self, job_id: str, caller: Caller, *, idle_s: float = 1.0) -> Generator[JobView, None, None]:
        """The job now, then again on every change of its record, until it ended (the last view).

        Changes arrive on the record's pub/sub channel; with none for ``idle_s`` the current view
        is yielded again (so a caller can time out or send a keep-alive), read afresh as a safety net.

        Raises:
            NotFound: No such job for ``caller`` (before the first view).
        """
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        pubsub.subscribe(keys.job_events(job_id))  # before the first read: no change can slip between
        try:
            while True:
                view = self.get(job_id, caller)
                yield view
                if view.state in TERMINAL:
                    return
                pubsub.get_message(timeout=idle_s)
                while pubsub.get_message(timeout=0.0) is not None:  # coalesce a burst into one read
                    pass
        finally:
            pubsub.close()


def error_json(code: str, message: str, field: str | None = None) -> str:
    return json.dumps({"code": code, "message": message, "field": field})


__all__ = ["TERMINAL", "Caller", "JobService", "audio_key", "error_json"]
