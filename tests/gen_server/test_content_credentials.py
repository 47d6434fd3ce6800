"""C2PA Content Credentials: signed WAV/MP3/FLAC validate with the c2pa library itself, fail once the
audio is altered, transcoded downloads are signed anew with the original as their parent, the detect
endpoint reports the manifest, and an unusable operator certificate is refused naming its setting."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from gen_server import content_credentials
from gen_server.audio import Audio
from gen_server.audio.encode import decode, encode, read_tags
from gen_server.content_credentials import (
    GENERATION_LABEL,
    SIGNABLE,
    TRAINED_ALGORITHMIC_MEDIA,
    SigningIdentity,
    load_identity,
    new_identity_pem,
    resolve_identity,
    sign_generated,
    verify,
)
from gen_server.contract.result import JobResult
from gen_server.instance_secrets import checked_secrets
from gen_server.jobs import Caller, JobService
from gen_server.settings import Settings
from gen_server.storage import audio_key, manifest_key

GENERATION = {
    "generator": "Soundry 0.1.0",
    "kind": "sfx",
    "model": "dev-audiogen-tiny",
    "licence": "random weights (no licence needed)",
    "commercial_use": True,
    "job_id": "job1",
    "seed": 7,
    "watermark_payload": "0badf00d",
}


def tone(fmt: str, seconds: float = 0.5, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    audio = Audio((0.3 * np.sin(2 * np.pi * 440.0 * t))[None, :].astype(np.float32), rate)
    return encode(audio, fmt, tags={"job_id": "job1", "model": "dev-audiogen-tiny"})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def identity() -> SigningIdentity:
    pem = new_identity_pem().encode()
    return load_identity(pem, pem, cert_source="test", key_source="test")


def report(data: bytes, fmt: str) -> dict[str, Any]:
    """The manifest store as the c2pa library itself reads it (default settings: no trust anchors)."""
    with c2pa.Reader(SIGNABLE[fmt], io.BytesIO(data)) as reader:
        store: dict[str, Any] = json.loads(reader.json())
    return store


def flip_audio_byte(raw: bytes, signed: bytes) -> bytes:
    """``signed`` with one byte changed inside the audio it carries (found through the unsigned file)."""
    k = len(raw) * 2 // 3
    at = signed.find(raw[k : k + 32])
    assert at > 0, "the audio bytes are not in the signed file as they were"
    out = bytearray(signed)
    out[at + 16] ^= 0x5A
    return bytes(out)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
def test_signed_file_validates_with_the_c2pa_library(fmt: str, identity: SigningIdentity) -> None:
    raw = tone(fmt)
    signed = sign_generated(raw, fmt, identity, GENERATION)
    store = report(signed, fmt)
    assert store["validation_state"] == "Valid"  # the self-made CA is untrusted to a bare reader: still valid
    manifest = store["manifests"][store["active_manifest"]]
    assert manifest["claim_generator_info"][0]["name"] == "Soundry"
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    (created,) = assertions["c2pa.actions.v2"]["actions"]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert assertions[GENERATION_LABEL] == GENERATION
    assert manifest["signature_info"]["common_name"].startswith("Soundry signer")
    # the audio and the tags are as they were
    assert np.array_equal(decode(signed).samples, decode(raw).samples)
    assert read_tags(signed, fmt)["job_id"] == "job1"  # type: ignore[arg-type]
    verdict = verify(signed, fmt, identity)  # this installation trusts its own CA
    assert verdict.valid and verdict.trusted and verdict.altered is False and verdict.state == "Trusted"
    assert verdict.generation == GENERATION
    assert "valid" in verdict.summary() and "dev-audiogen-tiny" in verdict.summary()


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac"])
def test_altered_audio_fails_validation(fmt: str, identity: SigningIdentity) -> None:
    raw = tone(fmt)
    altered = flip_audio_byte(raw, sign_generated(raw, fmt, identity, GENERATION))
    store = report(altered, fmt)
    assert store["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in {s["code"] for s in store["validation_status"]}
    verdict = verify(altered, fmt, identity)
    assert verdict.present and verdict.valid is False and verdict.altered is True
    assert "changed after signing" in verdict.summary()


def test_formats_without_c2pa_say_so(identity: SigningIdentity) -> None:
    verdict = verify(tone("ogg"), "ogg", identity)
    assert not verdict.supported and "not supported for ogg" in verdict.summary()
    unsigned = verify(tone("wav"), "wav", identity)
    assert unsigned.supported and not unsigned.present and unsigned.summary() == "C2PA: no manifest"


def _service(api: TestClient) -> JobService:
    svc: JobService = api.app.state.jobs  # type: ignore[attr-defined]
    return svc


def _succeeded_job(api: TestClient) -> tuple[str, bytes]:
    """A queued sfx job finished as a worker finishes it: a signed WAV stored, SUCCESS recorded."""
    r = api.post("/v1/jobs", json={"kind": "sfx", "model": "dev-audiogen-tiny", "prompt": "hum", "seed": 7})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    svc = _service(api)
    signed = sign_generated(
        tone("wav"), "wav", resolve_identity(svc.settings), {**GENERATION, "job_id": job_id}
    )
    svc.store.put(audio_key(job_id, "wav"), signed)
    result = JobResult(
        job_id=job_id,
        artifact=audio_key(job_id, "wav"),
        manifest=manifest_key(job_id),
        format="wav",
        sample_rate=16000,
        channels=1,
        duration_s=0.5,
        seed=7,
        model="dev-audiogen-tiny",
        sha256=hashlib.sha256(signed).hexdigest(),
        watermark_payload="0badf00d",
        c2pa=True,
    )
    svc.records.succeed(job_id, result)
    assert svc.get(job_id, Caller(admin=True)).result == result
    return job_id, signed


def test_transcoded_download_is_signed_with_the_original_as_parent(api: TestClient) -> None:
    job_id, original = _succeeded_job(api)
    r = api.get(f"/v1/jobs/{job_id}/audio", params={"format": "mp3"})
    assert r.status_code == 200
    mp3 = r.content
    store = report(mp3, "mp3")
    assert store["validation_state"] == "Valid"
    manifest = store["manifests"][store["active_manifest"]]
    (parent,) = manifest["ingredients"]
    assert parent["relationship"] == "parentOf" and parent["title"] == f"{job_id}.wav"
    original_label = report(original, "wav")["active_manifest"]
    assert parent["active_manifest"] == original_label  # the original's own manifest comes along
    actions = [a["action"] for a in manifest["assertions"][0]["data"]["actions"]]
    assert actions == ["c2pa.opened", "c2pa.transcoded"]
    verdict = verify(mp3, "mp3", resolve_identity(_service(api).settings))
    assert verdict.valid and verdict.trusted and verdict.generation is not None
    assert verdict.generation["job_id"] == job_id and "transcoded from" in verdict.summary()
    # the same file every time, so byte ranges of it fit together
    again = api.get(f"/v1/jobs/{job_id}/audio", params={"format": "mp3"}, headers={"Range": "bytes=0-99"})
    assert again.status_code == 206 and again.content == mp3[:100]
    ogg = api.get(f"/v1/jobs/{job_id}/audio", params={"format": "ogg"}).content
    assert not verify(ogg, "ogg").supported


def test_detect_endpoint_reports_the_manifest(api: TestClient) -> None:
    _, signed = _succeeded_job(api)
    r = api.post("/v1/watermark/detect", files={"file": ("x.wav", signed)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["detected"] is False  # a plain tone: no watermark, but Content Credentials
    c2 = body["c2pa"]
    assert c2["present"] and c2["valid"] and c2["trusted"] and c2["altered"] is False
    assert c2["signer"].startswith("Soundry signer") and c2["generation"]["model"] == "dev-audiogen-tiny"
    altered = flip_audio_byte(tone("wav"), signed)
    c2 = api.post("/v1/watermark/detect", files={"file": ("x.wav", altered)}).json()["c2pa"]
    assert c2["present"] and c2["valid"] is False and c2["altered"] is True
    assert any("dataHash.mismatch" in e for e in c2["errors"])
    c2 = api.post("/v1/watermark/detect", files={"file": ("x.ogg", tone("ogg"))}).json()["c2pa"]
    assert c2["supported"] is False and "not supported for ogg" in c2["summary"]


def test_generated_identity_is_kept_in_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(content_credentials, "_CACHE", {})
    first = resolve_identity(Settings(data_dir=tmp_path))
    bundle = tmp_path / "secrets" / "c2pa.pem"
    assert bundle.stat().st_mode & 0o777 == 0o600 and "generated now" in first.source
    monkeypatch.setattr(content_credentials, "_CACHE", {})
    again = resolve_identity(Settings(data_dir=tmp_path))
    assert again.subject == first.subject and again.source == str(bundle)


def test_operator_certificate_signs(tmp_path: Path, identity: SigningIdentity) -> None:
    pem = tmp_path / "operator.pem"
    pem.write_text(new_identity_pem())
    mine = resolve_identity(Settings(data_dir=tmp_path / "data", c2pa_cert=pem, c2pa_key=pem))
    assert "SOUNDRY_C2PA_CERT" in mine.source
    signed = sign_generated(tone("flac"), "flac", mine, GENERATION)
    assert verify(signed, "flac", mine).trusted and not verify(signed, "flac", identity).trusted


def _leaf_without_eku() -> tuple[bytes, bytes]:
    """A self-signed certificate with a matching key that C2PA refuses (no ExtendedKeyUsage)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no eku")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.mark.parametrize("case", ["garbage", "missing", "alone", "other key", "no eku"])
def test_bad_operator_certificate_is_refused_naming_the_setting(tmp_path: Path, case: str) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    good = new_identity_pem()
    cert.write_text(good)
    key.write_text(good)
    named = "SOUNDRY_C2PA_CERT"
    if case == "garbage":
        cert.write_text("not a certificate\n")
    elif case == "missing":
        cert = tmp_path / "nope.pem"
    elif case == "alone":
        key = None  # type: ignore[assignment]
        named = "SOUNDRY_C2PA_KEY"
    elif case == "other key":
        key.write_text(new_identity_pem())
        named = "SOUNDRY_C2PA_KEY"
    else:
        leaf, leaf_key = _leaf_without_eku()
        cert.write_bytes(leaf)
        key.write_bytes(leaf_key)
    settings = Settings(data_dir=tmp_path / "data", c2pa_cert=cert, c2pa_key=key)
    with pytest.raises(SystemExit) as info:
        checked_secrets(settings)
    message = str(info.value)
    assert named in message and "Traceback" not in message, message
