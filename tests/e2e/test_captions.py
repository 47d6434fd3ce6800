"""Narration with captions through the real server: result words, ``/captions`` in every format."""

from __future__ import annotations

import io
import itertools

import httpx
import pytest
import srt
import webvtt

from gen_server.client import SoundryClient

pytestmark = pytest.mark.e2e

NARRATION = (
    "Welcome to the harbour. At 6 a.m. the first boats leave, loaded with nets and ice; by noon they are "
    "back.\n\nThe market opens at once, and the whole town comes down to buy fish."
)


def test_a_narration_comes_with_matching_captions(server_url: str, client: SoundryClient) -> None:
    job = client.submit({"kind": "speech", "text": NARRATION, "seed": 5})
    done = client.wait(job.id, timeout_s=240)
    assert done.state == "succeeded", done
    assert done.result is not None and done.result.qc is not None
    qc = done.result.qc  # every sentence checked on the way (the server's default)
    assert qc.passed and qc.sentences >= 3 and qc.wer is not None and qc.wer <= 0.95
    words = done.result.words
    assert words is not None
    assert {w.source for w in words} <= {"model", "estimated"} and words[0].source == "model"
    assert [w.text for w in words][:4] == ["Welcome", "to", "the", "harbour."]
    assert "six" in [w.text for w in words]  # as the voice read it
    assert all(a.end_s <= b.start_s + 1e-3 for a, b in itertools.pairwise(words))
    assert words[-1].end_s <= done.result.duration_s

    url = f"{server_url}/v1/jobs/{job.id}/captions"
    r = httpx.get(url, params={"format": "srt"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-subrip")
    subs = list(srt.parse(r.text))
    assert " ".join(s.content.replace("\n", " ") for s in subs).split() == [w.text for w in words]
    assert all(len(line) <= 42 for s in subs for line in s.content.splitlines())
    assert subs[-1].end.total_seconds() <= done.result.duration_s + 1.0

    vtt = httpx.get(url, params={"format": "vtt"}, timeout=30)
    assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
    captions = webvtt.from_buffer(io.StringIO(vtt.text)).captions
    assert len(captions) == len(subs)
    as_json = httpx.get(url, params={"format": "json"}, timeout=30).json()
    assert as_json["words"] == [w.model_dump(mode="json") for w in words]
    assert len(as_json["cues"]) == len(subs)


def test_captions_are_refused_clearly(server_url: str, client: SoundryClient) -> None:
    music = client.submit({"kind": "music", "model": "dev-musicgen-tiny", "prompt": "x", "duration_s": 0.5})
    client.wait(music.id, timeout_s=240)
    r = httpx.get(f"{server_url}/v1/jobs/{music.id}/captions", timeout=30)
    assert r.status_code == 409 and "only speech jobs" in r.json()["error"]["message"]
    bad = httpx.get(f"{server_url}/v1/jobs/{music.id}/captions", params={"format": "ass"}, timeout=30)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "format"
    assert httpx.get(f"{server_url}/v1/jobs/nope/captions", timeout=30).status_code == 404
