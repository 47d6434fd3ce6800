"""Webhook delivery as its own Celery task: retried with exponential backoff, every attempt recorded."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from gen_server.contract import keys
from gen_server.contract.spec import JobSpec
from gen_server.instance_secrets import webhook_secret
from gen_server.settings import get_settings
from gen_server.webhooks import body_for, deliver
from workers.celery_app import app

logger = logging.getLogger(__name__)

TASK_WEBHOOK = "soundry.webhook"


@app.task(name=TASK_WEBHOOK, bind=True, max_retries=None)
def send_webhook(self: Task, job_id: str, url: str, body: str) -> int | None:
    """POST ``body`` to ``url``; a non-2xx answer or a network error is retried (1, 2, 4, ... s)."""
    from workers.runtime import runtime

    settings = get_settings()
    attempt = deliver(
        url, body.encode(), webhook_secret(settings), allow_private=settings.allow_private_webhooks
    )
    rt = runtime()
    rt.redis.rpush(keys.webhook_attempts(job_id), attempt.model_dump_json())
    rt.redis.expire(keys.webhook_attempts(job_id), settings.job_retention_s)
    if attempt.status is not None and 200 <= attempt.status < 300:
        return attempt.status
    if self.request.retries + 1 >= settings.webhook_max_attempts:
        logger.warning("job %s: webhook gave up after %d attempts", job_id, self.request.retries + 1)
        return attempt.status
    raise self.retry(countdown=2**self.request.retries)


def notify(spec: JobSpec, state: str, result: dict[str, Any] | None, error: dict[str, Any] | None) -> None:
    """Queue the job's webhook, if it asked for one, on the job's own queue."""
    if not spec.callback_url:
        return
    body = body_for(spec.job_id, state, spec.model_dump(mode="json"), result, error)
    send_webhook.apply_async(args=(spec.job_id, spec.callback_url, body.decode()), queue=spec.queue)
