"""/v1/batches against a real Redis (no worker: jobs stay queued unless a test finishes them)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import redis
from fastapi.testclient import TestClient

from gen_server.auth import KeyStore, keys_path
from gen_server.contract.result import JobResult
from gen_server.jobs import Caller, JobService
from gen_server.main import create_app
from gen_server.redis_server import EmbeddedRedis
from gen_server.settings import Settings
from gen_server.storage import audio_key, manifest_key

ROOT = Path(__file__).resolve().parents[2]

BATCH = b"""\
name: api-pack
defaults: {kind: sfx, duration_s: 1}
items:
  - name: door
    prompt: a door creaks
    n: 2
  - name: rain
    prompt: rain on a roof
"""


def post(api: TestClient, data: bytes, name: str = "pack.yaml", **kw: Any) -> Any:
    return api.post("/v1/batches", files={"file": (name, data, "application/octet-stream")}, **kw)


def service(api: TestClient) -> JobService:
    svc: JobService = api.app.state.jobs  # type: ignore[attr-defined]
    return svc


def finish(api: TestClient, job_id: str, data: bytes) -> None:
    """Play the worker: store the artifact and a SUCCESS result for ``job_id``."""
    svc = service(api)
    spec = svc.get(job_id, Caller(admin=True)).spec
    svc.store.put(audio_key(job_id, "wav"), data)
    result = JobResult(
        job_id=job_id,
        artifact=audio_key(job_id, "wav"),
        manifest=manifest_key(job_id),
        format="wav",
        sample_rate=16000,
        channels=1,
        duration_s=1.0,
        seed=spec.seed,
        model=spec.model,
        sha256=hashlib.sha256(data).hexdigest(),
        watermark_payload="12345678",
    )
    svc.records.succeed(job_id, result)  # as a worker records it


def test_submit_queues_every_variation_with_its_seed(api: TestClient) -> None:
    r = post(api, BATCH)
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["name"] == "api-pack" and batch["source"] == "pack.yaml"
    assert batch["state"] == "running" and batch["total"] == 3
    assert batch["counts"]["queued"] == 3
    assert [(i["name"], i["variation"], i["line"]) for i in batch["items"]] == [
        ("door", 1, 4),
        ("door", 2, 4),
        ("rain", 1, 7),
    ]
    jobs = {j["id"]: j for j in api.get("/v1/jobs").json()}
    for item in batch["items"]:
        assert jobs[item["job_id"]]["spec"]["seed"] == item["seed"]
    got = api.get(f"/v1/batches/{batch['id']}").json()
    assert got["items"] == batch["items"]
    assert [b["id"] for b in api.get("/v1/batches").json()] == [batch["id"]]


def test_invalid_file_is_422_with_every_error_and_queues_nothing(api: TestClient) -> None:
    data = (ROOT / "prompts" / "invalid_example.yaml").read_bytes()
    r = post(api, data, "invalid_example.yaml")
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["code"] == "invalid_batch" and body["error"]["field"] == "file"
    assert [e["line"] for e in body["errors"]] == [14, 17, 20, 23, 24, 29, 32]
    assert all(e["file"] == "invalid_example.yaml" for e in body["errors"])
    assert api.get("/v1/jobs").json() == []
    assert api.get("/v1/batches").json() == []


def test_format_from_query_and_unknown_type(api: TestClient) -> None:
    line = b'{"kind": "sfx", "prompt": "a", "duration_s": 1}\n'
    assert post(api, line, "upload.txt").status_code == 422
    assert post(api, line, "upload.txt", params={"format": "jsonl"}).status_code == 202


def test_missing_upload_is_reported_by_line(api: TestClient) -> None:
    data = b"items:\n  - {kind: music, model: dev-musicgen-melody-tiny, prompt: a, melody_upload: nope}\n"
    r = post(api, data)
    assert r.status_code == 422
    assert [(e["line"], e["field"]) for e in r.json()["errors"]] == [(2, "melody_upload")]


def test_same_file_twice_reattaches_to_the_same_jobs(api: TestClient) -> None:
    first = post(api, BATCH).json()
    second = post(api, BATCH).json()
    assert first["id"] != second["id"]
    assert [i["job_id"] for i in first["items"]] == [i["job_id"] for i in second["items"]]
    assert len(api.get("/v1/jobs").json()) == 3


def test_cancel_batch(api: TestClient) -> None:
    batch = post(api, BATCH).json()
    r = api.delete(f"/v1/batches/{batch['id']}")
    assert r.status_code == 200
    assert r.json()["state"] == "cancelled" and r.json()["counts"]["cancelled"] == 3


def test_archive_has_finished_files_and_manifest(api: TestClient) -> None:
    batch = post(api, BATCH).json()
    assert api.get(f"/v1/batches/{batch['id']}/archive").status_code == 409
    items = batch["items"]
    finish(api, items[0]["job_id"], b"RIFF door one")
    finish(api, items[2]["job_id"], b"RIFF rain")
    status = api.get(f"/v1/batches/{batch['id']}").json()
    assert status["counts"]["succeeded"] == 2 and status["state"] == "running"
    r = api.get(f"/v1/batches/{batch['id']}/archive")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = sorted(zf.namelist())
        assert names == [
            "api-pack/001_door_v1.wav",
            "api-pack/002_rain_v1.wav",
            "api-pack/manifest.jsonl",
            "api-pack/summary.json",
        ]
        entries = [json.loads(line) for line in zf.read("api-pack/manifest.jsonl").decode().splitlines()]
        for entry in entries:
            data = zf.read(f"api-pack/{entry['file']}")
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert entry["watermark_payload"] == "12345678" and entry["job_id"]
        assert json.loads(zf.read("api-pack/summary.json"))["counts"]["queued"] == 1


def test_job_quota_feeds_the_batch_as_jobs_finish(redis_server: EmbeddedRedis, data_dir: Path) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    secret, _ = KeyStore(keys_path(data_dir)).create("studio", max_concurrent_jobs=2)
    settings = Settings(data_dir=data_dir, dev_models=True)
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(settings, redis_url=redis_server.url, ui=False)) as api:
        data = BATCH.replace(b"prompt: rain on a roof", b"prompt: rain on a roof\n    n: 3")
        batch = post(api, data, headers=headers).json()
        assert batch["counts"]["queued"] == 2 and batch["counts"]["pending"] == 3
        assert [i["job_id"] is not None for i in batch["items"]] == [True, True, False, False, False]
        finish(api, batch["items"][0]["job_id"], b"RIFF a")
        status = api.get(f"/v1/batches/{batch['id']}", headers=headers).json()
        assert status["counts"] == {
            "pending": 2,
            "queued": 2,
            "running": 0,
            "succeeded": 1,
            "failed": 0,
            "cancelled": 0,
        }
        assert api.get(f"/v1/batches/{batch['id']}").status_code == 401
