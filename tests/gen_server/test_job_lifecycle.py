"""Lifecycle conveniences without a worker (jobs stay queued): POST .../cancel and ``Prefer: wait=N``.

The finished-job answer of ``Prefer: wait`` needs a worker: ``tests/e2e/test_job_lifecycle.py``.
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from gen_server.routes.jobs import MAX_PREFER_WAIT_S, prefer_wait_s

SFX = {"kind": "sfx", "prompt": "rain on a tin roof", "duration_s": 1}


def test_post_cancel_is_delete(api: TestClient) -> None:
    first = api.post("/v1/jobs", json=SFX).json()
    second = api.post("/v1/jobs", json=SFX).json()
    by_post = api.post(f"/v1/jobs/{first['id']}/cancel")
    by_delete = api.delete(f"/v1/jobs/{second['id']}")
    assert by_post.status_code == by_delete.status_code == 200
    assert by_post.json()["state"] == by_delete.json()["state"] == "cancelled"
    assert api.post(f"/v1/jobs/{first['id']}/cancel").json()["state"] == "cancelled"  # again: same answer
    missing = api.post("/v1/jobs/0000/cancel")
    assert missing.status_code == 404 and missing.json() == api.delete("/v1/jobs/0000").json()


def test_prefer_wait_times_out_as_202(api: TestClient) -> None:
    start = time.monotonic()
    r = api.post("/v1/jobs", json=SFX, headers={"Prefer": "respond-async, wait=1"})
    # the server waited its second (a lower bound by construction); which wait it applied is the
    # Preference-Applied header's to say, not a stopwatch's (a busy machine answers late)
    assert time.monotonic() - start >= 0.9
    assert r.status_code == 202 and r.json()["state"] == "queued"
    assert r.headers["Preference-Applied"] == "wait=1"
    assert "location" not in r.headers


def test_without_prefer_nothing_changes(api: TestClient) -> None:
    r = api.post("/v1/jobs", json=SFX)
    assert r.status_code == 202 and "preference-applied" not in r.headers


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("wait=10", 10),
        ("WAIT = 5", 5),  # names are case-insensitive; RFC 7240 allows whitespace around '='
        ("respond-async, wait=7", 7),
        ('wait="3"', 3),
        ("wait=3600", MAX_PREFER_WAIT_S),
        ("wait=-1", None),
        ("wait=soon", None),
        ("handling=lenient", None),
        ("wait=4; foo=bar", 4),
    ],
)
def test_prefer_wait_parsing(header: str | None, seconds: int | None) -> None:
    assert prefer_wait_s(header) == seconds
