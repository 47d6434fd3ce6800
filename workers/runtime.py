"""Per-process worker state: settings, Redis, storage, catalog, models behind the batcher, watermarker.

One :class:`WorkerRuntime` per process, shared by Celery's task threads. Each task thread runs
:meth:`WorkerRuntime.execute` for its job: the model call goes through the one :class:`Batcher`
thread (which owns the models and batches compatible jobs); everything else (upload decoding,
post-processing, watermark, encoding, storage, Redis bookkeeping) runs in the task thread.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import redis

from gen_server.audio.watermark import KeyedWatermarker
from gen_server.celery_config import JOB_PRIORITY
from gen_server.content_credentials import Signing, resolve_identity
from gen_server.contract.catalog import Catalog, ModelEntry, build_catalog
from gen_server.contract.result import JobError, JobResult
from gen_server.contract.scene import TASK_SCENE_MIX, ScenePlan, component_error
from gen_server.contract.spec import JobSpec
from gen_server.errors import JobCancelled
from gen_server.instance_secrets import watermark_key
from gen_server.records import keys
from gen_server.records.jobs import JobRecords, ended_as
from gen_server.records.speed import SpeedRecords
from gen_server.settings import Settings, get_settings
from gen_server.storage import ArtifactStore, open_store, storage_location
from workers.backends.base import ProgressFn
from workers.backends.registry import ModelManager
from workers.batcher import Batcher
from workers.memory import rss_bytes
from workers.pipeline import cached_result, finish, gen_request
from workers.speech_check import Checker, check_sentence
from workers.streaming import StreamPublisher, end_stream

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Progress:
    """Progress reporter for one job: at most ``max_hz`` checks, cancel checked on every check.

    Called from the job's own task thread (never from the batcher thread); ``report`` runs only when
    the fraction changed. ``1.0`` is always checked.
    """

    job_id: str
    records: JobRecords
    report: ProgressFn
    max_hz: float = 4.0
    _last: float = field(default=0.0, init=False)
    _reported: float = field(default=0.0, init=False)

    def check_cancel(self) -> None:
        """Raise JobCancelled when a cancel was asked for on the job's record."""
        if self.records.cancel_requested(self.job_id):
            raise JobCancelled(f"job '{self.job_id}' was cancelled")

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < 1.0 / self.max_hz:
            return
        self._last = now
        self.check_cancel()
        fraction = min(max(fraction, 0.0), 1.0)
        if fraction != self._reported:
            self._reported = fraction
            self.report(fraction)


class WorkerRuntime:
    """Everything a worker process's task threads share; models are used only by ``batcher``."""

    def __init__(self, settings: Settings) -> None:
        if not settings.redis_url:
            raise RuntimeError("SOUNDRY_REDIS_URL is not set")
        self.settings = settings
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.store: ArtifactStore = open_store(settings)
        self.catalog: Catalog = build_catalog(settings)
        self.models = ModelManager(settings)
        self.watermark_key = watermark_key(settings)
        self.watermarker = KeyedWatermarker(self.watermark_key)
        self.c2pa_identity = resolve_identity(settings)
        self.batcher = Batcher(
            self.models,
            max_batch=settings.max_batch,
            window_s=settings.batch_window_ms / 1000.0,
            on_model_call=self.count_model_call,
        )
        self.records = JobRecords(self.redis, settings.job_retention_s)
        self.speed = SpeedRecords(self.redis)
        self._running: dict[str, threading.Event] = {}
        self._running_lock = threading.Lock()

    def execute(self, spec: JobSpec, report: ProgressFn, attempt: int = 1) -> JobResult:
        """Run ``spec`` in the calling (task) thread, the model call through the batcher.

        The cancel request is checked first and then at every progress tick while the job waits for
        its model call; a redelivered job whose artifact exists returns at once. The job's record is
        the caller's (:func:`workers.tasks.run_recorded`).

        Raises:
            SoundryError: Subclasses on failure (``JobCancelled`` when cancelled).
        """
        progress = Progress(spec.job_id, self.records, report)
        progress.check_cancel()
        with self._only_copy(spec.job_id, progress):
            result = cached_result(spec, self.store)
            if result is not None:
                logger.info("job %s already has its artifact; not regenerating", spec.job_id)
            else:
                entry = self.catalog.get(spec.model)
                key = self.watermark_key
                stream = StreamPublisher(self.redis, spec, self.watermarker, key, attempt)
                request = replace(
                    gen_request(spec, self.store),
                    on_audio=stream.on_audio,
                    check=self._speech_check(spec, entry),
                )
                generated = self.batcher.run(entry, request, progress, job_id=spec.job_id)
                result = finish(
                    spec,
                    generated.audio,
                    watermarker=self.watermarker,
                    watermark_key=key,
                    store=self.store,
                    generation_s=generated.generation_s,
                    batch_size=generated.batch_size,
                    signing=Signing(self.c2pa_identity, entry.licence_terms, entry.commercial_use),
                )
                self._observe_speed(spec, result)
        return result

    def scene_signing(self, plan: ScenePlan) -> Signing:
        """How a scene's files are signed: the licences of every model in it (unknown ids named as such)."""
        licences: list[str] = []
        terms: set[str] = set()
        for model in sorted({c.model for c in plan.components}):
            entry = self.catalog.get(model) if model in self.catalog else None
            licences.append(f"{model}: {entry.licence_terms}" if entry else f"{model}: unknown")
            terms.add(entry.commercial_use if entry else "not_allowed")
        strictest = next((t for t in ("not_allowed", "conditional") if t in terms), "allowed")
        return Signing(self.c2pa_identity, "; ".join(licences), strictest)

    def _observe_speed(self, spec: JobSpec, result: JobResult) -> None:
        """Fold this job's measured speed into the ETAs the API shows (never fails the job)."""
        try:
            self.speed.observe(
                spec,
                generation_s=result.generation_s,
                batch_size=result.batch_size,
                audio_s=result.duration_s,
            )
        except redis.RedisError:
            logger.exception("recording the speed of job %s failed", spec.job_id)

    def _speech_check(self, spec: JobSpec, entry: ModelEntry) -> Checker | None:
        """The sentence check for a speech job (none when it is off, or for random-weight dev models,
        which make noise by design)."""
        if spec.kind != "speech" or not self.settings.speech_qc or entry.dev:
            return None
        language = spec.language or (entry.languages[0] if entry.languages else "en")
        return functools.partial(check_sentence, language=language)

    @contextlib.contextmanager
    def _only_copy(self, job_id: str, progress: Progress) -> Iterator[None]:
        """Let one copy of ``job_id`` run at a time in this process.

        A message delivered twice to this worker (a lapsed lease) would otherwise generate the job
        twice, possibly in the same batch. The second copy waits (cancel still checked) and then
        finds the first copy's artifact, so it finishes as ``cached``.
        """
        warned = False
        while True:
            with self._running_lock:
                done = self._running.get(job_id)
                if done is None:
                    done = self._running[job_id] = threading.Event()
                    break
            if not warned:
                logger.warning("job %s is already running in this worker (delivered twice); waiting", job_id)
                warned = True
            while not done.wait(1.0 / progress.max_hz):
                progress(0.0)
        try:
            yield
        finally:
            with self._running_lock:
                self._running.pop(job_id, None)
            done.set()

    def count_model_call(self, model_id: str, batch_size: int) -> None:
        """Count one model call (``batch_size`` jobs served) in ``keys.STATS_MODEL_CALLS``."""
        self.redis.hincrby(keys.STATS_MODEL_CALLS, model_id, 1)
        logger.debug("model call on %s served %d job(s)", model_id, batch_size)

    def succeeded(self, job_id: str, result: JobResult, scene: str | None) -> bool:
        """Record ``result`` as the job's end (and count it), end its stream, advance its scene.

        Returns ``False`` when the record was already final (nothing changed, nothing counted).
        """
        made = self.records.succeed(job_id, result)
        if made:
            pipe = self.redis.pipeline()
            # a batched call's seconds are shared by its jobs: the sum stays the model's busy time
            pipe.hincrbyfloat(keys.STATS_GEN_SECONDS, result.model, result.generation_s / result.batch_size)
            pipe.hincrbyfloat(keys.STATS_AUDIO_SECONDS, result.model, result.duration_s)
            pipe.execute()
        self._end_stream(job_id, made, "succeeded", None)
        if made and scene:
            self._component_succeeded(scene, job_id)
        return made

    def failed(self, job_id: str, error: JobError, scene: str | None) -> bool:
        """Record ``error`` as the job's end (``cancelled`` for that code), end its stream, fail its scene.

        Returns ``False`` when the record was already final.
        """
        made = self.records.fail(job_id, error)
        self._end_stream(job_id, made, ended_as(error), error)
        if scene and made:
            self._component_ended(scene, job_id, ended_as(error), error)
        return made

    def _end_stream(self, job_id: str, made: bool, state: str, error: JobError | None) -> None:
        """End the job's audio stream with its final state: this run's when it made the record final,
        else the record's (a cancel came first)."""
        if not made:
            raw_state, raw_error = self.redis.hmget(keys.job(job_id), ["state", "error"])
            if raw_state:
                state = raw_state.decode() if isinstance(raw_state, bytes) else str(raw_state)
                error = JobError.model_validate_json(raw_error) if raw_error else None
        end_stream(self.redis, job_id, state, error.model_dump() if error else None)

    def _component_succeeded(self, scene_id: str, job_id: str) -> None:
        """Tick ``job_id`` off its scene; the last component to succeed queues the scene's mix (once)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.srem(keys.scene_pending(scene_id), job_id)
        pipe.scard(keys.scene_pending(scene_id))
        left = int(pipe.execute()[1])
        if left or not self.redis.hsetnx(keys.scene(scene_id), "mix_sent", 1):
            return
        raw = self.redis.hget(keys.job(scene_id), "queue")  # this client returns bytes
        queue = raw.decode() if isinstance(raw, bytes) else "music"
        from workers.celery_app import app  # the Celery app needs the worker's settings: import on use

        app.send_task(
            TASK_SCENE_MIX,
            kwargs={"scene_id": scene_id},
            task_id=scene_id,
            queue=queue,
            priority=JOB_PRIORITY,
        )
        logger.info("scene %s: every component succeeded; mix queued on '%s'", scene_id, queue)

    def _component_ended(self, scene_id: str, job_id: str, state: str, error: JobError) -> None:
        """A component failed or was cancelled: the scene fails (unless it already ended)."""
        raw = self.redis.hget(keys.scene(scene_id), "plan")
        if not raw:
            return
        plan = ScenePlan.model_validate_json(raw if isinstance(raw, bytes | str) else str(raw))
        component = next((c for c in plan.components if c.job_id == job_id), None)
        if component is not None and self.records.fail(scene_id, component_error(component, state, error)):
            logger.warning("scene %s failed: its component %s %s", scene_id, component.path, state)

    def report_status(self) -> None:
        """Publish this worker's queues, memory and loaded models (read by /metrics and `soundry status`)."""
        info = {
            "queues": self.settings.queues,
            "device": self.settings.device,
            "rss_bytes": rss_bytes(),
            "models": self.models.loaded_ids(),
            "storage": storage_location(self.settings),
            "seen_at": time.time(),
        }
        self.redis.hset(keys.WORKERS, WORKER_ID, json.dumps(info))


_RUNTIME: WorkerRuntime | None = None
_RUNTIME_LOCK = threading.Lock()


def runtime() -> WorkerRuntime:
    """This process's runtime, created once (task threads may ask for it at the same time)."""
    global _RUNTIME
    if _RUNTIME is None:
        with _RUNTIME_LOCK:
            if _RUNTIME is None:
                _RUNTIME = WorkerRuntime(get_settings())
    return _RUNTIME
