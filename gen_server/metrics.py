"""Prometheus metrics, read from Redis at scrape time (so every API host reports the same numbers)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gen_server.celery_config import QUEUES, priority_lists
from gen_server.records import keys

WORKER_STALE_S = 60.0


def hash_text(client: redis.Redis, key: str) -> dict[str, str]:
    """HGETALL as text, whether or not the client decodes responses."""
    raw: dict[bytes | str, bytes | str] = client.hgetall(key)
    return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def queue_depths(client: redis.Redis) -> dict[str, int]:
    """Messages waiting per queue (kombu keeps one list per priority step: ``name``, ``name\\x06\\x16N``)."""
    depths: dict[str, int] = {}
    for queue in QUEUES:
        depths[queue] = sum(int(client.llen(name)) for name in priority_lists(queue))
    return depths


def live_workers(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Workers that reported within the last minute."""
    now = time.time()
    found: dict[str, dict[str, Any]] = {}
    for worker, raw in hash_text(client, keys.WORKERS).items():
        info = json.loads(raw)
        if now - float(info.get("seen_at", 0)) < WORKER_STALE_S:
            found[worker] = info
    return found


class SoundryCollector(Collector):
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        depth = GaugeMetricFamily("soundry_queue_depth", "Jobs waiting per queue", labels=["queue"])
        for queue, n in queue_depths(self.client).items():
            depth.add_metric([queue], n)
        yield depth
        jobs = CounterMetricFamily("soundry_jobs", "Finished jobs by final state", labels=["state"])
        for state, count in hash_text(self.client, keys.STATS_JOBS).items():
            jobs.add_metric([state], float(count))
        yield jobs
        gen = CounterMetricFamily("soundry_generation_seconds", "Seconds spent generating", labels=["model"])
        for model, s in hash_text(self.client, keys.STATS_GEN_SECONDS).items():
            gen.add_metric([model], float(s))
        yield gen
        audio = CounterMetricFamily("soundry_audio_seconds", "Seconds of audio produced", labels=["model"])
        for model, s in hash_text(self.client, keys.STATS_AUDIO_SECONDS).items():
            audio.add_metric([model], float(s))
        yield audio
        workers = live_workers(self.client)
        up = GaugeMetricFamily("soundry_workers", "Workers seen in the last minute")
        up.add_metric([], len(workers))
        yield up
        rss = GaugeMetricFamily("soundry_worker_memory_bytes", "Worker resident memory", labels=["worker"])
        for worker, info in workers.items():
            rss.add_metric([worker], float(info.get("rss_bytes", 0)))
        yield rss


def render(client: redis.Redis) -> bytes:
    registry = CollectorRegistry()
    registry.register(SoundryCollector(client))
    return generate_latest(registry)
