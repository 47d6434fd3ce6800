"""A job's stream through a real Redis: worker-side publisher, API-side reader (no model needed)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from gen_server.audio import Audio
from gen_server.audio.watermark import KeyedWatermarker, payload_for_job
from gen_server.contract.catalog import build_catalog
from gen_server.contract.spec import JobRequest, JobSpec, build_spec
from gen_server.records import keys
from gen_server.redis_server import EmbeddedRedis
from gen_server.settings import Settings
from gen_server.streams import End, Piece, read_stream
from workers.streaming import MAX_PIECE_S, StreamPublisher, end_stream

KEY = b"stream-test-key"
RATE = 22050


@pytest.fixture
def client(redis_server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def spec(settings: Settings, **post: object) -> JobSpec:
    catalog = build_catalog(settings)
    req = JobRequest(kind="speech", text="Streaming test.", format="wav", post=post or None)
    return build_spec(req, catalog, job_id=uuid.uuid4().hex)


def sentence(seed: int, seconds: float) -> Audio:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * (110 + 7 * seed) * k * t) / k for k in range(1, 10))
    return Audio.mono((0.1 * voiced + 0.003 * rng.standard_normal(t.size)).astype(np.float32), RATE)


def never_ended() -> End | None:
    return None


def collect(client: redis.Redis, job_id: str) -> tuple[np.ndarray, End]:
    pieces: list[np.ndarray] = []
    for item in read_stream(client, job_id, never_ended):
        if isinstance(item, End):
            return (np.concatenate(pieces) if pieces else np.zeros((0, 1), np.int16)), item
        assert isinstance(item, Piece) and item.sample_rate == 24000
        pieces.append(item.pcm)
    raise AssertionError("the stream had no end")


def test_chunks_are_processed_marked_and_read_back_in_order(client: redis.Redis, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    job = spec(settings, sample_rate=24000, channels=1)
    publisher = StreamPublisher(client, job, KeyedWatermarker(KEY), KEY, attempt=1)
    for i, seconds in enumerate((1.7, 2.9, 0.8)):
        publisher.on_audio(sentence(i, seconds))
    end_stream(client, job.job_id, "succeeded")
    entries = client.xrange(keys.stream(job.job_id))
    audio_entries = [f for _, f in entries if f[b"t"] == b"audio"]
    assert max(len(f[b"pcm"]) for f in audio_entries) <= 2 * int(MAX_PIECE_S * 24000)  # small messages
    pcm, end = collect(client, job.job_id)
    assert end.state == "succeeded" and end.error is None
    assert abs(pcm.shape[0] / 24000 - (1.7 + 2.9 + 0.8)) < 0.01  # resampled to the job's rate
    found = KeyedWatermarker(KEY).detect(Audio(pcm.T.astype(np.float32) / 32768, 24000))
    assert found.detected and found.payload == payload_for_job(job.job_id, KEY)
    assert 0 < client.ttl(keys.stream(job.job_id)) <= 3600


def test_a_redelivered_job_continues_its_stream(client: redis.Redis, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    job = spec(settings, sample_rate=24000)
    first = StreamPublisher(client, job, KeyedWatermarker(KEY), KEY, attempt=1)
    first.on_audio(sentence(0, 1.5))
    first.on_audio(sentence(1, 1.0))  # the worker dies here
    again = StreamPublisher(client, job, KeyedWatermarker(KEY), KEY, attempt=2)
    for i, seconds in enumerate((1.5, 1.0, 2.0)):  # seeded: the same sentences again, then the last
        again.on_audio(sentence(i, seconds))
    end_stream(client, job.job_id, "succeeded")
    pcm, end = collect(client, job.job_id)
    assert end.state == "succeeded"
    assert abs(pcm.shape[0] / 24000 - 4.5) < 0.01


def test_live_reader_gets_pieces_early_and_errors_end_the_stream(client: redis.Redis, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    job = spec(settings, sample_rate=24000)
    publisher = StreamPublisher(client, job, KeyedWatermarker(KEY), KEY, attempt=1)
    seen: list[tuple[float, object]] = []

    def read() -> None:
        for item in read_stream(client, job.job_id, never_ended):
            seen.append((time.monotonic(), item))

    reader = threading.Thread(target=read)
    reader.start()
    publisher.on_audio(sentence(0, 1.0))
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen and isinstance(seen[0][1], Piece), "the first piece arrives while the job still runs"
    error = {"code": "cancelled", "message": "job cancelled", "field": None}
    end_stream(client, job.job_id, "cancelled", error)
    reader.join(60)
    last = seen[-1][1]
    assert isinstance(last, End) and last.state == "cancelled"
    assert last.error is not None and last.error.code == "cancelled"


def test_a_job_without_a_stream_ends_with_its_record(client: redis.Redis) -> None:
    items = list(read_stream(client, uuid.uuid4().hex, lambda: End("failed", None)))
    assert items == [End("failed", None)]
