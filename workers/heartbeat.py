"""Lease renewal for messages a live worker holds, so a short visibility timeout is safe.

Kombu's Redis transport re-queues a delivered, unacked message once its score in the
``unacked_index`` sorted set is older than ``visibility_timeout``. A short timeout brings a dead
worker's jobs back fast, but would also hand a long job out again while it still runs. This thread
refreshes the score of every message this worker holds (``ZADD ... XX``) every quarter timeout:
a live worker's jobs are never restored, a dead worker's jobs come back one timeout after it died.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

logger = logging.getLogger(__name__)

UNACKED_INDEX = "unacked_index"


class Heartbeat:
    """Tracks held delivery tags and renews their lease from a daemon thread."""

    def __init__(
        self, redis_url: str, visibility_timeout_s: float, on_beat: Callable[[], None] | None = None
    ) -> None:
        self._redis = redis.Redis.from_url(redis_url)
        self._on_beat = on_beat
        self.interval_s = max(visibility_timeout_s / 4.0, 0.5)
        self._tags: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, tag: str) -> None:
        with self._lock:
            self._tags.add(tag)
        self.beat()

    def release(self, tag: str) -> None:
        with self._lock:
            self._tags.discard(tag)

    def held(self) -> set[str]:
        with self._lock:
            return set(self._tags)

    def beat(self) -> None:
        """Renew every held tag now (only tags still in the index: XX never re-adds an acked one)."""
        tags = self.held()
        if not tags:
            return
        now = time.time()
        try:
            self._redis.zadd(UNACKED_INDEX, dict.fromkeys(tags, now), xx=True)
        except redis.RedisError as e:
            logger.warning("heartbeat failed (will retry): %s", e)

    def start(self) -> Heartbeat:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="soundry-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()
            if self._on_beat is not None:
                try:
                    self._on_beat()
                except Exception:  # reporting must never stop lease renewal
                    logger.exception("worker status report failed")

    def stop(self) -> None:
        self._stop.set()


def delivery_tag(request: Any) -> str | None:
    """The broker delivery tag of a worker ``Request`` (task_received) or a task ``Context`` (postrun).

    Celery copies only exchange, routing key, priority and the redelivered flag into
    ``request.delivery_info``, so the tag is read from the kombu message (``request.message``) or,
    with the Redis transport, from the message properties a task context carries. ``None`` when the
    task runs eagerly.
    """
    tag = getattr(getattr(request, "message", None), "delivery_tag", None)
    if tag is None:
        properties = getattr(request, "properties", None)
        if isinstance(properties, dict):
            tag = properties.get("delivery_tag")
    return str(tag) if tag is not None else None
