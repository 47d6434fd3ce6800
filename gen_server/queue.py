"""The Celery client: the API queues tasks by name and never imports the workers."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from celery import Celery

from gen_server.celery_config import JOB_PRIORITY, TASK_GENERATE, TASK_VERIFY_VOICE, celery_config
from gen_server.contract.spec import JobSpec
from gen_server.settings import Settings


class JobQueue:
    """Sends job specs to ``soundry.generate`` on the queue of their kind."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self._settings = settings
        self._redis_url = redis_url

    @cached_property
    def app(self) -> Celery:
        app = Celery("soundry-client", set_as_current=False)
        app.conf.update(celery_config(self._settings, self._redis_url))
        return app

    def send(self, spec: JobSpec, *, priority: int = JOB_PRIORITY) -> None:
        """Queue ``spec``; the Celery task id is the job id (idempotent redelivery relies on it)."""
        self.app.send_task(
            TASK_GENERATE,
            kwargs={"spec": spec.model_dump(mode="json")},
            task_id=spec.job_id,
            queue=spec.queue,
            priority=priority,
        )

    def verify_voice(self, voice_id: str, check: dict[str, Any]) -> None:
        """Queue the consent check of voice ``voice_id`` on the speech queue (task id = voice id).

        Interactive priority: someone waits on the answer (``POST /v1/voices``)."""
        self.app.send_task(
            TASK_VERIFY_VOICE, kwargs=check, task_id=voice_id, queue="speech", priority=JOB_PRIORITY
        )

    def inspect_workers(self, timeout: float = 1.0) -> dict[str, Any]:
        """Active workers and the queues they consume (empty when none answer in ``timeout``)."""
        replies = self.app.control.inspect(timeout=timeout).active_queues() or {}
        return {name: [q["name"] for q in queues] for name, queues in replies.items()}
