"""The one HTTP client for Soundry's API, used by the UI, the batch runner and other Python apps."""

from __future__ import annotations

import builtins
import time
from typing import Any

import httpx

TERMINAL_STATES = ("succeeded", "failed", "cancelled")


class ApiError(Exception):
    """A non-2xx answer, carrying the API's ``{"error": {...}}`` body."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class SoundryClient:
    """Thin synchronous client: every call returns the API's JSON (or bytes for audio)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def with_key(self, api_key: str | None) -> SoundryClient:
        """The same server, another caller."""
        return SoundryClient(self.base_url, api_key, timeout_s=self._http.timeout.read or 30.0)

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            err = response.json()["error"]
            raise ApiError(response.status_code, err["code"], err["message"], err.get("field"))
        except (ValueError, KeyError, TypeError):
            raise ApiError(response.status_code, "http_error", response.text[:500]) from None

    def submit(self, request: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._check(self._http.post("/v1/jobs", json=request, headers=headers)).json()

    def get(self, job_id: str) -> dict[str, Any]:
        return self._check(self._http.get(f"/v1/jobs/{job_id}")).json()

    def list(self, **filters: Any) -> builtins.list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._check(self._http.get("/v1/jobs", params=params)).json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._check(self._http.delete(f"/v1/jobs/{job_id}")).json()

    def audio(self, job_id: str, fmt: str | None = None) -> bytes:
        params = {"format": fmt} if fmt else {}
        return self._check(self._http.get(f"/v1/jobs/{job_id}/audio", params=params)).content

    def models(self) -> builtins.list[dict[str, Any]]:
        return self._check(self._http.get("/v1/models")).json()["data"]

    def upload(self, data: bytes, filename: str = "reference.wav") -> dict[str, Any]:
        files = {"file": (filename, data, "application/octet-stream")}
        return self._check(self._http.post("/v1/uploads", files=files)).json()

    def wait(self, job_id: str, timeout_s: float = 300.0, poll_s: float = 0.25) -> dict[str, Any]:
        """Poll until the job ends (or ``timeout_s`` passes); returns its last view."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job["state"] in TERMINAL_STATES or time.monotonic() > deadline:
                return job
            time.sleep(poll_s)

    def generate(self, request: dict[str, Any], timeout_s: float = 300.0) -> tuple[dict[str, Any], bytes]:
        """Submit, wait and download: the whole round trip (raises ApiError when the job fails)."""
        job = self.wait(self.submit(request)["id"], timeout_s=timeout_s)
        if job["state"] != "succeeded":
            err = job.get("error") or {"code": job["state"], "message": f"job ended {job['state']}"}
            raise ApiError(409, err["code"], err["message"], err.get("field"))
        return job, self.audio(job["id"])

    def close(self) -> None:
        self._http.close()
