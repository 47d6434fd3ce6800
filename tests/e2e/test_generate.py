"""One job of each kind through the real queue: serve -> Redis -> Celery worker -> file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gen_server.client import ApiError, SoundryClient
from tests.helpers import assert_sound, read_wav, transcribe, words

pytestmark = pytest.mark.e2e

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


def test_speech_bundled_voice_is_intelligible(client: SoundryClient) -> None:
    job, data = client.generate({"kind": "speech", "text": SENTENCE, "seed": 3}, timeout_s=300)
    assert job.model == "piper-en_US-joe-medium"
    samples, rate = read_wav(data)
    assert_sound(samples, rate, expect_rate=22050, expect_s=None)
    assert 2.0 < samples.shape[0] / rate < 10.0
    heard = set(words(transcribe(samples, rate)))
    said = words(SENTENCE)
    hits = [w for w in said if w in heard]
    # measured through the server for seeds 0-14: 12 of 13 words every time (threshold 6)
    assert len(hits) >= len(said) // 2, f"recognizer heard {sorted(heard)}; matched {hits} of {said}"


@pytest.mark.parametrize(
    ("kind", "model", "rate", "seconds"),
    [("music", "dev-musicgen-tiny", 32000, 3.0), ("sfx", "dev-audiogen-tiny", 16000, 2.0)],
)
def test_music_and_sfx_on_tiny_checkpoints(
    client: SoundryClient, kind: str, model: str, rate: int, seconds: float
) -> None:
    job, data = client.generate(
        {"kind": kind, "model": model, "prompt": "warm synth pad", "duration_s": seconds, "seed": 7},
        timeout_s=300,
    )
    assert job.result is not None and job.result.seed == 7
    samples, got_rate = read_wav(data)
    assert_sound(samples, got_rate, expect_rate=rate, expect_s=seconds)


def test_an_exact_tempo_loop_through_the_queue(client: SoundryClient) -> None:
    """tempo_bpm + loop + loop_bars through the API and a real worker: one 120 BPM bar, exactly 2 s,
    with the analysis and the loop's seam in the result. (The tiny model makes noise: whether a beat
    is found in it is up to the tracker, so only the shape of the answer is checked here; the tempo
    and seam figures are asserted on audio with a beat in tests/workers/test_editing.py.)"""
    job, data = client.generate(
        {
            "kind": "music",
            "model": "dev-musicgen-tiny",
            "prompt": "drum loop",
            "tempo_bpm": 120,
            "loop": True,
            "loop_bars": 1,
            "seed": 5,
            "format": "flac",
        },
        timeout_s=300,
    )
    assert job.spec.duration_s == 2.0 and job.spec.loop_bars == 1
    result = job.result
    assert result is not None and result.loop is not None and result.analysis is not None
    assert result.tempo is not None
    assert result.loop.length_s == 2.0 and result.duration_s == 2.0
    assert result.analysis.loudness_lufs is not None and result.tempo.requested_bpm == 120
    import io

    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(data))  # an independent decoder
    assert rate == 32000 and len(samples) == 64000


def test_coqui_tiny_vits(client: SoundryClient) -> None:
    _, data = client.generate(
        {"kind": "speech", "model": "dev-vits-tiny", "text": "Hello there.", "voice": "bob", "seed": 1},
        timeout_s=300,
    )
    samples, rate = read_wav(data)
    assert_sound(samples, rate, expect_rate=22050, expect_s=None)


def test_kokoro_tiny_blend_through_the_queue(client: SoundryClient) -> None:
    """dev-kokoro-tiny (kokoro's KModel loader) with a weighted voice blend; the spec keeps the licence."""
    body = {"kind": "speech", "model": "dev-kokoro-tiny", "text": "Hello there.", "seed": 1}
    job, data = client.generate({**body, "voice": "af_heart(2)+am_adam(1)"}, timeout_s=300)
    assert job.spec.voice == "af_heart(2)+am_adam(1)" and job.spec.licence
    samples, rate = read_wav(data)
    assert_sound(samples, rate, expect_rate=24000, expect_s=None)
    assert job.result is not None and job.result.words is not None
    assert [w.text for w in job.result.words] == ["Hello", "there."]
    with pytest.raises(ApiError) as info:
        client.submit({**body, "voice": "af_heart(2)+nobody"})
    assert info.value.status == 422 and info.value.field == "voice"


def test_missing_weights_fail_fast_with_pull_hint(client: SoundryClient) -> None:
    job = client.submit({"kind": "music", "model": "musicgen-small", "prompt": "jazz", "duration_s": 2})
    done = client.wait(job.id, timeout_s=300)
    assert done.state == "failed"
    assert done.error is not None
    assert done.error.code == "model_unavailable"
    assert "musicgen-small" in done.error.message
    assert "soundry models pull musicgen-small" in done.error.message
    assert "Traceback" not in done.error.message


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"kind": "music", "prompt": "x", "duration_s": -1}, "duration_s"),
        ({"kind": "music", "prompt": "x", "duration_s": 10_000}, "duration_s"),
        ({"kind": "banjo", "prompt": "x"}, "kind"),
        ({"kind": "speech", "text": ""}, "text"),
        ({"kind": "music", "model": "nope", "prompt": "x"}, "model"),
        ({"kind": "music", "prompt": "x", "sampling": {"top_k": 100000}}, "sampling.top_k"),
    ],
)
def test_invalid_requests_name_the_field(client: SoundryClient, request_body: dict, field: str) -> None:
    with pytest.raises(ApiError) as info:
        client.submit(request_body)
    assert info.value.status == 422
    assert info.value.field == field, info.value.message


def test_verify_finds_watermark_in_downloaded_mp3(
    client: SoundryClient, server_dir: Path, tmp_path: Path
) -> None:
    """`soundry verify` finds the mark in an MP3 download of a job and names the job, and prints the
    download's C2PA verdict beside it (signed anew by the API, the stored WAV as its parent)."""
    import json
    import subprocess
    import sys

    from tests.helpers import ROOT

    job, _ = client.generate({"kind": "speech", "text": "Provenance matters for generated audio."})
    assert job.result is not None
    assert job.result.c2pa is True  # the stored WAV carries Content Credentials
    mp3 = tmp_path / "job.mp3"
    mp3.write_bytes(client.audio(job.id, "mp3"))

    def verify(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gen_server.cli", "verify", str(mp3), *extra],
            env={"SOUNDRY_DATA_DIR": str(server_dir), "PATH": "/usr/bin:/bin"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = verify("--json")
    assert out.returncode == 0, out.stdout + out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["detected"] and found["job_id"] == job.id and found["method"] == "decoded"
    assert found["payload"] == job.result.watermark_payload
    c2pa = found["c2pa"]
    assert c2pa["valid"] and c2pa["trusted"] and c2pa["altered"] is False, c2pa
    assert c2pa["actions"] == ["c2pa.opened", "c2pa.transcoded"] and c2pa["ingredients"] == [f"{job.id}.wav"]
    generation = c2pa["generation"]
    assert generation["job_id"] == job.id and generation["model"] == job.model
    assert generation["licence"] and generation["watermark_payload"] == job.result.watermark_payload
    assert generation["cloned_voice"] is False
    text = verify("--job", job.id)  # checked against its own job (decoded anyway: the mark is strong)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "Soundry watermark FOUND" in text.stdout and "C2PA: valid, signed by Soundry signer" in text.stdout
    r = client._http.post("/v1/watermark/detect", files={"file": ("x.mp3", mp3.read_bytes())})
    assert r.status_code == 200 and r.json()["job_id"] == job.id and r.json()["method"] == "decoded"
    assert r.json()["c2pa"]["valid"] and r.json()["c2pa"]["generation"]["job_id"] == job.id
    spans = r.json()["spans"]  # located detection: where the mark is, and whose
    assert [s["payload"] for s in spans] == [job.result.watermark_payload] and spans[0]["job_id"] == job.id
    r = client._http.post("/v1/watermark/detect", files={"file": ("x.txt", b"definitely not audio")})
    assert r.status_code == 422 and r.json()["error"]["field"]


def _tone_wav(seconds: float, rate: int = 32000, base_hz: float = 220.0) -> bytes:
    import io
    import math

    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    notes = base_hz * 2 ** (np.floor(t * 2) % 5 / 12)  # a little melody, two notes a second
    buf = io.BytesIO()
    sf.write(buf, (0.4 * np.sin(2 * math.pi * notes * t)).astype("float32"), rate, format="WAV")
    return buf.getvalue()


def test_melody_and_continuation_uploads_reach_the_model(client: SoundryClient) -> None:
    ref = client.upload(_tone_wav(3.0), "melody.wav")
    assert ref.duration_s == pytest.approx(3.0, abs=0.01)
    base = {"kind": "music", "prompt": "piano", "duration_s": 2.0, "seed": 5}
    _melody_job, melody_wav = client.generate(
        {**base, "model": "dev-musicgen-melody-tiny", "melody_upload": ref.id}
    )
    _plain_job, plain_wav = client.generate({**base, "model": "dev-musicgen-melody-tiny"})
    _again_job, again_wav = client.generate({**base, "model": "dev-musicgen-melody-tiny"})
    a, rate = read_wav(melody_wav)
    b, _ = read_wav(plain_wav)
    assert_sound(a, rate, expect_rate=32000, expect_s=2.0)
    # Two jobs' files always differ by their watermarks, so the melody's effect is judged against
    # the watermark-only difference of the same plain job run twice. Measured over seeds 0-14
    # (relative RMS difference): melody vs plain 0.043-0.052, watermark only 0.0042-0.0058 (>= 7.5x).
    watermark_only = _relative_difference(b, read_wav(again_wav)[0])
    by_melody = _relative_difference(a, b)
    assert by_melody > 3 * watermark_only, (
        f"melody had no effect ({by_melody:.4f} vs {watermark_only:.4f} for the watermark alone)"
    )
    _cont_job, cont_wav = client.generate(
        {**base, "model": "dev-musicgen-tiny", "continuation_upload": client.upload(_tone_wav(1.0)).id}
    )
    c, rate = read_wav(cont_wav)
    assert_sound(c, rate, expect_rate=32000, expect_s=2.0)
    with pytest.raises(ApiError) as info:
        client.submit({**base, "model": "dev-musicgen-tiny", "melody_upload": ref.id})
    assert info.value.field == "melody_upload"


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """RMS of ``a - b`` over the RMS of ``a``; infinite when the lengths differ."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.sqrt(np.mean((a - b) ** 2)) / max(np.sqrt(np.mean(a**2)), 1e-9))


def test_xtts_cloning_from_uploaded_references(client: SoundryClient) -> None:
    """dev-xtts-tiny through the API: references uploaded, language chosen, the voice follows them."""
    low, high = (client.upload(_tone_wav(2.0, rate=24000, base_hz=f)).id for f in (110.0, 440.0))
    base = {"kind": "speech", "model": "dev-xtts-tiny", "text": "Guten Tag.", "language": "de", "seed": 3}
    job, first = client.generate({**base, "reference_uploads": [low]}, timeout_s=240)
    assert job.spec.language == "de" and list(job.spec.reference_uploads) == [low]
    _, again = client.generate({**base, "reference_uploads": [low]}, timeout_s=240)
    _, other = client.generate({**base, "reference_uploads": [high, low]}, timeout_s=240)
    a, rate = read_wav(first)
    assert_sound(a, rate, expect_rate=24000, expect_s=None)
    # No fixed threshold on how different random-weight voices sound (0.05 sat on the edge of its
    # distribution on another CPU). The same seed and references repeat the voice exactly; the two
    # files then differ only by their jobs' watermark payloads (26 dB below the host, so a relative
    # difference ~0.05-0.1). Other references change the voice itself: measured relative difference
    # ~1 (uncorrelated noise-like voices), judged against the watermark-only difference of this run.
    watermark_only = _relative_difference(a, read_wav(again)[0])
    by_references = _relative_difference(a, read_wav(other)[0])
    assert watermark_only < 0.2, f"the same seed and references did not repeat ({watermark_only:.3f})"
    assert by_references > 3 * watermark_only, (
        f"the references had no effect ({by_references:.3f} vs {watermark_only:.3f} for the watermark alone)"
    )
    with pytest.raises(ApiError) as info:
        client.submit({**base, "reference_uploads": []})
    assert info.value.field == "reference_uploads"
