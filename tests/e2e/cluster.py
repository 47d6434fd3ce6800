"""A small real deployment for fault tests: Redis, N worker processes, the API in-process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi.testclient import TestClient

from gen_server.main import create_app
from gen_server.redis_server import EmbeddedRedis, free_port
from gen_server.settings import Settings
from tests.helpers import ROOT, server_env

MUSIC_FRAME_RATE_HZ = 50
"""Decoding steps per second of audio of the tiny MusicGen (32 kHz EnCodec, hop 640, like the real one)."""


class Cluster:
    """Everything a user's single-host deployment runs, each part killable on its own.

    ``dev_step_ms`` (``SOUNDRY_DEV_STEP_MS``, a dev-preset test aid) gives every decoding step of the
    tiny music/sfx models a minimum length, so a test that needs a job to outlast something sizes it
    with :meth:`paced_music_s` instead of guessing how fast this machine decodes.
    """

    def __init__(self, root: Path, visibility_timeout_s: int = 6, dev_step_ms: float = 0.0) -> None:
        self.root = root
        self.dev_step_ms = dev_step_ms
        self.data_dir = root / "data"
        self.redis = EmbeddedRedis(root / "redis").start()
        self.visibility_timeout_s = visibility_timeout_s
        self.env = server_env(
            self.data_dir,
            0,
            SOUNDRY_REDIS_URL=self.redis.url,
            SOUNDRY_VISIBILITY_TIMEOUT_S=str(visibility_timeout_s),
            SOUNDRY_DEV_STEP_MS=str(dev_step_ms),
        )
        settings = Settings(
            data_dir=self.data_dir,
            dev_models=True,
            redis_url=self.redis.url,
            visibility_timeout_s=visibility_timeout_s,
        )
        self.app = create_app(settings, redis_url=self.redis.url, ui=False)
        self.api = TestClient(self.app)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None

    def http_url(self, timeout_s: float = 30) -> str:
        """The same API served over real HTTP (uvicorn in a thread), for clients that read as it streams."""
        if self._http is None:
            port = free_port()
            config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
            self._http = uvicorn.Server(config)
            self._http_thread = threading.Thread(target=self._http.run, name="cluster-http", daemon=True)
            self._http_thread.start()
            deadline = time.monotonic() + timeout_s
            while not self._http.started:
                assert time.monotonic() < deadline, f"uvicorn did not start in {timeout_s} s"
                time.sleep(0.05)
        return f"http://127.0.0.1:{self._http.config.port}"

    def paced_music_s(self, at_least_s: float) -> float:
        """A tiny-MusicGen clip length (seconds) whose decoding lasts at least ``at_least_s`` on any CPU."""
        if not self.dev_step_ms:
            raise ValueError("paced clips need a Cluster(dev_step_ms=...)")
        return at_least_s / (self.dev_step_ms / 1000) / MUSIC_FRAME_RATE_HZ

    def start_worker(self, name: str, queues: str = "speech,sfx,music") -> subprocess.Popen[bytes]:
        log = (self.root / f"worker-{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers", "--queues", queues, "--name", f"{name}@test"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers[name] = proc
        return proc

    def kill_worker(self, name: str) -> None:
        proc = self.workers.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def submit(self, body: dict[str, Any]) -> str:
        r = self.api.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.api.get(f"/v1/jobs/{job_id}").json())

    def wait_for(
        self, job_id: str, done: Callable[[dict[str, Any]], bool], timeout_s: float, poll_s: float = 0.1
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if done(job):
                return job
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-3000:] for p in self.root.glob("worker-*.log"))
                raise AssertionError(f"job {job_id} stuck in {job['state']} after {timeout_s} s\n{logs}")
            time.sleep(poll_s)

    def wait_ended(self, job_id: str, timeout_s: float = 300, poll_s: float = 0.1) -> dict[str, Any]:
        return self.wait_for(
            job_id, lambda j: j["state"] in ("succeeded", "failed", "cancelled"), timeout_s, poll_s
        )

    def artifacts(self, job_id: str) -> list[str]:
        folder = self.data_dir / "artifacts" / "jobs" / job_id
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    def close(self) -> None:
        for name in list(self.workers):
            self.kill_worker(name)
        if self._http is not None and self._http_thread is not None:
            self._http.should_exit = True
            self._http_thread.join(timeout=10)
        self.api.close()
        self.redis.stop()
