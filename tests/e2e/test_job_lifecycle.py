"""Lifecycle conveniences with a real worker: ``Prefer: wait=N`` answers the finished job; POST .../cancel."""

from __future__ import annotations

import httpx
import pytest

from gen_server.client import SoundryClient

pytestmark = pytest.mark.e2e

SFX = {"kind": "sfx", "model": "dev-audiogen-tiny", "prompt": "a door creaks", "duration_s": 1, "seed": 3}


@pytest.fixture(scope="module", autouse=True)
def warm_worker(client: SoundryClient) -> None:
    """One job of the same model to its end first, waited for as long as a slow machine needs.

    ``Prefer: wait`` is capped at 60 s by the server; a cold worker (start-up, model load) on a busy
    single core can take longer than that, a warm one takes seconds for this 1 s clip.
    """
    assert client.generate({**SFX, "seed": 1}, timeout_s=300)[0].state == "succeeded"


def test_prefer_wait_answers_201_with_the_finished_job(server_url: str) -> None:
    r = httpx.post(f"{server_url}/v1/jobs", json=SFX, headers={"Prefer": "wait=60"}, timeout=120)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "succeeded" and job["result"]["format"] == "wav"
    assert r.headers["Preference-Applied"] == "wait=60"
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}"
    audio = httpx.get(f"{server_url}{job['links']['audio']}", timeout=60)
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"


def test_cancel_by_post_then_an_ended_job_is_409(server_url: str) -> None:
    done = httpx.post(f"{server_url}/v1/jobs", json=SFX, headers={"Prefer": "wait=60"}, timeout=120).json()
    assert done["state"] == "succeeded"
    by_post = httpx.post(f"{server_url}/v1/jobs/{done['id']}/cancel", timeout=30)
    by_delete = httpx.delete(f"{server_url}/v1/jobs/{done['id']}", timeout=30)
    assert by_post.status_code == by_delete.status_code == 409
    assert by_post.json()["error"]["code"] == by_delete.json()["error"]["code"] == "conflict"
