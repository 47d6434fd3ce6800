"""Per-process worker state: settings, Redis, storage, catalog, loaded models, watermarker."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from functools import cache

import redis

from gen_server.audio.watermark import KeyedWatermarker
from gen_server.contract import keys
from gen_server.contract.catalog import Catalog, build_catalog
from gen_server.contract.result import JobResult
from gen_server.contract.spec import JobSpec
from gen_server.errors import JobCancelled
from gen_server.settings import Settings, get_settings
from gen_server.storage import LocalStore, open_store
from workers.backends.base import ProgressFn
from workers.backends.registry import ModelManager
from workers.pipeline import run_job

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Progress:
    """Progress reporter for one job: at most ``max_hz`` updates, cancel checked on every update."""

    job_id: str
    redis: redis.Redis
    report: ProgressFn
    max_hz: float = 4.0
    _last: float = field(default=0.0, init=False)

    def check_cancel(self) -> None:
        if self.redis.exists(keys.cancel(self.job_id)):
            raise JobCancelled(f"job '{self.job_id}' was cancelled")

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < 1.0 / self.max_hz:
            return
        self._last = now
        self.check_cancel()
        self.report(min(max(fraction, 0.0), 1.0))


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        if not settings.redis_url:
            raise RuntimeError("SOUNDRY_REDIS_URL is not set")
        self.settings = settings
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.store: LocalStore = open_store(settings.data_dir)
        self.catalog: Catalog = build_catalog(settings)
        self.models = ModelManager(settings)
        self.watermarker = KeyedWatermarker(settings.watermark_key.encode())

    def execute(self, spec: JobSpec, report: ProgressFn) -> JobResult:
        """Run ``spec`` (cancel checked first); raises SoundryError subclasses on failure."""
        progress = Progress(spec.job_id, self.redis, report)
        progress.check_cancel()
        self.redis.hset(keys.job(spec.job_id), mapping={"started_at": time.time(), "worker": WORKER_ID})
        backend = self.models.get(self.catalog.get(spec.model))
        result = run_job(
            spec,
            backend=backend,
            watermarker=self.watermarker,
            watermark_key=self.settings.watermark_key.encode(),
            store=self.store,
            progress=progress,
        )
        pipe = self.redis.pipeline()
        pipe.hset(keys.job(spec.job_id), "finished_at", time.time())
        if not result.cached:
            pipe.hincrby(keys.STATS_JOBS, "succeeded", 1)
            pipe.hincrbyfloat(keys.STATS_GEN_SECONDS, spec.model, result.generation_s)
            pipe.hincrbyfloat(keys.STATS_AUDIO_SECONDS, spec.model, result.duration_s)
        pipe.execute()
        self.models.evict_idle(time.monotonic())
        return result

    def count_attempt(self, job_id: str) -> int:
        """Count one more start of ``job_id`` (redeliveries included) and return the count."""
        key = keys.attempts(job_id)
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, self.settings.job_retention_s)
        return int(pipe.execute()[0])

    def record_error(self, job_id: str, code: str, message: str, field: str | None = None) -> None:
        pipe = self.redis.pipeline()
        pipe.hset(
            keys.job(job_id),
            mapping={
                "error": json.dumps({"code": code, "message": message, "field": field}),
                "finished_at": time.time(),
            },
        )
        pipe.hincrby(keys.STATS_JOBS, "cancelled" if code == "cancelled" else "failed", 1)
        pipe.execute()

    def report_status(self) -> None:
        """Publish this worker's queues, memory and loaded models (read by /metrics and `soundry status`)."""
        info = {
            "queues": self.settings.queues,
            "device": self.settings.device,
            "rss_bytes": rss_bytes(),
            "models": self.models.loaded_ids(),
            "seen_at": time.time(),
        }
        self.redis.hset(keys.WORKERS, WORKER_ID, json.dumps(info))


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@cache
def runtime() -> WorkerRuntime:
    return WorkerRuntime(get_settings())
