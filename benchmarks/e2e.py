"""Soundry end to end: a real deployment (``soundry serve``: embedded Redis + worker process + API).

Every figure here goes through the public HTTP API with :class:`gen_server.client.SoundryClient`
(or ``httpx`` for the streaming speech endpoint): submit -> queue -> worker -> file -> download.
Nothing in this module imports torch; the models load inside the worker process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import MUSIC_PROMPTS, SPEECH_TEXT, median, percentile
from benchmarks.procmem import find_module_process, tree_memory_mb
from gen_server.client import SoundryClient
from gen_server.redis_server import free_port

logger = logging.getLogger("benchmarks.e2e")

ROOT = Path(__file__).resolve().parents[1]
JOB_TIMEOUT_S = 1800.0


_RESULT_FIELDS = frozenset(
    {
        "job_id",
        "artifact",
        "manifest",
        "format",
        "sample_rate",
        "channels",
        "duration_s",
        "seed",
        "model",
        "sha256",
        "watermark_payload",
        "generation_s",
        "cached",
    }
)
"""Known JobResult fields; anything else (batch size, say) is kept in ``result_extra``."""


class BenchError(RuntimeError):
    """A job or the server did not do what the benchmark needs."""


@dataclass
class Server:
    """A running ``soundry serve`` subprocess."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    started_s: float

    def worker_pid(self) -> int | None:
        return find_module_process(self.proc.pid, "workers")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def server_env(data_dir: Path, models_dir: Path, port: int, device: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDRY_")}
    env.update(
        {
            "SOUNDRY_DATA_DIR": str(data_dir),
            "SOUNDRY_MODELS_DIR": str(models_dir),
            "SOUNDRY_PORT": str(port),
            "SOUNDRY_HOST": "127.0.0.1",
            "SOUNDRY_DEV_MODELS": "1",
            "SOUNDRY_DEVICE": device,
            "SOUNDRY_MODEL_IDLE_S": "7200",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextmanager
def soundry_server(
    data_dir: Path, models_dir: Path, device: str, timeout_s: float = 180.0, *args: str
) -> Iterator[Server]:
    """``soundry serve --no-ui [ARGS]`` as a subprocess; yields once ``/healthz`` answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir / "serve.log"
    started = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gen_server.cli", "serve", "--no-ui", *args],
            env=server_env(data_dir, models_dir, port, device),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Server(f"http://127.0.0.1:{port}", proc, log_path, 0.0)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"server exited {proc.returncode}:\n{server.log_tail()}")
                try:
                    if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(f"server not up after {timeout_s} s:\n{server.log_tail()}")
                time.sleep(0.2)
            server.started_s = time.perf_counter() - started
            yield server
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


# --------------------------------------------------------------------------------------------------
# one job, timed from the client's side
# --------------------------------------------------------------------------------------------------


def run_job(
    url: str, body: dict[str, Any], poll_s: float, start: threading.Barrier | None = None
) -> dict[str, Any]:
    """Submit, wait (polling every ``poll_s``), download: the client-side round trip, in seconds.

    Args:
        url: API base URL.
        body: ``POST /v1/jobs`` body.
        poll_s: Seconds between status polls.
        start: Submit only when every party of this barrier is ready (connections already open).

    Returns:
        ``e2e_s`` (submit to audio downloaded), ``generation_s`` (the worker's model time),
        ``overhead_s`` (their difference), ``audio_s`` and the server's timestamps.
    """
    client = SoundryClient(url, timeout_s=120.0)
    try:
        client.models()  # opens the connection before the clock starts
        if start is not None:
            start.wait()
        started = time.perf_counter()
        submitted = time.time()
        job_id = client.submit(body).id
        job = client.wait(job_id, timeout_s=JOB_TIMEOUT_S, poll_s=poll_s)
        done = time.perf_counter()
        if job.state != "succeeded" or job.result is None:
            raise BenchError(f"job {job_id} on {body.get('model')} ended {job.state}: {job.error}")
        audio = client.audio(job_id)
        e2e = time.perf_counter() - started
    finally:
        client.close()
    result = job.result.model_dump(mode="json")
    generation = float(result["generation_s"])
    return {
        "job_id": job_id,
        "e2e_s": round(e2e, 4),
        "until_done_s": round(done - started, 4),
        "generation_s": generation,
        "overhead_s": round(e2e - generation, 4),
        "audio_s": float(result["duration_s"]),
        "bytes": len(audio),
        "submitted_at": submitted,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "worker": job.worker,
        "result_extra": {k: v for k, v in result.items() if k not in _RESULT_FIELDS},
    }


def music_body(model: str, prompt: str, duration_s: float, seed: int, kind: str = "music") -> dict[str, Any]:
    return {"kind": kind, "model": model, "prompt": prompt, "duration_s": duration_s, "seed": seed}


# --------------------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------------------


def concurrent_music(url: str, model: str, jobs: int, duration_s: float) -> dict[str, Any]:
    """``jobs`` compatible music jobs submitted at once (one client thread each, default 0.25 s polling)."""
    bodies = [
        music_body(model, MUSIC_PROMPTS[i % len(MUSIC_PROMPTS)], duration_s, 1000 + i) for i in range(jobs)
    ]
    barrier = threading.Barrier(jobs + 1, timeout=300)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_job, url, b, 0.25, barrier) for b in bodies]
        barrier.wait()
        started = time.perf_counter()
        results = [f.result() for f in futures]
    wall = time.perf_counter() - started
    latencies = [r["e2e_s"] for r in results]
    generation = [r["generation_s"] for r in results]
    finished = sorted(float(r["finished_at"]) for r in results if r["finished_at"])
    sizes = [int(r["result_extra"].get("batch_size") or 1) for r in results]
    created = sorted(float(r["created_at"]) for r in results if r["created_at"])
    return {
        "model": model,
        "jobs": jobs,
        "duration_s": duration_s,
        "wall_s": round(wall, 3),
        "clips_per_min": round(60.0 * jobs / wall, 3),
        "latency_p50_s": median(latencies),
        "latency_max_s": round(max(latencies), 3),
        "generation_s": generation,
        "model_time_overlap": round(sum(generation) / wall, 2),
        "finish_spread_s": round(finished[-1] - finished[0], 3) if finished else None,
        "submit_spread_s": round(created[-1] - created[0], 3) if created else None,
        "batch_sizes": sizes,
        "model_calls": round(sum(1.0 / size for size in sizes)),
        "jobs_detail": results,
    }


def overhead(url: str, model: str, duration_s: float, reps: int, kind: str = "music") -> dict[str, Any]:
    """Single jobs one after another (idle worker, 50 ms polling): end-to-end minus model time."""
    runs = [
        run_job(
            url, music_body(model, MUSIC_PROMPTS[i % len(MUSIC_PROMPTS)], duration_s, 2000 + i, kind), 0.05
        )
        for i in range(reps)
    ]
    over = [r["overhead_s"] for r in runs]
    gen = [r["generation_s"] for r in runs]
    return {
        "model": model,
        "duration_s": duration_s,
        "reps": reps,
        "e2e_s": median([r["e2e_s"] for r in runs]),
        "generation_s": median(gen),
        "overhead_s": median(over),
        "overhead_share": round(float(median(over) or 0.0) / float(median(gen) or 1.0), 4),
        "runs": runs,
    }


def speech_job(url: str, model: str, text: str, voice: str | None = None) -> dict[str, Any]:
    """One timed speech job after an untimed one that loads the voice (so overhead excludes loading)."""
    body: dict[str, Any] = {"kind": "speech", "model": model, "text": text, "seed": 7}
    if voice:
        body["voice"] = voice
    run_job(url, {**body, "text": "Warming up.", "seed": 1}, 0.05)
    run = run_job(url, body, 0.05)
    run["rtf_e2e"] = round(run["e2e_s"] / run["audio_s"], 4)
    run["rtf_model"] = round(run["generation_s"] / run["audio_s"], 4)
    return run


def speech_ttfb(url: str, model: str, reps: int, text: str = SPEECH_TEXT) -> dict[str, Any]:
    """Time to first audio byte of ``POST /v1/audio/speech`` (``response_format=pcm``, streamed).

    One untimed request first (loads the voice), then ``reps`` timed ones on a kept-alive connection.
    """
    body = {"model": model, "input": text, "voice": "alloy", "response_format": "pcm"}
    first: list[float] = []
    total: list[float] = []
    parts: list[dict[str, float]] = []
    audio_s = 0.0
    with httpx.Client(base_url=url, timeout=120.0) as http:
        for rep in range(reps + 1):
            wall_start = time.time()
            started = time.perf_counter()
            ttfb: float | None = None
            size = 0
            with http.stream("POST", "/v1/audio/speech", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise BenchError(
                        f"speech endpoint answered {response.status_code}: {response.text[:500]}"
                    )
                for chunk in response.iter_bytes():
                    if chunk and ttfb is None:
                        ttfb = time.perf_counter() - started
                    size += len(chunk)
            elapsed = time.perf_counter() - started
            audio_s = size / 2 / 24000
            if rep == 0:
                cold = {"ttfb_s": round(ttfb or elapsed, 4), "total_s": round(elapsed, 4)}
                continue
            first.append(ttfb or elapsed)
            total.append(elapsed)
            part = _first_chunk_breakdown(http, wall_start, ttfb or elapsed)
            if part:
                parts.append(part)
    breakdown = {key: median([p[key] for p in parts]) for key in parts[0]} if parts else {}
    return {
        "model": model,
        "reps": reps,
        "cold": cold,
        "ttfb_s": first,
        "ttfb_p50_s": median(first),
        "ttfb_p90_s": percentile(first, 90),
        "total_p50_s": median(total),
        "audio_s": round(audio_s, 3),
        "first_chunk_breakdown_p50": breakdown,
    }


def _first_chunk_breakdown(http: httpx.Client, wall_start: float, ttfb: float) -> dict[str, float] | None:
    """Where the time to first byte went: the request is one job streaming sentence by sentence.

    ``api_submit_s``: request sent -> job created; ``first_audio_s``: job created -> first byte at the
    client (queue, the first sentence's synthesis, its stream processing and watermark, Redis, HTTP);
    ``job_s``: job created -> finished (every sentence, then the whole-clip file); ``model_s``: model time.
    """
    response = http.get("/v1/jobs", params={"kind": "speech", "limit": 20})
    if response.status_code != 200:
        return None
    jobs = [j for j in response.json() if float(j.get("created_at") or 0) >= wall_start - 0.01]
    jobs = [j for j in jobs if j.get("finished_at") and j.get("result")]
    if not jobs:
        return None
    job = min(jobs, key=lambda j: float(j["created_at"]))
    created, finished = float(job["created_at"]), float(job["finished_at"])
    return {
        "api_submit_s": round(created - wall_start, 4),
        "first_audio_s": round(ttfb - (created - wall_start), 4),
        "job_s": round(finished - created, 4),
        "model_s": float(job["result"]["generation_s"]),
        "audio_s": float(job["result"]["duration_s"]),
    }


def memory(server: Server, label: str, resident: list[str]) -> dict[str, Any]:
    pid = server.worker_pid()
    if pid is None:
        return {"label": label, "resident": list(resident), "error": "worker process not found"}
    return {"label": label, "resident": list(resident), "pid": pid, **tree_memory_mb(pid)}
