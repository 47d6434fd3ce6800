"""The Celery client: the API queues tasks by name and never imports the workers."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from gen_server.celery_config import TASK_GENERATE, celery_config, priority_lists
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

    def send(self, spec: JobSpec, *, priority: int = 5) -> None:
        """Queue ``spec``; the Celery task id is the job id (idempotent redelivery relies on it)."""
        self.app.send_task(
            TASK_GENERATE,
            kwargs={"spec": spec.model_dump(mode="json")},
            task_id=spec.job_id,
            queue=spec.queue,
            priority=priority,
        )

    def position(self, redis_client: Any, job_id: str, queue: str, scan_limit: int = 1000) -> int | None:
        """1-based place of a waiting job in its queue (1: next out), ``None`` once a worker holds it."""
        ahead = 0
        for name in priority_lists(queue):
            messages = redis_client.lrange(name, -scan_limit, -1)
            for i, raw in enumerate(reversed(messages)):  # workers pop from the right end
                if job_id in (raw.decode() if isinstance(raw, bytes) else raw):
                    return ahead + i + 1
            ahead += int(redis_client.llen(name))
        return None

    def result(self, job_id: str) -> AsyncResult:
        return AsyncResult(job_id, app=self.app)

    def revoke(self, job_id: str) -> None:
        self.app.control.revoke(job_id)

    def inspect_workers(self, timeout: float = 1.0) -> dict[str, Any]:
        """Active workers and the queues they consume (empty when none answer in ``timeout``)."""
        replies = self.app.control.inspect(timeout=timeout).active_queues() or {}
        return {name: [q["name"] for q in queues] for name, queues in replies.items()}
