"""Celery tasks: thin; they delegate to the runtime and pipeline."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import Ignore

from gen_server.celery_config import TASK_GENERATE
from gen_server.contract.spec import JobSpec
from gen_server.errors import JobCancelled, SoundryError, TransientError
from workers.celery_app import app
from workers.runtime import runtime

logger = logging.getLogger(__name__)


@app.task(
    name=TASK_GENERATE,
    bind=True,
    autoretry_for=(TransientError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=3,
)
def generate(self: Task, spec: dict[str, Any]) -> dict[str, Any]:
    """Generate one job's audio; the task id is the job id."""
    job = JobSpec.model_validate(spec)
    rt = runtime()

    def report(fraction: float) -> None:
        self.update_state(state="PROGRESS", meta={"progress": round(fraction, 4)})

    logger.info("job %s: %s on %s", job.job_id, job.kind, job.model)
    try:
        result = rt.execute(job, report)
    except JobCancelled as e:
        rt.record_error(job.job_id, e.code, e.message)
        logger.info("job %s cancelled", job.job_id)
        raise Ignore() from e
    except TransientError:
        raise
    except SoundryError as e:
        rt.record_error(job.job_id, e.code, e.message, e.field)
        logger.warning("job %s failed: %s", job.job_id, e.message)
        raise
    except Exception as e:
        rt.record_error(job.job_id, "generation_failed", f"{type(e).__name__}: {e}")
        logger.exception("job %s crashed", job.job_id)
        raise
    logger.info("job %s done in %.2f s", job.job_id, result.generation_s)
    return result.model_dump(mode="json")
