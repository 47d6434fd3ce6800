"""Faults survived and load carried, on real Redis and real worker processes."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import record_fault
from tests.e2e.cluster import Cluster

pytestmark = pytest.mark.e2e

SPEECH = {"kind": "speech", "text": "Reliability."}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # the default visibility timeout (20 s): leases are renewed every quarter of it, so a job runs twice
    # only if a worker's heartbeat thread starves for 15 s, as in production, not 7.5 s
    c = Cluster(tmp_path, visibility_timeout_s=20)
    # these tests are about load and faults, not the speech check (tests/e2e/test_captions.py keeps it
    # on): without it a one-line speech job costs a few tenths of a second instead of a second or two
    c.env["SOUNDRY_SPEECH_QC"] = "0"
    yield c
    c.close()


def test_storage_failure_and_raising_model_fail_clearly_and_worker_keeps_serving(cluster: Cluster) -> None:
    cluster.start_worker("a")
    jobs_dir = cluster.data_dir / "artifacts" / "jobs"
    jobs_dir.parent.mkdir(parents=True, exist_ok=True)
    jobs_dir.write_text("not a folder")  # every artifact write now fails
    broken = cluster.submit({**SPEECH, "seed": 1})
    failed = cluster.wait_ended(broken, timeout_s=300)  # includes the worker's start-up
    assert failed["state"] == "failed"
    assert failed["error"]["code"] == "storage_error", failed["error"]
    assert "jobs/" in failed["error"]["message"]
    jobs_dir.unlink()
    assert not any(p.name.startswith(".tmp-") for p in (cluster.data_dir / "artifacts").rglob("*"))

    bad_ckpt = cluster.data_dir / "models" / "musicgen-small"
    bad_ckpt.mkdir(parents=True)
    (bad_ckpt / "state_dict.bin").write_bytes(b"this is not a torch checkpoint")
    (bad_ckpt / "compression_state_dict.bin").write_bytes(b"neither is this")
    raising = cluster.submit({"kind": "music", "model": "musicgen-small", "prompt": "x", "duration_s": 1})
    failed = cluster.wait_ended(raising, timeout_s=300)
    assert failed["state"] == "failed"
    assert failed["error"]["message"], failed["error"]
    assert "Traceback" not in failed["error"]["message"]

    ok = cluster.submit({**SPEECH, "seed": 2})
    served = cluster.wait_ended(ok, timeout_s=300)
    record_fault("storage write failure, then a raising model", [served], "both failed clearly, then served")
    assert served["state"] == "succeeded"
    assert cluster.artifacts(ok) == ["audio.wav", "manifest.json"]


N_JOBS = int(os.environ.get("SOUNDRY_LOAD_JOBS", "60"))
"""60 in the suite (about 60 s on 2 cores); the 200-job run (117-209 s) is the README's benchmark
command ``SOUNDRY_LOAD_JOBS=200``: the same code, more jobs."""
N_CLIENTS = 20


# a slower or busier machine may need several times the 2-core times above
@pytest.mark.timeout(1800)
def test_load_mixed_jobs_from_20_clients(cluster: Cluster) -> None:
    cluster.start_worker("a")
    cluster.start_worker("b")
    bodies = []
    for i in range(N_JOBS):
        if i % 4 == 0:
            bodies.append({"kind": "sfx", "prompt": f"click {i}", "duration_s": 0.5, "seed": i})
        elif i % 4 == 1:
            bodies.append({"kind": "music", "prompt": f"tone {i}", "duration_s": 0.5, "seed": i})
        else:
            bodies.append({"kind": "speech", "text": f"Item {i}.", "seed": i})

    def one(body: dict) -> tuple[str, float, str]:
        start = time.monotonic()
        job_id = cluster.submit(body)
        done = cluster.wait_ended(job_id, timeout_s=600, poll_s=0.5)
        if done["state"] != "succeeded":
            print(f"job {job_id} {done['state']}: {done['error']}")
        return job_id, time.monotonic() - start, done["state"]

    started = time.monotonic()
    with ThreadPoolExecutor(N_CLIENTS) as pool:
        results = list(pool.map(one, bodies))
    wall = time.monotonic() - started
    ids = [r[0] for r in results]
    latencies = sorted(r[1] for r in results)
    states = [r[2] for r in results]
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * len(latencies)) - 1]
    print(
        f"\nload: {N_JOBS} jobs from {N_CLIENTS} clients in {wall:.1f} s ({N_JOBS / wall:.2f} jobs/s); "
        f"latency p50 {p50:.1f} s, p95 {p95:.1f} s; succeeded {states.count('succeeded')}, "
        f"lost 0 of {N_JOBS} checked"
    )
    assert len(set(ids)) == N_JOBS
    assert states == ["succeeded"] * N_JOBS
    attempts = [cluster.job(i)["attempts"] for i in ids]
    assert attempts == [1] * N_JOBS, "a job ran twice"
    assert all(cluster.artifacts(i) == ["audio.wav", "manifest.json"] for i in ids)
