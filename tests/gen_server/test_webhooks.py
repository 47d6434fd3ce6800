"""Webhooks without a worker: Standard Webhooks signing, the retry schedule, event filtering and
throttling, the request contract, and delivery pinned to the address that was checked (DNS rebinding),
over plain HTTP and over TLS with the original name for SNI and the certificate check."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gen_server import webhooks
from gen_server.contract.spec import JobSpec
from gen_server.instance_secrets import new_webhook_secret
from gen_server.main import create_app
from gen_server.redis_server import EmbeddedRedis
from gen_server.settings import Settings
from gen_server.webhooks import (
    RETRY_SCHEDULE_S,
    JobEvents,
    deliver,
    event_body,
    job_data,
    retry_delay_s,
    signed_headers,
)

HOOK_HOST = "hooks.example.test"
SECRET = new_webhook_secret()


# ---- signing ---------------------------------------------------------------------------------------


def test_signed_headers_verify_with_the_standardwebhooks_package() -> None:
    body = event_body("job.completed", {"id": "j1", "state": "succeeded"})
    headers = signed_headers(SECRET, "msg_1", body)
    assert headers["webhook-signature"].startswith("v1,")
    payload = Webhook(SECRET).verify(body, headers)
    assert payload["type"] == "job.completed" and payload["data"]["id"] == "j1"
    dt.datetime.fromisoformat(payload["timestamp"])  # ISO 8601
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"succeeded", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError, match="too old"):
        old = signed_headers(SECRET, "msg_1", body, now=dt.datetime.now(dt.UTC).timestamp() - 600)
        Webhook(SECRET).verify(body, old)


def test_event_body_wraps_the_job_with_type_and_timestamp() -> None:
    at = dt.datetime(2026, 11, 24, 10, 0, 0, 123000, tzinfo=dt.UTC)
    data = job_data("j1", "succeeded", {"kind": "speech"}, progress=1.0, result={"sha256": "x"})
    payload = json.loads(event_body("job.completed", data, at))
    assert payload == {
        "type": "job.completed",
        "timestamp": "2026-11-24T10:00:00.123+00:00",
        "data": {
            "id": "j1",
            "state": "succeeded",
            "progress": 1.0,
            "spec": {"kind": "speech"},
            "result": {"sha256": "x"},
            "error": None,
            "links": {"self": "/v1/jobs/j1", "audio": "/v1/jobs/j1/audio"},
        },
    }


# ---- retry schedule ---------------------------------------------------------------------------------


def test_retry_schedule_spreads_over_hours_with_jitter() -> None:
    hours = [retry_delay_s(n, rng=lambda: 0.5) / 3600 for n in range(1, 8)]
    assert hours == pytest.approx([5 / 3600, 5 / 60, 0.5, 2, 5, 10, 10])
    assert sum(hours) == pytest.approx(27.6, abs=0.1)  # 8 attempts (the default) span about 28 h
    for n, base in enumerate(RETRY_SCHEDULE_S, start=1):
        assert retry_delay_s(n, rng=lambda: 0.0) == pytest.approx(base * 0.8)
        assert retry_delay_s(n, rng=lambda: 1.0) == pytest.approx(base * 1.2)
    drawn = {round(retry_delay_s(1), 3) for _ in range(50)}
    assert len(drawn) > 10 and all(4.0 <= d <= 6.0 for d in drawn)


# ---- events: filter and throttle --------------------------------------------------------------------


def spec(**extra: Any) -> JobSpec:
    base: dict[str, Any] = {
        "job_id": "j1",
        "kind": "music",
        "model": "dev-musicgen-tiny",
        "prompt": "x",
        "seed": 1,
        "sampling": {},
        "post": {},
        "callback_url": "http://hooks.example.test/h",
    }
    return JobSpec.model_validate(base | extra)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_job_events_follow_the_filter_and_throttle_progress() -> None:
    sent: list[tuple[str, dict[str, Any], bool]] = []
    clock = FakeClock()
    events = JobEvents(
        spec(webhook_events_filter=("start", "progress", "completed")),
        send=lambda t, body, urgent: sent.append((t, json.loads(body), urgent)),
        clock=clock,
    )
    events.started()
    for i in range(1, 41):  # 40 reports, 0.1 s apart: 4 s
        clock.now += 0.1
        events.progress(i / 40)
    events.completed("succeeded", {"sha256": "x"}, None)
    types = [t for t, _, _ in sent]
    assert types[0] == "job.started" and types[-1] == "job.completed"
    progress = [p for t, p, _ in sent if t == "job.progress"]
    assert 7 <= len(progress) <= 9  # at most one per 0.5 s over 4 s
    fractions = [p["data"]["progress"] for p in progress]
    assert fractions == sorted(fractions) and all(p["data"]["state"] == "running" for p in progress)
    assert [urgent for _, _, urgent in sent] == [True] + [False] * len(progress) + [True]
    assert sent[-1][1]["data"]["result"] == {"sha256": "x"} and sent[-1][1]["data"]["progress"] == 1.0


def test_job_events_default_to_completed_only_and_need_a_url() -> None:
    sent: list[str] = []
    events = JobEvents(spec(), send=lambda t, body, urgent: sent.append(t))
    events.started()
    events.progress(0.5)
    events.completed("failed", None, {"code": "x", "message": "y", "field": None})
    assert sent == ["job.completed"]
    quiet = JobEvents(
        spec(callback_url=None, webhook_events_filter=("start",)), send=lambda *a: sent.append("!")
    )
    quiet.started()
    quiet.completed("succeeded", None, None)
    assert sent == ["job.completed"]


@pytest.fixture(scope="module")
def api(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    redis.Redis.from_url(redis_server.url).flushall()
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("hooks"), dev_models=True, allow_private_webhooks=True
    )
    with TestClient(create_app(settings, redis_url=redis_server.url, ui=False)) as client:
        yield client


def test_events_filter_is_validated_and_kept_in_event_order(api: TestClient) -> None:
    body = {"kind": "sfx", "prompt": "a door", "callback_url": "http://127.0.0.1:9/h"}
    r = api.post("/v1/jobs", json=body | {"webhook_events_filter": ["completed", "start", "start"]})
    assert r.status_code == 202, r.text
    assert r.json()["spec"]["webhook_events_filter"] == ["start", "completed"]
    assert api.post("/v1/jobs", json=body).json()["spec"]["webhook_events_filter"] == ["completed"]
    for bad, message in ((["finished"], "Input should be"), ([], "at least 1")):
        r = api.post("/v1/jobs", json=body | {"webhook_events_filter": bad})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"].startswith("webhook_events_filter") and message in error["message"]
    r = api.post("/v1/jobs", json={"kind": "sfx", "prompt": "a door", "webhook_events_filter": ["start"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "webhook_events_filter"
    assert "callback_url" in r.json()["error"]["message"]


# ---- delivery pinned to the checked address ---------------------------------------------------------


class Receiver:
    """An HTTP(S) server on ``address`` that records each POST (headers, body, TLS server name)."""

    def __init__(self, address: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.server_names: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer((address, port), Handler)
        if tls is not None:
            tls.sni_callback = lambda sock, name, ctx: receiver.server_names.append(name)  # type: ignore[assignment]
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Rebinding:
    """``socket.getaddrinfo`` for HOOK_HOST: ``first`` on the first lookup, ``later`` on every other one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, first: str, later: str) -> None:
        self.lookups = 0
        real = socket.getaddrinfo

        def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != HOOK_HOST:
                return real(host, port, *args, **kwargs)
            self.lookups += 1
            address = first if self.lookups == 1 else later
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

        monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_delivery_connects_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = Receiver("127.0.0.1")
    try:
        rebound = Receiver("127.0.0.2", checked.port)  # where a second lookup would send the POST
    except OSError:
        checked.close()
        pytest.skip("127.0.0.2 is not a loopback address here")
    try:
        dns = Rebinding(monkeypatch, first="127.0.0.1", later="127.0.0.2")
        url = f"http://{HOOK_HOST}:{checked.port}/hook?x=1"
        body = event_body("job.completed", {"id": "j1"})
        attempt = deliver(url, body, SECRET, "msg_pinned", allow_private=True, event_type="job.completed")
        assert attempt.status == 204, attempt
        assert (attempt.webhook_id, attempt.type) == ("msg_pinned", "job.completed")
        assert dns.lookups == 1
        assert rebound.calls == []
        headers, received = checked.calls[0]
        assert headers["Host"] == f"{HOOK_HOST}:{checked.port}"
        assert received == body
        assert Webhook(SECRET).verify(received, headers)["data"]["id"] == "j1"
        assert socket.getaddrinfo(HOOK_HOST, 80)[0][4][0] == "127.0.0.2"  # the resolver did change its answer
    finally:
        checked.close()
        rebound.close()


def test_a_checked_public_address_is_not_swapped_for_a_private_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without allow_private: checked 93.184.216.34 (public); the later answer 127.0.0.1 is never used."""
    Rebinding(monkeypatch, first="93.184.216.34", later="127.0.0.1")
    connected: list[Any] = []

    def fake_connect(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        connected.append(address)
        raise ConnectionRefusedError("test: no network")

    monkeypatch.setattr(socket, "create_connection", fake_connect)
    attempt = deliver(f"http://{HOOK_HOST}/hook", b"{}", SECRET, "msg_x", allow_private=False, timeout_s=2)
    assert attempt.status is None and attempt.error and "93.184.216.34" in attempt.error
    assert [a[0] for a in connected] == ["93.184.216.34"]


def test_private_addresses_are_refused_at_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    Rebinding(monkeypatch, first="10.1.2.3", later="10.1.2.3")
    attempt = deliver(f"http://{HOOK_HOST}/hook", b"{}", SECRET, "msg_x", allow_private=False)
    assert attempt.status is None and "private or loopback" in (attempt.error or "")
    assert webhooks.resolve("http://[::1]:8/x", allow_private=True)[1] == [ipaddress.ip_address("::1")]


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (and its key) as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_delivery_keeps_the_hostname_for_sni_and_the_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path, HOOK_HOST)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    receiver = Receiver("127.0.0.1", tls=server_tls)
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        Rebinding(monkeypatch, first="127.0.0.1", later="127.0.0.2")
        url = f"https://{HOOK_HOST}:{receiver.port}/hook"
        attempt = deliver(url, b"{}", SECRET, "msg_tls", allow_private=True, verify=trust)
        assert attempt.status == 204, attempt
        assert receiver.server_names == [HOOK_HOST]
        assert receiver.calls[0][0]["Host"] == f"{HOOK_HOST}:{receiver.port}"

    finally:
        receiver.close()
    # the certificate is checked against the URL's host name: one for another name is refused
    other_cert, other_key = self_signed(tmp_path, "other.example.test")
    other_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other_tls.load_cert_chain(other_cert, other_key)
    other = Receiver("127.0.0.1", tls=other_tls)
    try:
        Rebinding(monkeypatch, first="127.0.0.1", later="127.0.0.1")
        url = f"https://{HOOK_HOST}:{other.port}/hook"
        trust_other = ssl.create_default_context(cafile=str(other_cert))
        refused = deliver(url, b"{}", SECRET, "msg_tls2", allow_private=True, verify=trust_other)
        assert refused.status is None and HOOK_HOST in (refused.error or ""), refused
        assert other.calls == []
    finally:
        other.close()
