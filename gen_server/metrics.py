"""Prometheus metrics, read from Redis at scrape time (so every API host reports the same numbers)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gen_server.celery_config import QUEUES
from gen_server.contract import keys

WORKER_STALE_S = 60.0


def queue_depths(client: redis.Redis) -> dict[str, int]:
    """Messages waiting per queue (kombu keeps one list per priority step: ``name``, ``name\\x06\\x16N``)."""
    depths: dict[str, int] = {}
    for queue in QUEUES:
        total = 0
        for suffix in ("", "\x06\x163", "\x06\x166", "\x06\x169"):
            total += int(client.llen(queue + suffix))
        depths[queue] = total
    return depths


def live_workers(client: redis.Redis) -> dict[str, dict[str, object]]:
    """Workers that reported within the last minute."""
    now = time.time()
    found: dict[str, dict[str, object]] = {}
    for worker, raw in client.hgetall(keys.WORKERS).items():  # type: ignore[union-attr]
        info = json.loads(raw)
        if now - float(info.get("seen_at", 0)) < WORKER_STALE_S:
            found[str(worker)] = info
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
        for state, n in self.client.hgetall(keys.STATS_JOBS).items():  # type: ignore[union-attr]
            jobs.add_metric([str(state)], float(n))
        yield jobs
        gen = CounterMetricFamily("soundry_generation_seconds", "Seconds spent generating", labels=["model"])
        for model, s in self.client.hgetall(keys.STATS_GEN_SECONDS).items():  # type: ignore[union-attr]
            gen.add_metric([str(model)], float(s))
        yield gen
        audio = CounterMetricFamily("soundry_audio_seconds", "Seconds of audio produced", labels=["model"])
        for model, s in self.client.hgetall(keys.STATS_AUDIO_SECONDS).items():  # type: ignore[union-attr]
            audio.add_metric([str(model)], float(s))
        yield audio
        workers = live_workers(self.client)
        up = GaugeMetricFamily("soundry_workers", "Workers seen in the last minute")
        up.add_metric([], len(workers))
        yield up
        rss = GaugeMetricFamily("soundry_worker_memory_bytes", "Worker resident memory", labels=["worker"])
        for worker, info in workers.items():
            rss.add_metric([worker], float(info.get("rss_bytes", 0)))  # type: ignore[arg-type]
        yield rss


def render(client: redis.Redis) -> bytes:
    registry = CollectorRegistry()
    registry.register(SoundryCollector(client))
    return generate_latest(registry)
