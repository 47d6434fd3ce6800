"""Two hosts share one bucket: the API on host A, a worker on host B, each with its own data folder.

A real ``soundry serve --no-worker`` (embedded Redis + API) and a real worker process on another data
folder, both with ``SOUNDRY_STORAGE_URL=s3://BUCKET/soundry`` against an S3-compatible HTTP server
(moto's, on loopback; endpoint from ``AWS_ENDPOINT_URL``). Nothing is shared but Redis and the bucket.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gen_server.client import ApiError, SoundryClient
from gen_server.redis_server import embedded_url
from gen_server.s3store import S3Store
from tests.helpers import (
    ROOT,
    S3_ENV,
    bucket_keys,
    new_bucket,
    read_wav,
    running_server,
    server_env,
    stop_group,
)

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def running_worker(data_dir: Path, redis_url: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """One ``python -m workers`` process on its own data folder (another "host"), speech queue only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "worker.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers", "--queues", "speech", "--name", "host-b@test"],
            env=server_env(data_dir, 0, SOUNDRY_REDIS_URL=redis_url, **env),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop_group(proc, signal.SIGTERM, timeout_s=20)


def soundry_status(data_dir: Path, **env: str) -> str:
    """``soundry status`` on a host with ``data_dir`` (its embedded Redis) and ``env``."""
    run = subprocess.run(
        [sys.executable, "-m", "gen_server.cli", "status"],
        env=server_env(data_dir, 0, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return run.stdout


def local_files(data_dir: Path) -> list[Path]:
    """Artifact files a host wrote to its own data folder (none when the bucket holds them)."""
    folder = data_dir / "artifacts"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_api_and_worker_on_two_hosts_share_the_bucket(tmp_path: Path, s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint, "SOUNDRY_STORAGE_URL": f"s3://{bucket}/soundry"}
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    with running_server(host_a, "--no-worker", "--no-ui", **env) as url:
        redis_url = embedded_url(host_a / "redis")
        assert redis_url is not None
        client = SoundryClient(url, timeout_s=60)
        with running_worker(host_b, redis_url, **env), contextlib.closing(client):
            # includes host B's worker start-up
            job, data = client.generate({"kind": "speech", "text": "Stored in a bucket.", "seed": 5}, 300)
            job_id = job.id
            assert job.result is not None
            assert job.result.artifact == f"jobs/{job_id}/audio.wav"
            keys = bucket_keys(s3_endpoint, bucket)
            assert {f"soundry/jobs/{job_id}/audio.wav", f"soundry/jobs/{job_id}/manifest.json"} <= set(keys)
            assert local_files(host_a) == [] and local_files(host_b) == []
            assert hashlib.sha256(data).hexdigest() == job.result.sha256
            samples, rate = read_wav(data)
            assert rate == 22050 and samples.shape[0] > rate // 2

            mp3 = client.audio(job_id, "mp3")
            assert mp3[:3] == b"ID3" or mp3[:2] in (b"\xff\xfb", b"\xff\xf3")
            part = httpx.get(f"{url}/v1/jobs/{job_id}/audio", headers={"Range": "bytes=100-199"}, timeout=30)
            assert part.status_code == 206 and part.content == data[100:200]
            assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"

            status = soundry_status(host_a, **env)
            assert f"storage: s3://{bucket}/soundry" in status and "workers: 1" in status, status
            assert ": queues speech, " in status and "not this host's" not in status, status
            local = soundry_status(host_a, **{k: v for k, v in env.items() if k != "SOUNDRY_STORAGE_URL"})
            assert f"storage s3://{bucket}/soundry (not this host's file://" in local, local

            upload = client.upload(data, "reference.wav").id
            assert f"soundry/uploads/{upload}" in bucket_keys(s3_endpoint, bucket)

            store = S3Store(bucket, "soundry", endpoint_url=s3_endpoint)
            assert store.sweep(older_than_s=3600, now=time.time() + 3605) == 2  # the job folder, the upload
            left = bucket_keys(s3_endpoint, bucket)
            assert all(key.startswith("soundry/watermarks/") for key in left), left
            with pytest.raises(ApiError) as gone:
                client.audio(job_id)
            assert gone.value.status == 404
