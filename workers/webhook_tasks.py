"""Webhook events of a job, each delivered by its own Celery task, retried over hours, every attempt recorded.

The job's task thread only queues a small message (:func:`job_events`); the POST, its retries and
their bookkeeping run in ``soundry.webhook`` tasks, so a slow or failing receiver never slows or fails
generation. The ``webhook-id`` of an event is the task id: Celery keeps it across retries.
"""

from __future__ import annotations

import logging
from functools import partial

from celery import Task

from gen_server.contract.spec import JobSpec
from gen_server.instance_secrets import webhook_secret
from gen_server.records import keys
from gen_server.settings import get_settings
from gen_server.webhooks import JobEvents, deliver, new_webhook_id, retry_delay_s
from workers.celery_app import app

logger = logging.getLogger(__name__)

TASK_WEBHOOK = "soundry.webhook"
WEBHOOK_PRIORITY = 0
"""Webhook tasks go ahead of waiting jobs on the job's queue (kombu's Redis: 0 is served first)."""
KEPT_ATTEMPTS = 200
"""Attempts kept on a job (progress events add up); the oldest are dropped first."""


@app.task(name=TASK_WEBHOOK, bind=True, max_retries=None, ignore_result=True)
def send_webhook(self: Task, job_id: str, url: str, body: str, event_type: str | None = None) -> int | None:
    """POST ``body`` to ``url``; a non-2xx answer or a network error is retried on
    :func:`~gen_server.webhooks.retry_delay_s`'s schedule, up to ``webhook_max_attempts`` deliveries."""
    from workers.runtime import runtime

    settings = get_settings()
    webhook_id = str(self.request.id)
    attempt = deliver(
        url,
        body.encode(),
        webhook_secret(settings),
        webhook_id,
        allow_private=settings.allow_private_webhooks,
        event_type=event_type,
    )
    rt = runtime()
    pipe = rt.redis.pipeline()
    pipe.rpush(keys.webhook_attempts(job_id), attempt.model_dump_json())
    pipe.ltrim(keys.webhook_attempts(job_id), -KEPT_ATTEMPTS, -1)
    pipe.expire(keys.webhook_attempts(job_id), settings.job_retention_s)
    pipe.execute()
    if attempt.status is not None and 200 <= attempt.status < 300:
        return attempt.status
    delivered = self.request.retries + 1
    if delivered >= settings.webhook_max_attempts:
        logger.warning("job %s: webhook %s gave up after %d attempts", job_id, webhook_id, delivered)
        return attempt.status
    raise self.retry(countdown=retry_delay_s(delivered))


def job_events(spec: JobSpec) -> JobEvents:
    """The webhook events of one run of ``spec``: each queues one ``soundry.webhook`` task and returns."""
    return JobEvents(spec, send=partial(_queue, spec))


def _queue(spec: JobSpec, event_type: str, body: bytes, urgent: bool) -> None:
    """Queue one event's delivery on the job's queue, ahead of waiting jobs (never raises).

    A progress event (not ``urgent``) is dropped rather than retried when Redis does not answer.
    """
    try:
        send_webhook.apply_async(
            args=(spec.job_id, spec.callback_url, body.decode()),
            kwargs={"event_type": event_type},
            task_id=new_webhook_id(),
            queue=spec.queue,
            priority=WEBHOOK_PRIORITY,
            retry=urgent,
        )
    except Exception:  # a webhook must never fail the job
        logger.exception("job %s: could not queue its %s webhook", spec.job_id, event_type)
