"""Celery tasks: thin; they delegate to the runtime and pipeline.

The worker runs Celery's threads pool (``workers/__main__.py``): several ``soundry.generate`` tasks
run at once, each in its own thread, and meet in the runtime's batcher thread, which owns the models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import Ignore
from celery.signals import task_postrun, task_received, worker_ready, worker_shutdown

from gen_server.celery_config import TASK_GENERATE
from gen_server.contract.result import JobError, JobResult
from gen_server.contract.spec import JobSpec
from gen_server.errors import JobCancelled, SoundryError, TransientError
from gen_server.records.jobs import ended_as
from gen_server.settings import get_settings
from gen_server.webhooks import JobEvents
from workers.backends.base import ProgressFn
from workers.celery_app import app
from workers.heartbeat import Heartbeat, delivery_tag
from workers.runtime import WORKER_ID, runtime
from workers.webhook_tasks import job_events

logger = logging.getLogger(__name__)

_heartbeat: Heartbeat | None = None


@worker_ready.connect
def _start_heartbeat(**_: Any) -> None:
    global _heartbeat
    settings = get_settings()
    if settings.redis_url:
        rt = runtime()
        rt.batcher.start()
        _heartbeat = Heartbeat(
            settings.redis_url, settings.visibility_timeout_s, on_beat=rt.report_status
        ).start()
        rt.report_status()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()


@task_received.connect
def _hold(request: Any = None, **_: Any) -> None:
    tag = delivery_tag(request)
    if _heartbeat is not None and tag:
        _heartbeat.hold(tag)
    elif _heartbeat is not None:
        logger.warning(
            "no delivery tag on task %s: its lease will not be renewed", getattr(request, "id", "?")
        )


@task_postrun.connect
def _release(task: Task | None = None, **_: Any) -> None:
    tag = delivery_tag(task.request) if task is not None else None
    if _heartbeat is not None and tag:
        _heartbeat.release(tag)


RETRY_TRANSIENT: dict[str, Any] = {
    "autoretry_for": (TransientError,),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": 3,
}
"""Task options: transient errors (lost connection, storage unavailable) retry with backoff."""


Work = Callable[[ProgressFn, int], JobResult]
"""A job's work: given a progress callback and the attempt's number, make and store its result."""


def run_recorded(task: Task, job_id: str, work: Work, events: JobEvents) -> None:
    """Run ``work`` as job ``job_id``: the one wrapper of every job task (generate, scene mix).

    It starts the job on its record (a job already final, e.g. cancelled while queued or finished by
    an earlier delivery, is dropped), caps the attempts a crashing or killed job gets, reports
    progress to the record (and webhooks), and ends the record with the result or the error. A
    transient error is retried by Celery with backoff; the last retry's failure ends the job.
    """
    rt = runtime()
    start = rt.records.start(job_id, WORKER_ID)
    if start.state != "running":
        logger.info("job %s is %s; not running it", job_id, start.state)
        raise Ignore()

    def fail(code: str, message: str, field: str | None = None) -> None:
        error = JobError(code=code, message=message, field=field)
        # a cancel made the record final already (the API does): its webhook is still this run's to send
        if rt.failed(job_id, error, start.scene) or code == "cancelled":
            events.completed(ended_as(error), None, error.model_dump())

    if start.attempt > rt.settings.max_attempts:
        lost = start.attempt - 1
        fail("worker_lost", f"job stopped after {lost} attempts: it crashed or lost its worker each time")
        logger.error("job %s: gave up after %d attempts", job_id, start.attempt - 1)
        raise Ignore()

    def report(fraction: float) -> None:
        rt.records.progress(job_id, fraction)
        events.progress(fraction)

    events.started()
    try:
        result = work(report, start.attempt)
    except JobCancelled as e:
        fail(e.code, e.message)
        logger.info("job %s cancelled", job_id)
        raise Ignore() from e
    except TransientError as e:
        if task.request.retries >= (task.max_retries or 0):
            fail(e.code, f"{e.message} (gave up after {task.request.retries + 1} tries)", e.field)
            logger.warning("job %s failed after %d tries: %s", job_id, task.request.retries + 1, e.message)
        raise
    except SoundryError as e:
        fail(e.code, e.message, e.field)
        logger.warning("job %s failed: %s", job_id, e.message)
        raise
    except Exception as e:
        fail("generation_failed", f"{type(e).__name__}: {e}")
        logger.exception("job %s crashed", job_id)
        raise
    if rt.succeeded(job_id, result, start.scene):
        events.completed("succeeded", result.model_dump(mode="json"), None)


@app.task(name=TASK_GENERATE, bind=True, **RETRY_TRANSIENT)
def generate(self: Task, spec: dict[str, Any]) -> None:
    """Generate one job's audio; the task id is the job id."""
    job = JobSpec.model_validate(spec)

    def work(report: ProgressFn, attempt: int) -> JobResult:
        logger.info("job %s (attempt %d): %s on %s", job.job_id, attempt, job.kind, job.model)
        result = runtime().execute(job, report, attempt)
        logger.info(
            "job %s done: model call %.2f s for a batch of %d (cached: %s)",
            job.job_id,
            result.generation_s,
            result.batch_size,
            result.cached,
        )
        return result

    run_recorded(self, job.job_id, work, job_events(job))
