"""``GET /v1/jobs/{id}/stream``: a job's audio while it is made, through the queue and a real worker."""

from __future__ import annotations

import io
import time

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
    url = f"{server_url}/v1/jobs/{job.id}/stream"
    with httpx.stream("GET", url, params={"format": "mp3"}, timeout=240) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
        chunks.extend(c for c in r.iter_bytes() if c)
    assert len(chunks) >= 2
    live = b"".join(chunks)
    done = client.wait(job.id, timeout_s=240)
    assert done.state == "succeeded"
    late = httpx.get(url, params={"format": "wav"}, timeout=240)
    assert late.status_code == 200
    assert late.headers["x-soundry-sample-rate"] == str(done.result.sample_rate)
    # the stream is the speech before whole-clip trimming and fades: the stored file within 5 %
    stored_s = done.result.duration_s
    assert abs(seconds(live) - stored_s) < 0.05 * stored_s
    assert abs(seconds(late.content) - stored_s) < 0.05 * stored_s


def test_music_streams_while_the_model_runs(server_url: str, client: SoundryClient) -> None:
    """dev-musicgen-tiny streams about a second at a time while its LM still samples the rest.

    6 s of tiny MusicGen is 300 LM steps, paced on the session's server (SESSION_STEP_MS: >= 1.5 s on
    any CPU); its first piece is ready after about 60 of them, and one follows every 50 steps (>= 0.25 s
    apart). Judged by the job's own state when the first audio arrives, not by a duration.
    """
    duration_s = 6.0
    body = {"kind": "music", "model": "dev-musicgen-tiny", "prompt": "drone", "duration_s": 6, "seed": 1}
    job = client.submit(body)
    url = f"{server_url}/v1/jobs/{job.id}/stream"
    arrivals: list[float] = []
    states: list[str] = []
    data = bytearray()
    with httpx.stream("GET", url, params={"format": "pcm"}, timeout=240) as r:
        assert r.status_code == 200
        rate, channels = int(r.headers["x-soundry-sample-rate"]), int(r.headers["x-soundry-channels"])
        for chunk in r.iter_bytes():
            if chunk:
                if not arrivals:
                    states.append(client.get(job.id).state)
                arrivals.append(time.time())
                data.extend(chunk)
    done = client.wait(job.id, timeout_s=240)
    assert done.state == "succeeded"
    assert states == ["running"], "the first audio came only after the job had ended"
    assert len(arrivals) >= 3
    assert arrivals[0] < done.finished_at  # audio before the job ended, not its stored file after
    streamed_s = len(data) / (2 * channels) / rate
    assert abs(streamed_s - duration_s) < 0.02 * duration_s
    assert abs(done.result.duration_s - duration_s) < 0.02 * duration_s


def test_a_job_failing_before_audio_answers_its_error(server_url: str, client: SoundryClient) -> None:
    job = client.submit({"kind": "speech", "text": "?! ...", "seed": 1})  # nothing to speak: worker refuses
    r = httpx.get(f"{server_url}/v1/jobs/{job.id}/stream", timeout=240)
    assert r.status_code == 422 and r.json()["error"]["field"] == "text"
    assert httpx.get(f"{server_url}/v1/jobs/nope/stream", timeout=30).status_code == 404


def test_a_cancelled_job_cuts_the_stream(server_url: str, client: SoundryClient) -> None:
    long_text = " ".join(f"Here is a longer sentence, number {i}, to keep the voice busy." for i in range(60))
    job = client.submit({"kind": "speech", "text": long_text, "seed": 2})
    url = f"{server_url}/v1/jobs/{job.id}"
    # an incomplete chunked body: no client takes the cut file for a whole one
    with pytest.raises(httpx.RemoteProtocolError), httpx.stream("GET", f"{url}/stream", timeout=240) as r:
        assert r.status_code == 200
        for n, _ in enumerate(r.iter_bytes()):
            if n == 0:
                httpx.delete(url, timeout=30).raise_for_status()
    assert client.wait(job.id, timeout_s=120).state == "cancelled"
