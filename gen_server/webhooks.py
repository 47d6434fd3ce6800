"""Job webhooks (Standard Webhooks): URL policy, event bodies, signing, pinned delivery, retry schedule.

Each event is one POST of ``{"type": "job.started" | "job.progress" | "job.completed", "timestamp":
ISO 8601, "data": <the job>}`` with the headers of the Standard Webhooks specification
(https://www.standardwebhooks.com, as OpenAI and Replicate send them): ``webhook-id`` (one per event,
the same on every retry, for de-duplication), ``webhook-timestamp`` (unix seconds of this attempt) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the installation's
``whsec_`` secret. Signing is the ``standardwebhooks`` package's; receivers verify with
``standardwebhooks.Webhook(secret).verify(body, headers)`` or any Standard Webhooks library.

Delivery resolves the host once, checks every address (no private or loopback ones unless allowed)
and connects to a checked address while sending the original ``Host`` header and, for https, the
original name for SNI and the certificate check: a DNS answer that changes between the check and the
connection (DNS rebinding) cannot redirect the POST.
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel
from standardwebhooks.webhooks import Webhook

from gen_server.contract.spec import JobSpec, WebhookEvent
from gen_server.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

EVENT_TYPES: dict[WebhookEvent, str] = {
    "start": "job.started",
    "progress": "job.progress",
    "completed": "job.completed",
}
"""``webhook_events_filter`` value -> the ``type`` of the event it sends."""

RETRY_SCHEDULE_S: tuple[float, ...] = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600)
"""Waits before the 2nd, 3rd, ... attempt (the Standard Webhooks/Svix schedule); later ones wait 10 h."""
PROGRESS_INTERVAL_S = 0.5
"""At most one ``job.progress`` event per job this often."""
RETRY_JITTER = 0.2
"""Each wait is drawn within +-20 % of the schedule, so failed deliveries do not retry in lockstep."""


class WebhookAttempt(BaseModel):
    """One delivery attempt, listed on the job."""

    at: float
    type: str | None = None
    webhook_id: str | None = None
    status: int | None = None
    error: str | None = None


def retry_delay_s(failed_attempts: int, *, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after ``failed_attempts`` (>= 1) failed deliveries of one event, jitter included.

    5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h, each +-:data:`RETRY_JITTER`.
    """
    base = RETRY_SCHEDULE_S[min(max(failed_attempts, 1), len(RETRY_SCHEDULE_S)) - 1]
    return base * (1.0 + RETRY_JITTER * (2.0 * rng() - 1.0))


def new_webhook_id() -> str:
    """A fresh ``webhook-id`` (one per event; every retry of the event carries it)."""
    return f"msg_{uuid.uuid4().hex}"


def job_data(
    job_id: str,
    state: str,
    spec: dict[str, Any],
    *,
    progress: float,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The job as an event's ``data``: state, progress (0-1), spec, result or error, links."""
    links = {"self": f"/v1/jobs/{job_id}", **({"audio": f"/v1/jobs/{job_id}/audio"} if result else {})}
    return {
        "id": job_id,
        "state": state,
        "progress": round(progress, 4),
        "spec": spec,
        "result": result,
        "error": error,
        "links": links,
    }


def event_body(event_type: str, data: dict[str, Any], at: datetime | None = None) -> bytes:
    """``{"type", "timestamp", "data"}`` as compact JSON; ``timestamp`` is when the event happened (UTC)."""
    when = (at or datetime.now(UTC)).astimezone(UTC)
    payload = {"type": event_type, "timestamp": when.isoformat(timespec="milliseconds"), "data": data}
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_headers(secret: str, webhook_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (signed by the ``standardwebhooks`` package)."""
    moment = datetime.fromtimestamp(int(time.time() if now is None else now), UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, moment, body.decode()),
    }


def _checked_url(url: str, field: str) -> httpx.URL:
    if len(url) > 2000:
        raise InvalidInput("callback_url is longer than 2000 characters", field=field)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError) as e:
        raise InvalidInput("callback_url is not a valid URL", field=field) from e
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput("callback_url must be an http(s) URL with a host", field=field)
    return parsed


def resolve(
    url: str, *, allow_private: bool, field: str = "callback_url"
) -> tuple[httpx.URL, list[IPAddress]]:
    """Parse ``url`` and resolve its host once; every address must be global unless ``allow_private``.

    Returns:
        The parsed URL and its addresses in resolver order (no duplicates).

    Raises:
        InvalidInput: naming ``field``.
    """
    parsed = _checked_url(url, field)
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded; IPv6 without brackets
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise InvalidInput(f"callback_url host '{parsed.host}' does not resolve", field=field) from e
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
    if not allow_private:
        for address in addresses:
            if not address.is_global:
                raise InvalidInput(
                    f"callback_url points at a private or loopback address ({address}); "
                    "set SOUNDRY_ALLOW_PRIVATE_WEBHOOKS=1 to allow it",
                    field=field,
                )
    if not addresses:
        raise InvalidInput(f"callback_url host '{parsed.host}' does not resolve", field=field)
    return parsed, addresses


def check_url(url: str, *, allow_private: bool, field: str = "callback_url") -> str:
    """Refuse non-HTTP URLs and, unless allowed, hosts resolving to private/loopback addresses.

    With ``allow_private`` the host is not resolved here (it may only resolve where workers run);
    every delivery resolves and checks it again.

    Raises:
        InvalidInput: naming ``field``.
    """
    if allow_private:
        _checked_url(url, field)
    else:
        resolve(url, allow_private=False, field=field)
    return url


def pinned_request(
    client: httpx.Client, url: httpx.URL, address: IPAddress, body: bytes, headers: dict[str, str]
) -> httpx.Request:
    """A POST of ``body`` to ``url`` that connects to ``address``: the URL's host is replaced by the
    address while the ``Host`` header and (https) the TLS server name stay the original host's."""
    host_header = url.netloc.decode("ascii")  # host[:port] as the URL gives it, IDNA-encoded
    request = client.build_request(
        "POST",
        url.copy_with(host=str(address)),
        content=body,
        headers={**headers, "Host": host_header},
        extensions={"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {},
    )
    return request


def deliver(
    url: str,
    body: bytes,
    secret: str,
    webhook_id: str,
    *,
    allow_private: bool,
    event_type: str | None = None,
    timeout_s: float = 15.0,
    verify: ssl.SSLContext | bool = True,
) -> WebhookAttempt:
    """POST ``body`` once (to the first checked address that accepts a connection); never raises.

    The attempt records the HTTP status or the error. Proxies from the environment are not used:
    the connection must go to the address that was checked. The response body is not read.
    """
    now = time.time()
    attempt = WebhookAttempt(at=now, type=event_type, webhook_id=webhook_id)
    try:
        parsed, addresses = resolve(url, allow_private=allow_private)
    except InvalidInput as e:
        return attempt.model_copy(update={"error": e.message})
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Soundry-Webhook/2",
        **signed_headers(secret, webhook_id, body, now),
    }
    error = "no address"
    with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False, verify=verify) as client:
        for address in addresses:
            try:
                response = client.send(pinned_request(client, parsed, address, body, headers), stream=True)
                response.close()
                return attempt.model_copy(update={"status": response.status_code})
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                error = f"{type(e).__name__} ({address}): {e}"
                continue  # the next checked address
            except httpx.HTTPError as e:
                return attempt.model_copy(update={"error": f"{type(e).__name__}: {e}"})
    return attempt.model_copy(update={"error": error})


EventSender = Callable[[str, bytes, bool], None]
"""``send(event type, body, urgent)``: hands one event to delivery; must return at once and never raise."""


class JobEvents:
    """The webhook events of one run of a job, as its ``webhook_events_filter`` asks.

    ``progress`` sends at most one event per ``min_interval_s`` (:data:`PROGRESS_INTERVAL_S`) and only
    when the fraction changed. Events the job did not ask for (or a job without ``callback_url``) send
    nothing. Thread-safe; ``send`` does the queuing (workers/webhook_tasks.py).
    """

    def __init__(
        self,
        spec: JobSpec,
        *,
        send: EventSender,
        min_interval_s: float = PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.min_interval_s = min_interval_s
        self._send = send
        self._clock = clock
        self._last_progress_at: float | None = None
        self._last_fraction: float | None = None
        self._lock = threading.Lock()

    def wants(self, event: WebhookEvent) -> bool:
        return bool(self.spec.callback_url) and event in self.spec.webhook_events_filter

    def started(self) -> None:
        if self.wants("start"):
            self._emit("start", "running", 0.0)

    def progress(self, fraction: float) -> None:
        """``fraction`` done (0-1) of the model call; throttled."""
        if not self.wants("progress"):
            return
        with self._lock:
            now = self._clock()
            last = self._last_progress_at
            if (last is not None and now - last < self.min_interval_s) or fraction == self._last_fraction:
                return
            self._last_progress_at, self._last_fraction = now, fraction
            at = datetime.now(UTC)  # taken with the decision: event timestamps keep the spacing
        self._emit("progress", "running", fraction, at=at)

    def completed(self, state: str, result: dict[str, Any] | None, error: dict[str, Any] | None) -> None:
        """The job ended: ``state`` is succeeded, failed or cancelled."""
        if self.wants("completed"):
            progress = 1.0 if state == "succeeded" else (self._last_fraction or 0.0)
            self._emit("completed", state, progress, result, error)

    def _emit(
        self,
        event: WebhookEvent,
        state: str,
        progress: float,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        spec = self.spec.model_dump(mode="json")
        data = job_data(self.spec.job_id, state, spec, progress=progress, result=result, error=error)
        event_type = EVENT_TYPES[event]
        self._send(event_type, event_body(event_type, data, at), event != "progress")
