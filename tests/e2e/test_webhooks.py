"""Webhooks: a receiver on loopback gets the signed final job JSON."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gen_server.client import SoundryClient
from gen_server.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

pytestmark = pytest.mark.e2e

DEFAULT_SECRET = "soundry-default-webhook-secret"


class Receiver:
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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_webhook_is_signed_and_retried(client: SoundryClient, receiver: Receiver) -> None:
    receiver.fail_first = 1  # first delivery gets a 500: must be retried
    job = client.submit({"kind": "speech", "text": "Webhook test.", "callback_url": receiver.url})
    done = client.wait(job["id"], timeout_s=120)
    assert done["state"] == "succeeded"
    receiver.wait(2)
    assert len(receiver.calls) == 2
    headers, body = receiver.calls[-1]
    assert verify(DEFAULT_SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify("wrong-secret", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["id"] == job["id"] and payload["state"] == "succeeded"
    assert payload["result"]["sha256"] == done["result"]["sha256"]
    deadline = time.monotonic() + 10
    while len(client.get(job["id"])["webhook_attempts"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    attempts = client.get(job["id"])["webhook_attempts"]
    assert [a["status"] for a in attempts] == [500, 204]
