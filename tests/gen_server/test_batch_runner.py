"""The ``soundry batch`` runner against an in-memory stand-in for the HTTP API (no server, no models).

The stand-in answers like the API (job views, idempotency keys, 429s) so the runner's own logic is
tested fast: concurrency, files and manifest, resume, failures by line, Ctrl-C, rate limits. The real
server path is covered by tests/e2e/test_batch.py.
"""

from __future__ import annotations

import _thread
import hashlib
import io
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gen_server.batch.template import MANIFEST_NAME, SUMMARY_NAME
from gen_server.batch_runner import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, run_batch
from gen_server.client import ApiError, SoundryClient
from gen_server.contract.catalog import ModelEntry, build_catalog
from gen_server.contract.result import JobView
from gen_server.contract.spec import JobRequest, build_spec
from gen_server.settings import Settings

SETTINGS = Settings(dev_models=True)

BATCH = """\
name: test-pack
defaults: {kind: sfx, duration_s: 1}
items:
  - name: door
    prompt: a door creaks
    n: 2
  - name: rain
    prompt: rain on a roof
  - name: wind
    prompt: wind in trees
    seeds: [3, 4]
"""


class FakeApi:
    """Jobs finish after ``polls`` status reads; prompts in ``fail`` end failed."""

    base_url = "http://fake"

    def __init__(self, *, fail: tuple[str, ...] = (), polls: int = 1, rate_limited: int = 0) -> None:
        self.catalog = build_catalog(SETTINGS)
        self.fail = fail
        self.polls = polls
        self.rate_limited = rate_limited
        self.jobs: dict[str, dict[str, Any]] = {}
        self.reads: dict[str, int] = {}
        self.keys: dict[str, str] = {}
        self.submitted: list[dict[str, Any]] = []
        self.lanes: set[str] = set()
        self.on_get: Any = None
        self.lock = threading.Lock()

    def models(self) -> list[ModelEntry]:
        return list(self.catalog)

    def submit(
        self, request: dict[str, Any], *, idempotency_key: str | None = None, lane: str = "interactive"
    ) -> JobView:
        with self.lock:
            self.lanes.add(lane)
            if self.rate_limited:
                self.rate_limited -= 1
                raise ApiError(429, "rate_limited", "20 jobs already queued or running for this key")
            if idempotency_key and idempotency_key in self.keys:
                return JobView.model_validate(self.jobs[self.keys[idempotency_key]])
            job_id = uuid.uuid4().hex
            self.submitted.append(request)
            spec = build_spec(JobRequest.model_validate(request), self.catalog, job_id=job_id)
            self.jobs[job_id] = {
                "id": job_id,
                "state": "queued",
                "kind": spec.kind,
                "model": spec.model,
                "created_at": time.time(),
                "spec": spec.model_dump(mode="json"),
            }
            self.reads[job_id] = 0
            if idempotency_key:
                self.keys[idempotency_key] = job_id
            return JobView.model_validate(self.jobs[job_id])

    @staticmethod
    def audio_bytes(job: dict[str, Any]) -> bytes:
        return f"RIFF {job['spec']['prompt']} {job['spec']['seed']}".encode()

    def get(self, job_id: str) -> JobView:
        if self.on_get is not None:
            self.on_get(job_id)
        with self.lock:
            job = self.jobs[job_id]
            self.reads[job_id] += 1
            if job["state"] in ("queued", "running") and self.reads[job_id] >= self.polls:
                if job["spec"]["prompt"] in self.fail:
                    job.update(state="failed", error={"code": "generation_failed", "message": "boom"})
                else:
                    data = self.audio_bytes(job)
                    job.update(
                        state="succeeded",
                        result={
                            "job_id": job_id,
                            "artifact": f"jobs/{job_id}/audio.wav",
                            "manifest": f"jobs/{job_id}/manifest.json",
                            "seed": job["spec"]["seed"],
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "duration_s": 1.0,
                            "sample_rate": 16000,
                            "channels": 1,
                            "format": "wav",
                            "model": job["spec"]["model"],
                            "watermark_payload": "0badc0de",
                            "analysis": {"tempo_bpm": 120.0, "key": "A minor", "loudness_lufs": -16.0},
                        },
                    )
            elif job["state"] == "queued":
                job["state"] = "running"
            return JobView.model_validate(job)

    def audio(self, job_id: str) -> bytes:
        return self.audio_bytes(self.jobs[job_id])

    def cancel(self, job_id: str) -> JobView:
        self.jobs[job_id]["state"] = "cancelled"
        return JobView.model_validate(self.jobs[job_id])

    def close(self) -> None:
        pass


def run(api: FakeApi, batch_file: Path, out: Path, **kwargs: Any) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()

    def factory(url: str, key: str | None) -> SoundryClient:
        return api  # type: ignore[return-value]

    code = run_batch(
        batch_file,
        settings=SETTINGS,
        out_dir=out,
        out=stdout,
        err=stderr,
        client_factory=factory,
        poll_s=0.01,
        **kwargs,
    )
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def batch_file(tmp_path: Path) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(BATCH)
    return path


def manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]


def test_run_writes_files_manifest_and_summary(batch_file: Path, tmp_path: Path) -> None:
    api, out = FakeApi(polls=2), tmp_path / "out"
    code, stdout, stderr = run(api, batch_file, out, concurrency=3)
    assert code == EXIT_OK, stdout + stderr
    assert api.lanes == {"batch"}  # batch-file jobs wait behind interactive ones
    entries = manifest(out)
    assert [e["file"] for e in entries] == [
        "001_door_v1.wav",
        "001_door_v2.wav",
        "002_rain_v1.wav",
        "003_wind_v1.wav",
        "003_wind_v2.wav",
    ]
    for entry in entries:
        data = (out / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["watermark_payload"] == "0badc0de" and entry["job_id"] in api.jobs
        assert entry["spec"]["seed"] == entry["seed"] == entry["request"]["seed"]
        assert entry["analysis"]["key"] == "A minor" and "loop" not in entry  # what the result holds
    assert [e["seed"] for e in entries if e["name"] == "wind"] == [3, 4]
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["counts"] == {"generated": 5, "skipped": 0, "failed": 0, "not_run": 0, "abandoned": 0}
    assert "5 generated, 0 skipped, 0 failed" in stdout
    assert "[5/5]" in stderr and "done" in stderr
    assert not list(out.glob(".tmp-*"))


def test_second_run_skips_everything_and_changes_regenerate_only_what_changed(
    batch_file: Path, tmp_path: Path
) -> None:
    api, out = FakeApi(), tmp_path / "out"
    assert run(api, batch_file, out)[0] == EXIT_OK
    assert len(api.submitted) == 5
    code, stdout, _ = run(api, batch_file, out)
    assert code == EXIT_OK and "0 generated, 5 skipped" in stdout
    assert len(api.submitted) == 5

    batch_file.write_text(BATCH.replace("rain on a roof", "rain on a tin roof"))
    (out / "003_wind_v2.wav").unlink()
    (out / "001_door_v1.wav").write_bytes(b"tampered")
    code, stdout, _ = run(api, batch_file, out)
    assert code == EXIT_OK and "3 generated, 2 skipped" in stdout
    # the deleted and the tampered takes re-attach to their jobs by idempotency key: one new job only
    assert [r["prompt"] for r in api.submitted[5:]] == ["rain on a tin roof"]
    entries = manifest(out)
    assert len(entries) == 5
    assert all(hashlib.sha256((out / e["file"]).read_bytes()).hexdigest() == e["sha256"] for e in entries)


def test_failures_are_listed_by_line_and_exit_nonzero(batch_file: Path, tmp_path: Path) -> None:
    api, out = FakeApi(fail=("rain on a roof",)), tmp_path / "out"
    code, stdout, stderr = run(api, batch_file, out)
    assert code == EXIT_FAILED
    assert f"{batch_file}:7: rain v1" in stdout and "generation_failed: boom" in stdout
    assert "FAILED rain v1" in stderr
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["counts"]["failed"] == 1 and summary["failures"][0]["line"] == 7
    assert [e["name"] for e in manifest(out)] == ["door", "door", "wind", "wind"]
    # a re-run retries the failed item with a fresh job (its idempotent job had failed)
    api.fail = ()
    code, stdout, _ = run(api, batch_file, out)
    assert code == EXIT_OK and "1 generated, 4 skipped" in stdout


def test_invalid_file_submits_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("defaults: {kind: sfx}\nitems:\n  - prompt: a\n    duration_s: -1\n  - promt: b\n")
    api = FakeApi()
    code, _, stderr = run(api, path, tmp_path / "out")
    assert code == EXIT_INVALID
    assert f"{path}:4:5: duration_s:" in stderr and f"{path}:5:5: promt:" in stderr
    assert "nothing was submitted" in stderr
    assert api.submitted == [] and not (tmp_path / "out").exists()


def test_validate_only_submits_nothing(batch_file: Path, tmp_path: Path) -> None:
    api = FakeApi()
    code, stdout, _ = run(api, batch_file, tmp_path / "out", validate_only=True)
    assert code == EXIT_OK and "3 items, 5 files" in stdout and api.submitted == []


def test_rate_limits_are_waited_out(
    batch_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gen_server.batch_runner as runner

    monkeypatch.setattr(runner, "RETRY_AFTER_S", 0.05)
    api, out = FakeApi(rate_limited=3), tmp_path / "out"
    code, stdout, _ = run(api, batch_file, out, concurrency=2)
    assert code == EXIT_OK, stdout
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["throttled"] == 3 and summary["counts"]["generated"] == 5


def test_ctrl_c_stops_submitting_finishes_running_and_resumes(batch_file: Path, tmp_path: Path) -> None:
    api, out = FakeApi(polls=3), tmp_path / "out"
    interrupted = threading.Event()

    def ctrl_c_on_second_job(job_id: str) -> None:
        if len(api.submitted) == 2 and not interrupted.is_set():
            interrupted.set()
            _thread.interrupt_main()

    api.on_get = ctrl_c_on_second_job
    code, stdout, stderr = run(api, batch_file, out, concurrency=1)
    assert code == EXIT_INTERRUPTED, stdout + stderr
    assert "Stopping: no new jobs" in stderr and "Interrupted" in stdout
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["interrupted"] is True
    assert summary["counts"] == {"generated": 2, "skipped": 0, "failed": 0, "not_run": 3, "abandoned": 0}
    assert len(api.submitted) == 2 and len(manifest(out)) == 2
    api.on_get = None
    code, stdout, _ = run(api, batch_file, out)
    assert code == EXIT_OK and "3 generated, 2 skipped" in stdout


def test_unreachable_server(batch_file: Path, tmp_path: Path) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run_batch(
        batch_file,
        settings=SETTINGS,
        server="http://127.0.0.1:9",
        out_dir=tmp_path / "o",
        out=stdout,
        err=stderr,
    )
    assert code == EXIT_FAILED and "cannot reach the Soundry server" in stderr.getvalue()
    code = run_batch(
        batch_file,
        settings=SETTINGS,
        server="http://127.0.0.1:9",
        validate_only=True,
        out=stdout,
        err=stderr,
    )
    assert code == EXIT_OK and "local catalog" in stderr.getvalue()
