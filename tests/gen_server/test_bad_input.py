"""The bad-input catalogue: every case gets a 4xx with a clear message, and the server keeps serving."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
import soundfile as sf
from fastapi.testclient import TestClient

from gen_server.main import create_app
from gen_server.redis_server import EmbeddedRedis
from gen_server.settings import Settings

SUMMARY: list[tuple[str, int]] = []


def wav_bytes(seconds: float, rate: int = 16000, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * math.pi * 220 * t)).astype(np.float32), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def silent_flac(seconds: float, rate: int) -> bytes:
    """Digital silence compresses to almost nothing: a small file that decodes to hours of audio."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16") as fh:
        block = np.zeros(rate * 60, dtype=np.int16)
        for _ in range(int(seconds // 60)):
            fh.write(block)
    return buf.getvalue()


@pytest.fixture(scope="module")
def api(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    redis.Redis.from_url(redis_server.url).flushall()
    settings = Settings(data_dir=tmp_path_factory.mktemp("bad"), dev_models=True, max_body_bytes=8 * 2**20)
    with TestClient(create_app(settings, redis_url=redis_server.url, ui=False)) as client:
        yield client
    print(f"\nbad-input catalogue: {len(SUMMARY)} cases tried, all answered 4xx, server kept serving")


def job(**body: Any) -> dict[str, Any]:
    return {"method": "POST", "url": "/v1/jobs", "json": body}


def upload(data: bytes, name: str = "ref.wav") -> dict[str, Any]:
    return {
        "method": "POST",
        "url": "/v1/uploads",
        "files": {"file": (name, data, "application/octet-stream")},
    }


def batch(text: str, name: str = "b.yaml") -> dict[str, Any]:
    return {"method": "POST", "url": "/v1/batches", "files": {"file": (name, text.encode(), "text/plain")}}


GOOD_WAV = wav_bytes(1.0)

CASES: list[tuple[str, dict[str, Any] | None, int, str | None]] = [
    # prompts and text
    ("empty prompt", job(kind="music", prompt="", duration_s=2), 422, "prompt"),
    ("whitespace prompt", job(kind="sfx", prompt="   \n ", duration_s=2), 422, "prompt"),
    ("huge prompt", job(kind="music", prompt="a" * 100_000, duration_s=2), 422, "prompt"),
    ("huge text", job(kind="speech", text="word " * 5000), 422, "text"),
    ("control characters", job(kind="speech", text="hello\x07\x1b[31m"), 422, "text"),
    ("NUL in prompt", job(kind="sfx", prompt="boom\x00", duration_s=1), 422, "prompt"),
    ("empty speech text", job(kind="speech", text=""), 422, "text"),
    ("text on music", job(kind="music", prompt="x", text="y", duration_s=2), 422, "text"),
    # durations and numbers
    (
        "NaN duration",
        {
            "method": "POST",
            "url": "/v1/jobs",
            "content": b'{"kind":"music","prompt":"x","duration_s":NaN}',
            "headers": {"content-type": "application/json"},
        },
        422,
        None,
    ),
    (
        "Infinity duration",
        {
            "method": "POST",
            "url": "/v1/jobs",
            "content": b'{"kind":"music","prompt":"x","duration_s":Infinity}',
            "headers": {"content-type": "application/json"},
        },
        422,
        None,
    ),
    ("negative duration", job(kind="music", prompt="x", duration_s=-5), 422, "duration_s"),
    ("zero duration", job(kind="sfx", prompt="x", duration_s=0), 422, "duration_s"),
    ("huge duration", job(kind="music", prompt="x", duration_s=1e12), 422, "duration_s"),
    ("too short sfx", job(kind="sfx", prompt="x", duration_s=0.1), 422, "duration_s"),
    ("duration on speech", job(kind="speech", text="hi", duration_s=3), 422, "duration_s"),
    ("string duration", job(kind="music", prompt="x", duration_s="ten"), 422, "duration_s"),
    ("list as prompt", job(kind="music", prompt=["a"], duration_s=2), 422, "prompt"),
    ("negative seed", job(kind="music", prompt="x", seed=-1), 422, "seed"),
    ("huge seed", job(kind="music", prompt="x", seed=2**80), 422, "seed"),
    ("float seed", job(kind="music", prompt="x", seed=1.5), 422, "seed"),
    (
        "temperature zero",
        job(kind="music", prompt="x", sampling={"temperature": 0}),
        422,
        "sampling.temperature",
    ),
    ("top_p above 1", job(kind="music", prompt="x", sampling={"top_p": 1.5}), 422, "sampling.top_p"),
    ("top_k beyond codebook", job(kind="music", prompt="x", sampling={"top_k": 65}), 422, "sampling.top_k"),
    ("sampling on speech", job(kind="speech", text="hi", sampling={"top_k": 5}), 422, "sampling"),
    ("speed too fast", job(kind="speech", text="hi", speed=100), 422, "speed"),
    ("impossible loudness", job(kind="music", prompt="x", post={"target_lufs": 12}), 422, "post.target_lufs"),
    (
        "peak ceiling above 0",
        job(kind="music", prompt="x", post={"true_peak_dbtp": 3}),
        422,
        "post.true_peak_dbtp",
    ),
    ("bad sample rate", job(kind="music", prompt="x", post={"sample_rate": 1}), 422, "post.sample_rate"),
    ("three channels", job(kind="music", prompt="x", post={"channels": 3}), 422, "post.channels"),
    # models, voices, kinds, formats
    ("unknown kind", job(kind="podcast", prompt="x"), 422, "kind"),
    ("missing kind", job(prompt="x"), 422, "kind"),
    ("unknown model", job(kind="music", model="musicgen-huge", prompt="x"), 422, "model"),
    ("model of other kind", job(kind="sfx", model="dev-musicgen-tiny", prompt="x"), 422, "model"),
    ("melody on non-melody model", job(kind="music", prompt="x", melody_upload="abc"), 422, "melody_upload"),
    ("unknown voice", job(kind="speech", model="dev-vits-tiny", text="hi", voice="zed"), 422, "voice"),
    (
        "unknown language",
        job(kind="speech", model="dev-vits-tiny", text="hi", language="xx"),
        422,
        "language",
    ),
    ("cloning without references", job(kind="speech", model="xtts-v2", text="hi"), 422, "reference_uploads"),
    (
        "four references",
        job(kind="speech", model="xtts-v2", text="hi", reference_uploads=["a", "b", "c", "d"]),
        422,
        "reference_uploads",
    ),
    (
        "references on a model that does not clone",
        job(kind="speech", model="dev-vits-tiny", text="hi", reference_uploads=["a"]),
        422,
        "reference_uploads",
    ),
    (
        "language XTTS does not speak",
        job(kind="speech", model="dev-xtts-tiny", text="hi", language="xx", reference_uploads=["a"]),
        422,
        "language",
    ),
    ("unknown format", job(kind="music", prompt="x", format="aiff"), 422, "format"),
    ("bitrate on wav", job(kind="sfx", prompt="x", format="wav", bitrate_kbps=128), 422, "bitrate_kbps"),
    ("mp3 bitrate > 320", job(kind="sfx", prompt="x", format="mp3", bitrate_kbps=448), 422, "bitrate_kbps"),
    ("unknown field", job(kind="music", prompt="x", tempo=120), 422, "tempo"),
    (
        "missing upload",
        job(kind="music", model="dev-musicgen-melody-tiny", prompt="x", melody_upload="nope"),
        404,
        None,
    ),
    (
        "mixed-script prompt",
        job(
            kind="music",
            prompt="lofi \u0645\u0648\u0633\u064a\u0642\u0649 \u97f3\u697d" + "\u202e",
            duration_s=0,
        ),
        422,
        "duration_s",
    ),
    # webhooks
    (
        "loopback webhook",
        job(kind="speech", text="hi", callback_url="http://127.0.0.1:8080/x"),
        422,
        "callback_url",
    ),
    (
        "private webhook",
        job(kind="speech", text="hi", callback_url="http://10.0.0.8/hook"),
        422,
        "callback_url",
    ),
    (
        "link-local webhook",
        job(kind="speech", text="hi", callback_url="http://169.254.169.254/meta"),
        422,
        "callback_url",
    ),
    (
        "file:// webhook",
        job(kind="speech", text="hi", callback_url="file:///etc/passwd"),
        422,
        "callback_url",
    ),
    # bodies
    (
        "not JSON",
        {
            "method": "POST",
            "url": "/v1/jobs",
            "content": b"kind=music",
            "headers": {"content-type": "application/json"},
        },
        422,
        None,
    ),
    ("JSON array body", {"method": "POST", "url": "/v1/jobs", "json": [1, 2]}, 422, None),
    (
        "oversized body",
        {
            "method": "POST",
            "url": "/v1/jobs",
            "content": b"{" + b" " * (9 * 2**20) + b"}",
            "headers": {"content-type": "application/json"},
        },
        413,
        "body",
    ),
    # uploads
    ("non-audio upload", upload(b"%PDF-1.7 this is not audio at all" * 50, "doc.pdf"), 422, "file"),
    ("empty upload", upload(b"", "empty.wav"), 422, "file"),
    ("truncated WAV", upload(GOOD_WAV[:60], "cut.wav"), 422, "file"),
    ("random bytes upload", upload(np.random.default_rng(0).bytes(20_000), "noise.mp3"), 422, "file"),
    ("two-hour upload", upload(silent_flac(2 * 3600, 8000), "long.flac"), 422, "file"),
    ("decompression-bomb-like FLAC", upload(silent_flac(12 * 3600, 8000), "bomb.flac"), 422, "file"),
    # batches
    ("malformed YAML", batch("items:\n  - kind: sfx\n    prompt: [unclosed\n"), 422, None),
    (
        "batch path traversal",
        batch(
            'output: "../../etc/{name}.{format}"\nitems:\n  - {kind: sfx, prompt: x, '
            "duration_s: 1, name: a}\n"
        ),
        422,
        None,
    ),
    (
        "batch absolute output",
        batch('output: "/tmp/{name}.{format}"\nitems:\n  - {kind: sfx, prompt: x, duration_s: 1, name: a}\n'),
        422,
        None,
    ),
    (
        "batch unknown field",
        batch("items:\n  - {kind: sfx, prompt: x, duration_s: 1, volume: 11}\n"),
        422,
        None,
    ),
    # lookups
    ("unknown job", {"method": "GET", "url": "/v1/jobs/0000"}, 404, None),
    ("audio of unknown job", {"method": "GET", "url": "/v1/jobs/0000/audio"}, 404, None),
    ("unknown download format", {"method": "GET", "url": "/v1/jobs/0000/audio?format=aiff"}, 422, "format"),
    ("list with bad state", {"method": "GET", "url": "/v1/jobs?state=done"}, 422, "state"),
    ("list with huge limit", {"method": "GET", "url": "/v1/jobs?limit=100000"}, 422, "limit"),
    (
        "watermark detect on text",
        {
            "method": "POST",
            "url": "/v1/watermark/detect",
            "files": {"file": ("a.txt", b"hello", "text/plain")},
        },
        422,
        "file",
    ),
]


@pytest.mark.parametrize(("name", "request_kwargs", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(
    api: TestClient, name: str, request_kwargs: dict[str, Any], status: int, field: str | None
) -> None:
    kwargs = dict(request_kwargs)
    r = api.request(kwargs.pop("method"), kwargs.pop("url"), **kwargs)
    assert r.status_code == status, f"{name}: {r.status_code} {r.text[:300]}"
    err = r.json()["error"]
    assert err["message"] and len(err["message"]) < 2000, err
    assert "Traceback" not in err["message"]
    if field is not None:
        assert err["field"] == field, err
    assert api.get("/healthz").json()["redis"] is True
    SUMMARY.append((name, r.status_code))


def test_catalogue_has_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
