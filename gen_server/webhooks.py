"""Job webhooks: URL policy, HMAC-SHA256 signatures, delivery with a record of every attempt.

The body is the job's final view as JSON. Headers: ``X-Soundry-Timestamp`` (unix seconds) and
``X-Soundry-Signature: sha256=<hex>`` where the digest is HMAC-SHA256(secret, f"{timestamp}.{body}").
Receivers verify with :func:`verify` (or the same two lines in any language).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from gen_server.errors import InvalidInput

SIGNATURE_HEADER = "X-Soundry-Signature"
TIMESTAMP_HEADER = "X-Soundry-Timestamp"


class WebhookAttempt(BaseModel):
    at: float
    status: int | None = None
    error: str | None = None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300) -> bool:
    """True when ``signature`` is ours for ``body`` and the timestamp is fresh."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def check_url(url: str, *, allow_private: bool, field: str = "callback_url") -> str:
    """Refuse non-HTTP URLs and, unless allowed, hosts resolving to private/loopback addresses.

    Raises:
        InvalidInput: naming ``field``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("callback_url must be an http(s) URL with a host", field=field)
    if len(url) > 2000:
        raise InvalidInput("callback_url is longer than 2000 characters", field=field)
    if allow_private:
        return url
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as e:
        raise InvalidInput(f"callback_url host '{parts.hostname}' does not resolve", field=field) from e
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InvalidInput(
                f"callback_url points at a private or loopback address ({address}); "
                "set SOUNDRY_ALLOW_PRIVATE_WEBHOOKS=1 to allow it",
                field=field,
            )
    return url


def deliver(
    url: str, body: bytes, secret: str, *, allow_private: bool, timeout_s: float = 10.0
) -> WebhookAttempt:
    """POST ``body`` once; the attempt records the HTTP status or the error (never raises)."""
    now = time.time()
    try:
        check_url(url, allow_private=allow_private)  # again at delivery: DNS may have changed
        ts = int(now)
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(secret, ts, body),
            "User-Agent": "Soundry-Webhook/1",
        }
        response = httpx.post(url, content=body, headers=headers, timeout=timeout_s, follow_redirects=False)
        return WebhookAttempt(at=now, status=response.status_code)
    except InvalidInput as e:
        return WebhookAttempt(at=now, error=e.message)
    except httpx.HTTPError as e:
        return WebhookAttempt(at=now, error=f"{type(e).__name__}: {e}")


def body_for(
    job_id: str,
    state: str,
    spec: dict[str, object],
    result: dict[str, object] | None,
    error: dict[str, object] | None,
) -> bytes:
    """The webhook body: the job's final state with its spec and result or error."""
    import json

    payload = {
        "id": job_id,
        "state": state,
        "spec": spec,
        "result": result,
        "error": error,
        "links": {"self": f"/v1/jobs/{job_id}", **({"audio": f"/v1/jobs/{job_id}/audio"} if result else {})},
    }
    return json.dumps(payload, separators=(",", ":")).encode()
