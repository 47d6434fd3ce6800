"""API keys: hashed storage, bearer auth, isolation between keys, rate limit and job quota."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from gen_server.auth import KeyStore, keys_path
from gen_server.cli import main as cli_main
from gen_server.main import create_app
from gen_server.redis_server import EmbeddedRedis
from gen_server.settings import Settings


@pytest.fixture
def keys(data_dir: Path) -> KeyStore:
    return KeyStore(keys_path(data_dir))


@pytest.fixture
def api(redis_server: EmbeddedRedis, data_dir: Path, keys: KeyStore) -> Iterator[TestClient]:
    redis.Redis.from_url(redis_server.url).flushall()
    keys.create("bootstrap-admin", admin=True)
    settings = Settings(data_dir=data_dir, dev_models=True)
    with TestClient(create_app(settings, redis_url=redis_server.url, ui=False)) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_are_stored_hashed(keys: KeyStore) -> None:
    secret, record = keys.create("alice")
    stored = keys.path.read_text()
    assert secret not in stored
    assert record.digest in stored
    assert keys.verify(secret).name == "alice"
    assert oct(keys.path.stat().st_mode & 0o777) == "0o600"


def test_cli_creates_key(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gen_server.settings import get_settings

    monkeypatch.setenv("SOUNDRY_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    try:
        assert cli_main(["keys", "create", "--name", "ci-app"]) == 0
    finally:
        get_settings.cache_clear()
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert secret.startswith("sk-soundry-")
    assert json.loads(keys_path(data_dir).read_text())[0]["name"] == "ci-app"


def test_requests_need_a_valid_key(api: TestClient) -> None:
    r = api.get("/v1/jobs")
    assert r.status_code == 401 and r.json()["error"]["field"] == "authorization"
    assert api.get("/v1/jobs", headers=bearer("sk-soundry-wrong")).status_code == 401
    assert api.get("/healthz").status_code == 200


def test_a_key_sees_only_its_own_jobs(api: TestClient, keys: KeyStore) -> None:
    alice, _ = keys.create("alice")
    bob, _ = keys.create("bob")
    admin, _ = keys.create("ops", admin=True)
    job = api.post("/v1/jobs", json={"kind": "speech", "text": "private"}, headers=bearer(alice)).json()
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(alice)).status_code == 200
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(bob)).status_code == 404
    assert api.delete(f"/v1/jobs/{job['id']}", headers=bearer(bob)).status_code == 404
    assert api.get(f"/v1/jobs/{job['id']}/audio", headers=bearer(bob)).status_code == 404
    assert api.get("/v1/jobs", headers=bearer(bob)).json() == []
    assert [j["id"] for j in api.get("/v1/jobs", headers=bearer(admin)).json()] == [job["id"]]


def test_rate_limit_gives_429_with_retry_after(
    api: TestClient, keys: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    from gen_server import deps

    # The limit counts per clock minute: a minute boundary inside the burst (likelier the slower the
    # machine) would reset the count. The limiter's clock is frozen 30 s into a minute instead.
    monkeypatch.setattr(deps, "time", types.SimpleNamespace(time=lambda: 1_700_000_010.0))
    key, _ = keys.create("tiny", rate_per_min=3)
    codes = [api.get("/v1/models", headers=bearer(key)).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    r = api.get("/v1/models", headers=bearer(key))
    assert int(r.headers["Retry-After"]) == 30
    assert r.json()["error"]["code"] == "rate_limited"


def test_concurrent_job_quota(api: TestClient, keys: KeyStore) -> None:
    key, _ = keys.create("small", max_concurrent_jobs=2)
    body = {"kind": "speech", "text": "queued"}
    first = [api.post("/v1/jobs", json=body, headers=bearer(key)) for _ in range(2)]
    assert [r.status_code for r in first] == [202, 202]
    third = api.post("/v1/jobs", json=body, headers=bearer(key))
    assert third.status_code == 429 and "Retry-After" in third.headers
    api.delete(f"/v1/jobs/{first[0].json()['id']}", headers=bearer(key))
    assert api.post("/v1/jobs", json=body, headers=bearer(key)).status_code == 202


def test_serve_refuses_public_bind_without_keys(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers import server_env

    env = server_env(tmp_path / "d", 8999, SOUNDRY_HOST="0.0.0.0")
    out = subprocess.run(
        [sys.executable, "-m", "gen_server.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert "without API keys" in out.stderr
