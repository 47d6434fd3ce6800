"""Webhooks end to end: a real ``soundry serve`` (worker included) POSTs Standard Webhooks events to an
HTTP receiver on loopback; the ``standardwebhooks`` package verifies them with the secret that serve
generated in its data folder."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import webhooks as standardwebhooks_module
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gen_server.client import SoundryClient
from tests.helpers import running_server

pytestmark = pytest.mark.e2e

STEP_MS = 10.0
"""Least time per decoding step of the dev music model here: a 2 s clip (100 steps) decodes in >= 1 s."""


class Receiver:
    """An HTTP server on 127.0.0.1 recording each POST; the first ``fail_first`` answers are 500."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                status = 500 if receiver.fail_first > 0 else 204
                receiver.fail_first -= 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.calls) < n and time.monotonic() < deadline:
            time.sleep(0.1)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.calls]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``soundry serve`` on a fresh data folder (secrets generated there), private webhooks allowed."""
    data_dir = tmp_path_factory.mktemp("hooks")
    with running_server(
        data_dir, "--no-ui", SOUNDRY_ALLOW_PRIVATE_WEBHOOKS="1", SOUNDRY_DEV_STEP_MS=str(STEP_MS)
    ) as url:
        yield url, data_dir


@pytest.fixture(scope="module")
def hook_client(hook_server: tuple[str, Path]) -> Iterator[SoundryClient]:
    c = SoundryClient(hook_server[0], timeout_s=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def secret(hook_server: tuple[str, Path]) -> str:
    path = hook_server[1] / "secrets" / "webhook.secret"
    assert path.stat().st_mode & 0o777 == 0o600
    return path.read_text().strip()


def verify_later(secret: str, body: bytes, headers: dict[str, str], later: timedelta) -> Any:
    """``Webhook(secret).verify`` as if run ``later`` than now: a delivery replayed that much later."""

    class Shifted(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + later

    real = standardwebhooks_module.datetime
    standardwebhooks_module.datetime = Shifted  # type: ignore[misc]
    try:
        return Webhook(secret).verify(body, headers)
    finally:
        standardwebhooks_module.datetime = real  # type: ignore[misc]


def test_completed_event_is_signed_and_retried_with_the_same_id(
    hook_client: SoundryClient, receiver: Receiver, secret: str
) -> None:
    receiver.fail_first = 1  # the first delivery gets a 500: retried about 5 s later
    job = hook_client.submit({"kind": "speech", "text": "Webhook test.", "callback_url": receiver.url})
    done = hook_client.wait(job.id, timeout_s=300)
    assert done.state == "succeeded" and done.result is not None
    receiver.wait(2, timeout_s=120)
    assert len(receiver.calls) == 2
    (first_headers, first_body), (headers, body) = receiver.calls
    assert first_body == body
    assert headers["webhook-id"] == first_headers["webhook-id"] and headers["webhook-id"].startswith("msg_")
    assert int(headers["webhook-timestamp"]) >= int(first_headers["webhook-timestamp"]) + 3  # re-signed
    for h, b in receiver.calls:
        payload = Webhook(secret).verify(b, h)
    assert payload["type"] == "job.completed"
    datetime.fromisoformat(payload["timestamp"])
    data = payload["data"]
    assert data["id"] == job.id and data["state"] == "succeeded" and data["progress"] == 1.0
    assert data["result"]["sha256"] == done.result.sha256
    assert data["spec"]["webhook_events_filter"] == ["completed"]

    # the same verifier refuses a replay (the same request 6 minutes later) and an altered body
    assert verify_later(secret, body, headers, timedelta(seconds=30))["data"]["id"] == job.id
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_later(secret, body, headers, timedelta(minutes=6))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b'"succeeded"', b'"failed"'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_other"})

    deadline = time.monotonic() + 120
    while len(hook_client.get(job.id).webhook_attempts) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    attempts = hook_client.get(job.id).webhook_attempts
    assert [a["status"] for a in attempts] == [500, 204]
    assert {a["webhook_id"] for a in attempts} == {headers["webhook-id"]}
    assert {a["type"] for a in attempts} == {"job.completed"}


def test_event_filter_sends_start_progress_and_completed(
    hook_client: SoundryClient, receiver: Receiver, secret: str
) -> None:
    job = hook_client.submit(
        {
            "kind": "music",
            "prompt": "webhook progress",
            "duration_s": 2,
            "callback_url": receiver.url,
            "webhook_events_filter": ["start", "progress", "completed"],
        }
    )
    assert hook_client.wait(job.id, timeout_s=300).state == "succeeded"
    deadline = time.monotonic() + 120
    while not any(e["type"] == "job.completed" for e in receiver.events()) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # any straggler
    for headers, body in receiver.calls:
        Webhook(secret).verify(body, headers)
    events = receiver.events()
    assert len({h["webhook-id"] for h, _ in receiver.calls}) == len(events)  # one id per event
    assert all(e["data"]["id"] == job.id for e in events)
    ordered = sorted(events, key=lambda e: datetime.fromisoformat(e["timestamp"]))
    types = [e["type"] for e in ordered]
    progress = [e for e in ordered if e["type"] == "job.progress"]
    assert types == ["job.started"] + ["job.progress"] * len(progress) + ["job.completed"], types
    assert events[0]["type"] == "job.started"  # the first to arrive too
    assert len(progress) >= 2, types  # >= 1 s of decoding
    times = [datetime.fromisoformat(e["timestamp"]).astimezone(UTC) for e in progress]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(g >= 0.49 for g in gaps), gaps  # at most 2 per second
    fractions = [e["data"]["progress"] for e in progress]
    assert fractions == sorted(fractions) and all(0 < f <= 1 for f in fractions)
    assert all(e["data"]["state"] == "running" for e in progress)
    assert ordered[-1]["data"]["state"] == "succeeded"
    print(f"\nwebhook events: {types} (progress gaps {', '.join(f'{g:.2f}' for g in gaps)} s)")
