"""``GET /v1/jobs/{id}/stream``: a job's audio while it is made, through the queue and a real worker."""

from __future__ import annotations

import io

import av
import httpx
import pytest

from gen_server.client import SoundryClient

pytestmark = pytest.mark.e2e

SENTENCES = " ".join(f"This is sentence number {i} of the streaming test." for i in range(1, 7))


def seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        rate = container.streams.audio[0].rate
        return sum(f.samples for f in container.decode(audio=0)) / rate


def test_live_and_late_clients_get_all_the_speech(server_url: str, client: SoundryClient) -> None:
    job = client.submit({"kind": "speech", "text": SENTENCES, "seed": 4})
    chunks: list[bytes] = []
    url = f"{server_url}/v1/jobs/{job['id']}/stream"
    with httpx.stream("GET", url, params={"format": "mp3"}, timeout=240) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
        chunks.extend(c for c in r.iter_bytes() if c)
    assert len(chunks) >= 2
    live = b"".join(chunks)
    done = client.wait(job["id"], timeout_s=240)
    assert done["state"] == "succeeded"
    late = httpx.get(url, params={"format": "wav"}, timeout=240)
    assert late.status_code == 200
    assert late.headers["x-soundry-sample-rate"] == str(done["result"]["sample_rate"])
    # the stream is the speech before whole-clip trimming and fades: the stored file within 5 %
    stored_s = done["result"]["duration_s"]
    assert abs(seconds(live) - stored_s) < 0.05 * stored_s
    assert abs(seconds(late.content) - stored_s) < 0.05 * stored_s


def test_models_without_streaming_send_the_file_when_done(server_url: str, client: SoundryClient) -> None:
    body = {"kind": "music", "model": "dev-musicgen-tiny", "prompt": "drone", "duration_s": 2, "seed": 1}
    job = client.submit(body)
    r = httpx.get(f"{server_url}/v1/jobs/{job['id']}/stream", params={"format": "ogg"}, timeout=240)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"
    assert abs(seconds(r.content) - 2.0) < 0.1


def test_a_job_failing_before_audio_answers_its_error(server_url: str, client: SoundryClient) -> None:
    job = client.submit({"kind": "speech", "text": "?! ...", "seed": 1})  # nothing to speak: worker refuses
    r = httpx.get(f"{server_url}/v1/jobs/{job['id']}/stream", timeout=240)
    assert r.status_code == 422 and r.json()["error"]["field"] == "text"
    assert httpx.get(f"{server_url}/v1/jobs/nope/stream", timeout=30).status_code == 404


def test_a_cancelled_job_cuts_the_stream(server_url: str, client: SoundryClient) -> None:
    long_text = " ".join(f"Here is a longer sentence, number {i}, to keep the voice busy." for i in range(60))
    job = client.submit({"kind": "speech", "text": long_text, "seed": 2})
    url = f"{server_url}/v1/jobs/{job['id']}"
    # an incomplete chunked body: no client takes the cut file for a whole one
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", f"{url}/stream", timeout=240) as r:
        assert r.status_code == 200
        for n, _ in enumerate(r.iter_bytes()):
            if n == 0:
                httpx.delete(url, timeout=30).raise_for_status()
    assert client.wait(job["id"], timeout_s=120)["state"] == "cancelled"
