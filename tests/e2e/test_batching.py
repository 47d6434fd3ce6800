"""Dynamic batching through the real queue: real Redis, real worker processes, the API, tiny MusicGen.

* Jobs queued together are served by fewer model calls than jobs, and each job's file is byte for byte
  the file the same job gives when generated alone (same spec, same job id, so the same watermark).
* A worker SIGKILLed in the middle of a batched call loses no job and finishes none twice.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gen_server.audio.encode import decode
from gen_server.records import keys
from tests.conftest import record_fault
from tests.e2e.cluster import Cluster
from tests.helpers import ROOT

pytestmark = pytest.mark.e2e

MODEL = "dev-musicgen-tiny"
STEP_MS = 20.0
"""Least time per decoding step of the tiny models here: a batch lasts as long as a test needs on any CPU."""
PROMPTS = ("warm lofi piano", "rock drums", "ambient pad", "glitchy synth", "jazz trio", "cello solo")

# Generates each spec alone (a batch of one) through the worker's own pipeline functions, in a fresh
# interpreter with the worker's environment (torch's thread count changes the last float bit).
SOLO_REFERENCE = """
import hashlib, json, sys, tempfile
from pathlib import Path
from gen_server.audio.encode import decode
from gen_server.audio.watermark import KeyedWatermarker
from gen_server.contract.spec import JobSpec
from gen_server.settings import get_settings
from gen_server.storage import LocalStore
from workers.backends.registry import create_backend
from gen_server.contract.catalog import build_catalog
from workers.pipeline import finish, gen_request

from gen_server.instance_secrets import watermark_key
settings = get_settings()
key = watermark_key(settings)
store = LocalStore(Path(tempfile.mkdtemp()))
out = []
backend = None
for raw in json.load(sys.stdin):
    spec = JobSpec.model_validate(raw)
    if backend is None:
        backend = create_backend(build_catalog(settings).get(spec.model), settings)
    audio = backend.generate(gen_request(spec, store))
    result = finish(spec, audio, watermarker=KeyedWatermarker(key), watermark_key=key, store=store,
                    generation_s=0.0)
    out.append(hashlib.sha256(decode(store.get(result.artifact)).samples.tobytes()).hexdigest())
print(json.dumps(out))
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, visibility_timeout_s=6, dev_step_ms=STEP_MS)
    # One torch thread in the workers (and the solo reference, which uses the same environment): on a
    # busy shared 2-core machine two OpenMP threads spin against each other; a 5 s tiny clip took
    # 12 s with two threads and 0.5 s with one (the same reason as tests/workers/conftest.py).
    c.env["OMP_NUM_THREADS"] = "1"
    yield c
    c.close()


def music(prompt: str, seed: int, duration_s: float) -> dict[str, Any]:
    return {
        "kind": "music",
        "model": MODEL,
        "prompt": prompt,
        "seed": seed,
        "duration_s": duration_s,
        "sampling": {"top_k": 50},
    }


def model_calls(cluster: Cluster) -> int:
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        return int(client.hget(keys.STATS_MODEL_CALLS, MODEL) or 0)
    finally:
        client.close()


def succeeded_count(cluster: Cluster) -> int:
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        return int(client.hget(keys.STATS_JOBS, "succeeded") or 0)
    finally:
        client.close()


def solo_sha256(cluster: Cluster, specs: list[dict[str, Any]]) -> list[str]:
    """SHA-256 of each spec's decoded samples, generated alone by the worker's own pipeline."""
    proc = subprocess.run(
        [sys.executable, "-c", SOLO_REFERENCE],
        input=json.dumps(specs).encode(),
        env=cluster.env,
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return list(json.loads(proc.stdout.decode().strip().splitlines()[-1]))


def test_queued_compatible_jobs_share_model_calls_and_match_solo_runs(cluster: Cluster) -> None:
    ids = [cluster.submit(music(p, seed=100 + i, duration_s=2.0)) for i, p in enumerate(PROMPTS)]
    started = time.monotonic()
    cluster.start_worker("a")
    done = [cluster.wait_ended(i, timeout_s=300) for i in ids]  # includes the worker's start-up
    took = time.monotonic() - started
    assert [j["state"] for j in done] == ["succeeded"] * len(ids), [j.get("error") for j in done]
    calls = model_calls(cluster)
    sizes = [j["result"]["batch_size"] for j in done]
    print(
        f"\n{len(ids)} queued jobs: {calls} model call(s), batch sizes {sizes}, {took:.1f} s incl. start-up"
    )
    assert calls < len(ids)
    assert sum(1 for s in sizes if s > 1) >= 2
    # held through model loading and the batch without being handed out again (lease renewal)
    assert [j["attempts"] for j in done] == [1] * len(ids)
    assert all(cluster.artifacts(i) == ["audio.wav", "manifest.json"] for i in ids)
    # every job's file equals the file of the same job (same spec and id) generated alone
    reference = solo_sha256(cluster, [j["spec"] for j in done])
    files = [cluster.api.get(f"/v1/jobs/{i}/audio").content for i in ids]
    assert [j["result"]["sha256"] for j in done] == [hashlib.sha256(f).hexdigest() for f in files]
    # the audio, not the files: each stored file carries its own C2PA signature (signing time)
    stored = [hashlib.sha256(decode(f).samples.tobytes()).hexdigest() for f in files]
    assert stored == reference
    assert len(set(stored)) == len(ids)


def test_worker_killed_mid_batch_every_job_completes_once(cluster: Cluster) -> None:
    # the batch's decoding lasts >= 8 s by construction (paced steps): the kill lands mid-batch on any CPU
    clip_s = cluster.paced_music_s(8.0)
    ids = [cluster.submit(music(p, seed=200 + i, duration_s=clip_s)) for i, p in enumerate(PROMPTS[:4])]
    # max_batch = the four jobs: the batcher starts the call once all four are queued, however slowly
    # the task threads get there (a window of the default 100 ms could split them on a busy machine)
    cluster.env.update(SOUNDRY_MAX_BATCH="4", SOUNDRY_BATCH_WINDOW_MS="30000")
    cluster.start_worker("a")
    for job_id in ids:  # all four in the batcher's one call, each with progress
        cluster.wait_for(job_id, lambda j: j["state"] == "running" and j["progress"] > 0.05, timeout_s=300)
    calls_before = model_calls(cluster)
    cluster.kill_worker("a")
    killed_at = time.monotonic()
    assert calls_before == 0, "the batch finished before the kill"
    assert all(cluster.artifacts(i) == [] for i in ids)
    cluster.start_worker("b")
    done = [cluster.wait_ended(i, timeout_s=300) for i in ids]  # a new worker's start-up, then the batch
    recovered_s = time.monotonic() - killed_at
    sizes = [j["result"]["batch_size"] for j in done if j["result"]]
    record_fault(
        "worker SIGKILLed mid-batch", done, f"done {recovered_s:.1f} s after the kill, batch sizes {sizes}"
    )
    assert [j["state"] for j in done] == ["succeeded"] * len(ids), [j.get("error") for j in done]
    assert [j["attempts"] for j in done] == [2] * len(ids)
    assert all(cluster.artifacts(i) == ["audio.wav", "manifest.json"] for i in ids)  # no partial/temp file
    assert succeeded_count(cluster) == len(ids)  # one completion each
    assert model_calls(cluster) < len(ids)  # batched again after the restart
