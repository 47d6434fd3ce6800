"""Admission that knows capacity: interactive vs batch lanes, measured speeds and job ETAs."""

from __future__ import annotations

import json
import time

import pytest
import redis
from fastapi.testclient import TestClient

from gen_server.celery_config import priority_lists
from gen_server.contract.spec import JobSpec
from gen_server.records import keys
from gen_server.records.speed import SpeedRecords, audio_seconds, eta_s, live_workers

SFX = {"kind": "sfx", "prompt": "rain", "duration_s": 2}


def _spec(**update: object) -> JobSpec:
    fields = {"job_id": "j", "kind": "sfx", "model": "dev-audiogen-tiny", "prompt": "rain", "duration_s": 4.0}
    return JobSpec.model_validate({**fields, "seed": 1, "sampling": {}, "post": {}, **update})


def test_batch_lane_waits_behind_interactive_jobs_in_the_broker_and_the_queue_order(api: TestClient) -> None:
    batch = [api.post("/v1/jobs", params={"lane": "batch"}, json=SFX).json()["id"] for _ in range(2)]
    interactive = api.post("/v1/jobs", json=SFX).json()["id"]
    positions = {i: api.get(f"/v1/jobs/{i}").json()["queue_position"] for i in [*batch, interactive]}
    assert positions == {interactive: 1, batch[0]: 2, batch[1]: 3}
    # kombu's own lists: the interactive message sits in the list workers drain first
    client = api.app.state.jobs.redis  # type: ignore[attr-defined]
    lengths = [int(client.llen(name)) for name in priority_lists("sfx")]
    assert lengths == [0, 1, 2, 0], lengths
    bad = api.post("/v1/jobs", params={"lane": "bulk"}, json=SFX)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "lane"


def test_batch_files_submitted_through_the_api_take_the_batch_lane(api: TestClient) -> None:
    from gen_server.celery_config import PRIORITY_SEP

    jsonl = b'{"name": "a", "kind": "sfx", "prompt": "door", "duration_s": 1}\n'
    r = api.post("/v1/batches", files={"file": ("b.jsonl", jsonl, "application/x-ndjson")})
    assert r.status_code in (201, 202), r.text
    client = api.app.state.jobs.redis  # type: ignore[attr-defined]
    assert int(client.llen(f"sfx{PRIORITY_SEP}6")) == 1 and int(client.llen(f"sfx{PRIORITY_SEP}3")) == 0


def test_eta_of_a_queued_job_counts_the_jobs_ahead_shared_by_live_workers(api: TestClient) -> None:
    ids = [api.post("/v1/jobs", json=SFX).json()["id"] for _ in range(3)]
    assert api.get(f"/v1/jobs/{ids[2]}").json()["eta_s"] is None  # nothing measured yet
    client: redis.Redis = api.app.state.jobs.redis  # type: ignore[attr-defined]
    speed = SpeedRecords(client)
    # a worker finished a 2 s clip in 3 s alone, then one in 4 s within a batch of 2: the means move
    speed.observe(
        _spec(model="dev-audiogen-tiny", duration_s=2.0), generation_s=3.0, batch_size=1, audio_s=2.0
    )
    fields = client.hgetall(keys.SPEED)
    assert float(fields["model:dev-audiogen-tiny:wall_per_audio_s"]) == pytest.approx(1.5)
    speed.observe(_spec(duration_s=2.0), generation_s=4.0, batch_size=2, audio_s=2.0)
    fields = client.hgetall(keys.SPEED)
    wall = 1.5 + 0.3 * (2.0 - 1.5)
    busy = 3.0 + 0.3 * (2.0 - 3.0)
    assert float(fields["model:dev-audiogen-tiny:wall_per_audio_s"]) == pytest.approx(wall)
    assert float(fields["queue:sfx:busy_s"]) == pytest.approx(busy)
    # no live worker: the wait is counted as if one served the queue; two live ones halve it
    view = api.get(f"/v1/jobs/{ids[2]}").json()
    assert view["queue_position"] == 3
    assert view["eta_s"] == pytest.approx(round(2 * busy + 2.0 * wall, 1))
    now = time.time()
    for worker in ("w1", "w2"):
        client.hset(keys.WORKERS, worker, json.dumps({"queues": "sfx,music", "seen_at": now}))
    client.hset(keys.WORKERS, "stale", json.dumps({"queues": "sfx", "seen_at": now - 600}))
    assert api.get(f"/v1/jobs/{ids[2]}").json()["eta_s"] == pytest.approx(round(busy + 2.0 * wall, 1))
    assert api.get(f"/v1/jobs/{ids[0]}").json()["eta_s"] == pytest.approx(round(2.0 * wall, 1))


def test_eta_of_a_running_job_follows_its_progress() -> None:
    spec = _spec()
    speed = {"model:dev-audiogen-tiny:wall_per_audio_s": "2.0"}
    kwargs = {"position": None, "speed": speed, "workers": {}, "now": 110.0}
    assert eta_s(spec, "running", progress=0.25, started_at=100.0, **kwargs) == 30.0  # 10 s for a quarter
    assert eta_s(spec, "running", progress=0.0, started_at=105.0, **kwargs) == 3.0  # 4 s x 2.0 - 5 s so far
    assert eta_s(spec, "running", progress=0.0, started_at=105.0, **{**kwargs, "speed": {}}) is None
    assert eta_s(spec, "succeeded", progress=1.0, started_at=100.0, **kwargs) is None


def test_speech_length_is_estimated_from_the_text() -> None:
    speech = _spec(kind="speech", model="piper-en", prompt="x" * 150, duration_s=None)
    assert audio_seconds(speech) == pytest.approx(10.0)
    assert audio_seconds(_spec(duration_s=7.5)) == 7.5
    assert (
        live_workers({"a": "not json", "b": json.dumps({"queues": "speech", "seen_at": 0})}, "speech", 30.0)
        == 1
    )
