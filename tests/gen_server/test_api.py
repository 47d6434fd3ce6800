"""API routes against a real Redis (no worker: jobs stay queued)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from gen_server.contract.result import JobResult
from gen_server.deps import LOCAL
from gen_server.main import create_app
from gen_server.redis_server import EmbeddedRedis
from gen_server.settings import Settings

FAKE_RESULT = JobResult(
    job_id="-",
    artifact="jobs/-/audio.wav",
    manifest="jobs/-/manifest.json",
    format="wav",
    sample_rate=22050,
    channels=1,
    duration_s=1.0,
    seed=1,
    model="dev-audiogen-tiny",
    sha256="0" * 64,
)


def test_api_never_imports_torch_or_model_libraries() -> None:
    code = (
        "import sys, gen_server.main, gen_server.cli, gen_server.client, ui.app\n"
        "heavy = ('torch', 'audiocraft', 'TTS', 'piper', 'workers', 'transformers')\n"
        "bad = [m for m in heavy if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_submit_returns_202_and_job_is_queued(api: TestClient) -> None:
    r = api.post("/v1/jobs", json={"kind": "music", "prompt": "calm piano", "duration_s": 2, "seed": 5})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] == "queued"
    assert job["model"] == "dev-musicgen-tiny"
    assert job["spec"]["seed"] == 5
    got = api.get(f"/v1/jobs/{job['id']}").json()
    assert got["id"] == job["id"] and got["state"] == "queued"
    assert [j["id"] for j in api.get("/v1/jobs", params={"kind": "music"}).json()] == [job["id"]]
    assert api.get("/v1/jobs", params={"kind": "speech"}).json() == []


def test_seed_is_drawn_when_omitted(api: TestClient) -> None:
    job = api.post("/v1/jobs", json={"kind": "speech", "text": "hi"}).json()
    assert isinstance(job["spec"]["seed"], int)


def test_cancel_queued_job(api: TestClient) -> None:
    job = api.post("/v1/jobs", json={"kind": "sfx", "prompt": "rain", "duration_s": 1}).json()
    r = api.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 200
    assert r.json()["state"] == "cancelled"


def test_idempotency_key_returns_same_job(api: TestClient) -> None:
    body = {"kind": "speech", "text": "once only"}
    a = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc"}).json()
    b = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "abc"}).json()
    assert a["id"] == b["id"]


def test_unknown_job_is_404_in_error_shape(api: TestClient) -> None:
    r = api.get("/v1/jobs/doesnotexist")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_audio_of_unfinished_job_is_409(api: TestClient) -> None:
    job = api.post("/v1/jobs", json={"kind": "speech", "text": "wait"}).json()
    r = api.get(f"/v1/jobs/{job['id']}/audio")
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "job_id"


def test_commercial_only_server_withholds_non_commercial_models(
    redis_server: EmbeddedRedis, data_dir: Path
) -> None:
    """SOUNDRY_LICENCES=commercial: the catalog lists, and jobs and batch files may use, only models
    whose outputs may be used commercially; naming another is refused with its licence."""
    redis.Redis.from_url(redis_server.url).flushall()
    settings = Settings(data_dir=data_dir, dev_models=True, licences="commercial")
    with TestClient(create_app(settings, redis_url=redis_server.url, ui=False)) as api:
        listed = {m["id"]: m for m in api.get("/v1/models").json()["data"]}
        assert "musicgen-small" not in listed and "xtts-v2" not in listed
        assert {m["commercial_use"] for m in listed.values()} <= {"allowed", "conditional"}
        stable = listed["stable-audio-open-1.0"]  # conditional (revenue below USD 1M): offered
        assert stable["commercial_use"] == "conditional" and "USD 1M" in stable["commercial_condition"]
        body = {"kind": "sfx", "model": "stable-audio-open-1.0", "prompt": "rain", "duration_s": 2}
        r = api.post("/v1/jobs", json=body)
        assert r.status_code == 202 and "Stability AI Community License" in r.json()["spec"]["licence"]
        r = api.post("/v1/jobs", json={"kind": "music", "model": "musicgen-small", "prompt": "x"})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["field"] == "model" and "CC-BY-NC-4.0" in err["message"]
        assert "SOUNDRY_LICENCES" in err["message"]
        line = b'{"kind": "sfx", "model": "audiogen-medium", "prompt": "x"}\n'
        r = api.post("/v1/batches", files={"file": ("b.jsonl", line)})
        assert r.status_code == 422 and "commercially" in r.text, r.text
        r = api.post("/v1/jobs", json={"kind": "music", "prompt": "x"})  # default: the dev model
        assert r.status_code == 202 and r.json()["model"] == "dev-musicgen-tiny"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "music", "prompt": "x", "duration_s": "long"}, "duration_s"),
        ({"kind": "music", "prompt": "x", "duration_s": 0}, "duration_s"),
        ({"kind": "music", "prompt": "x", "duration_s": 301}, "duration_s"),
        ({"kind": "music", "prompt": "", "duration_s": 2}, "prompt"),
        ({"kind": "music", "prompt": "x" * 5000}, "prompt"),
        ({"kind": "speech", "text": "a\x00b"}, "text"),
        ({"kind": "speech", "text": "hi", "duration_s": 3}, "duration_s"),
        ({"kind": "speech", "text": "hi", "voice": "nobody"}, "voice"),
        ({"kind": "speech", "model": "dev-vits-tiny", "text": "hi", "voice": "carol"}, "voice"),
        ({"kind": "music", "model": "dev-audiogen-tiny", "prompt": "x"}, "model"),
        ({"kind": "music", "prompt": "x", "melody_upload": "abc"}, "melody_upload"),
        ({"kind": "music", "prompt": "x", "sampling": {"temperature": -1}}, "sampling.temperature"),
        ({"kind": "music", "prompt": "x", "sampling": {"steps": 10}}, "sampling.steps"),
        (
            {"kind": "sfx", "model": "dev-stable-audio-tiny", "prompt": "x", "sampling": {"top_k": 5}},
            "sampling.top_k",
        ),
        ({"kind": "music", "prompt": "x", "seed": -4}, "seed"),
        ({"kind": "music", "prompt": "x", "format": "aiff"}, "format"),
        ({"kind": "music", "prompt": "x", "post": {"target_lufs": 10}}, "post.target_lufs"),
        ({"kind": "music", "prompt": "x", "colour": "blue"}, "colour"),
        ({"prompt": "x"}, "kind"),
    ],
)
def test_bad_input_is_422_naming_the_field(api: TestClient, body: dict, field: str) -> None:
    r = api.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == field, err
    assert err["message"]


def test_models_list_shows_licences(api: TestClient) -> None:
    data = api.get("/v1/models").json()["data"]
    by_id = {m["id"]: m for m in data}
    assert by_id["musicgen-small"]["licence"] == "CC-BY-NC-4.0"
    assert by_id["musicgen-small"]["commercial_use"] == "not_allowed"
    vctk = by_id["vits-vctk"]
    assert vctk["commercial_use"] == "conditional" and "VCTK" in vctk["commercial_condition"]
    assert by_id["piper-en_US-joe-medium"]["commercial_use"] == "allowed"
    assert "CPML" in by_id["xtts-v2"]["licence"]
    assert "GPL-3.0" in by_id["piper-en_US-joe-medium"]["licence"]
    assert "dev-musicgen-tiny" in by_id
    r = api.get("/v1/models/nope")
    assert r.status_code == 422 and "musicgen-small" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/x",
        "http://192.168.0.5/x",
        "ftp://example.com/x",
        "http://[::1]/x",
        "not a url",
    ],
)
def test_private_or_bad_webhook_urls_are_refused(api: TestClient, url: str) -> None:
    r = api.post("/v1/jobs", json={"kind": "speech", "text": "hi", "callback_url": url})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "callback_url"


def test_queue_position_counts_from_the_next_job_out(api: TestClient) -> None:
    body = {"kind": "sfx", "prompt": "p", "duration_s": 1}
    ids = [api.post("/v1/jobs", json=body).json()["id"] for _ in range(3)]
    assert [api.get(f"/v1/jobs/{i}").json()["queue_position"] for i in ids] == [1, 2, 3]


def test_job_lookup_is_one_redis_round_trip_and_the_record_is_the_one_truth(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``JobService.get`` costs one round trip (record, position, webhook attempts, speeds in one
    pipeline; the position script goes as EVAL, so redis-py asks no SCRIPT EXISTS first), queued or
    finished; cancelling a queued job ends it at once and for good."""
    import redis

    service = api.app.state.jobs  # type: ignore[attr-defined]
    ids = [
        api.post("/v1/jobs", json={"kind": "sfx", "prompt": "p", "duration_s": 1}).json()["id"]
        for _ in range(2)
    ]
    sent: list[int] = []
    real = redis.connection.Connection.send_packed_command

    def counting(self: redis.connection.Connection, command: object, check_health: bool = True) -> None:
        sent.append(1)
        real(self, command, check_health)  # type: ignore[arg-type]

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    view = service.get(ids[1], LOCAL)
    assert view.state == "queued" and view.queue_position == 2
    assert len(sent) == 1, f"{len(sent)} round trips"
    monkeypatch.undo()

    assert service.cancel(ids[0], LOCAL).state == "cancelled"
    assert service.get(ids[1], LOCAL).queue_position == 1  # the cancelled job left the queue's order
    assert not service.records.succeed(ids[0], FAKE_RESULT.model_copy(update={"job_id": ids[0]}))
    assert service.get(ids[0], LOCAL).state == "cancelled"  # a late worker never overwrites a final state
    sent.clear()
    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    assert service.get(ids[0], LOCAL).error.code == "cancelled"
    assert len(sent) == 1, f"{len(sent)} round trips"


def test_audio_download_honours_byte_ranges(api: TestClient) -> None:
    """A finished job's file (written as a worker would) served whole, by range, and 416 outside it."""
    from gen_server.contract.result import JobResult

    job = api.post("/v1/jobs", json={"kind": "speech", "text": "range"}).json()
    service = api.app.state.jobs  # type: ignore[attr-defined]
    data = bytes(range(256)) * 40
    key = f"jobs/{job['id']}/audio.wav"
    service.store.put(key, data)
    result = JobResult(
        job_id=job["id"],
        artifact=key,
        manifest=f"jobs/{job['id']}/manifest.json",
        format="wav",
        sample_rate=22050,
        channels=1,
        duration_s=1.0,
        seed=1,
        model=job["model"],
        sha256="0" * 64,
    )
    service.records.succeed(job["id"], result)  # as a worker records it
    whole = api.get(f"/v1/jobs/{job['id']}/audio")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    part = api.get(f"/v1/jobs/{job['id']}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = api.get(f"/v1/jobs/{job['id']}/audio", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    beyond = api.get(f"/v1/jobs/{job['id']}/audio", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.json()["error"]["field"] == "range"
