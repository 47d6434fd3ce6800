"""Celery tasks: thin; they delegate to the runtime and pipeline.

The worker runs Celery's threads pool (``workers/__main__.py``): several ``soundry.generate`` tasks
run at once, each in its own thread, and meet in the runtime's batcher thread, which owns the models.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import Ignore
from celery.signals import task_postrun, task_received, worker_ready, worker_shutdown

from gen_server.celery_config import TASK_GENERATE
from gen_server.contract.spec import JobSpec
from gen_server.errors import JobCancelled, SoundryError, TransientError
from gen_server.settings import get_settings
from workers.celery_app import app
from workers.heartbeat import Heartbeat, delivery_tag
from workers.runtime import runtime
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


@app.task(name=TASK_GENERATE, bind=True, **RETRY_TRANSIENT)
def generate(self: Task, spec: dict[str, Any]) -> dict[str, Any] | None:
    """Generate one job's audio; the task id is the job id."""
    job = JobSpec.model_validate(spec)
    rt = runtime()
    attempt = rt.count_attempt(job.job_id)
    events = job_events(job)  # webhooks: queued, never waited for
    if attempt > rt.settings.max_attempts:
        message = f"job stopped after {attempt - 1} attempts: it crashed or lost its worker each time"
        rt.record_error(job.job_id, "worker_lost", message)
        events.completed("failed", None, {"code": "worker_lost", "message": message, "field": None})
        logger.error("job %s: %s", job.job_id, message)
        raise Ignore()

    def report(fraction: float) -> None:
        self.update_state(state="PROGRESS", meta={"progress": round(fraction, 4)})
        events.progress(fraction)

    logger.info("job %s (attempt %d): %s on %s", job.job_id, attempt, job.kind, job.model)
    events.started()
    try:
        result = rt.execute(job, report, attempt)
    except JobCancelled as e:
        rt.record_error(job.job_id, e.code, e.message)
        events.completed("cancelled", None, e.to_dict())
        logger.info("job %s cancelled", job.job_id)
        raise Ignore() from e
    except TransientError:
        raise
    except SoundryError as e:
        rt.record_error(job.job_id, e.code, e.message, e.field)
        events.completed("failed", None, e.to_dict())
        logger.warning("job %s failed: %s", job.job_id, e.message)
        raise
    except Exception as e:
        message = f"{type(e).__name__}: {e}"
        rt.record_error(job.job_id, "generation_failed", message)
        events.completed("failed", None, {"code": "generation_failed", "message": message, "field": None})
        logger.exception("job %s crashed", job.job_id)
        raise
    logger.info(
        "job %s done: model call %.2f s for a batch of %d (cached: %s)",
        job.job_id,
        result.generation_s,
        result.batch_size,
        result.cached,
    )
    payload = result.model_dump(mode="json")
    if not result.cached:
        events.completed("succeeded", payload, None)
    return payload
