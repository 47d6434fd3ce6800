"""Celery configuration shared by the API (client only) and the workers."""

from __future__ import annotations

from typing import Any, Literal

from gen_server.settings import Settings

TASK_GENERATE = "soundry.generate"
TASK_VERIFY_VOICE = "soundry.voices.verify"
"""Checks a new voice's consent clip against its references (workers/voice_tasks.py), on the speech queue."""
QUEUES = ("speech", "sfx", "music")
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"
JOB_PRIORITY = 5
"""Priority of interactive jobs (the UI, API calls, a scene's items and mix); kombu's Redis transport
serves 0 first, so webhook deliveries (0) go ahead of waiting jobs."""
BATCH_PRIORITY = 7
"""Priority of batch-file jobs (``POST /v1/batches``, ``soundry batch``): the next step down, so an
interactive job waiting in the same queue is handed out before them."""
Lane = Literal["interactive", "batch"]
LANE_PRIORITY: dict[str, int] = {"interactive": JOB_PRIORITY, "batch": BATCH_PRIORITY}


def priority_lists(queue: str) -> list[str]:
    """Kombu's Redis lists for ``queue`` in the order workers drain them (priority 0 first)."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def priority_step(priority: int) -> int:
    """The step (and so the Redis list) kombu puts a message of ``priority`` in: the largest step <= it."""
    return max(step for step in PRIORITY_STEPS if step <= max(priority, 0))


def celery_config(settings: Settings, redis_url: str) -> dict[str, Any]:
    """Celery settings: JSON only, late acks, prefetch 1, durable redelivery, no result backend.

    A job's state and result live in its record (:mod:`gen_server.records.jobs`), written by the
    worker; Celery only carries the messages, so no task result is stored.

    A whole-worker crash is recovered by kombu's unacked index after ``visibility_timeout``;
    the restore interval/throttle make that check frequent (shared/notes/FINDINGS.md).
    """
    return {
        "broker_url": redis_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_default_queue": "speech",
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": 2,
            "unacked_restore_throttle": 1,
            "priority_steps": list(PRIORITY_STEPS),
        },
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        # no task-sent events: nothing reads them (the job record says "queued"), and each one is a
        # second publish on every POST /v1/jobs; workers still send received/started/succeeded events
        # for `celery events` and Flower
        "task_send_sent_event": False,
    }
