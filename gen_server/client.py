"""The one HTTP client for Soundry's API, used by the UI, the batch runner and other Python apps."""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Iterator
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

    def submit(
        self, request: dict[str, Any], *, idempotency_key: str | None = None, lane: str = "interactive"
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        params = {"lane": lane} if lane != "interactive" else None
        return self._check(self._http.post("/v1/jobs", json=request, headers=headers, params=params)).json()

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

    def captions(self, job_id: str, fmt: str = "srt") -> str:
        """A speech job's captions (``srt``, ``vtt`` or ``json``)."""
        return self._check(self._http.get(f"/v1/jobs/{job_id}/captions", params={"format": fmt})).text

    def models(self) -> builtins.list[dict[str, Any]]:
        return self._check(self._http.get("/v1/models")).json()["data"]

    def upload(self, data: bytes, filename: str = "reference.wav") -> dict[str, Any]:
        files = {"file": (filename, data, "application/octet-stream")}
        return self._check(self._http.post("/v1/uploads", files=files)).json()

    def events(
        self, job_id: str, *, poll_s: float = 0.25, read_timeout_s: float | None = 60.0
    ) -> Iterator[dict[str, Any]]:
        """Follow ``GET /v1/jobs/{id}/events`` (server-sent events): yield the job's view on every change.

        The stream ends after the view whose state is terminal. A job that stays queued longer than
        ``read_timeout_s`` without any change raises ``httpx.ReadTimeout``; call again to resume (the
        first event of a new stream is always the current view).

        Args:
            job_id: The job to follow.
            poll_s: How often the server checks the job (0.05 to 5 s).
            read_timeout_s: Longest silence to accept between events, in seconds (``None``: forever).

        Raises:
            ApiError: The job is unknown (404), the key is refused (401) or rate limited (429).
        """
        timeout = httpx.Timeout(self._http.timeout.connect or 30.0, read=read_timeout_s)
        with self._http.stream(
            "GET", f"/v1/jobs/{job_id}/events", params={"poll_s": poll_s}, timeout=timeout
        ) as response:
            if not response.is_success:
                response.read()
                self._check(response)
            event, data = "message", []
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    view: dict[str, Any] = json.loads("\n".join(data))
                    yield view
                    if event == "end" or view.get("state") in TERMINAL_STATES:
                        return
                    event, data = "message", []

    def progress(self, job_id: str, **kwargs: Any) -> Iterator[tuple[str, float]]:
        """``(state, progress 0..1)`` pairs from :meth:`events` until the job ends."""
        for view in self.events(job_id, **kwargs):
            yield view["state"], float(view.get("progress", 0.0))

    def wait(self, job_id: str, timeout_s: float = 300.0, poll_s: float = 0.25) -> dict[str, Any]:
        """Poll until the job ends (or ``timeout_s`` passes); returns its last view."""
        return _poll_until_ended(lambda: self.get(job_id), timeout_s, poll_s)

    def generate(self, request: dict[str, Any], timeout_s: float = 300.0) -> tuple[dict[str, Any], bytes]:
        """Submit, wait and download: the whole round trip (raises ApiError when the job fails)."""
        job = self.wait(self.submit(request)["id"], timeout_s=timeout_s)
        if job["state"] != "succeeded":
            err = job.get("error") or {"code": job["state"], "message": f"job ended {job['state']}"}
            raise ApiError(409, err["code"], err["message"], err.get("field"))
        return job, self.audio(job["id"])

    def close(self) -> None:
        self._http.close()

    def submit_batch(self, data: bytes, filename: str, *, fmt: str | None = None) -> dict[str, Any]:
        """``POST /v1/batches``: validate a batch file (YAML, JSONL, CSV) and queue its jobs.

        Args:
            data: The file's bytes.
            filename: Its name; the suffix (``.yaml``, ``.jsonl``, ``.csv``) picks the format unless ``fmt``.
            fmt: ``yaml``, ``jsonl`` or ``csv`` to override the suffix.

        Raises:
            BatchRejected: the file has errors (422); ``errors`` lists each with file, line and column.
        """
        files = {"file": (filename, data, "application/octet-stream")}
        params = {"format": fmt} if fmt else {}
        response = self._http.post("/v1/batches", files=files, params=params)
        if response.status_code == 422:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("errors"), builtins.list):
                err = body.get("error") or {}
                raise BatchRejected(
                    422,
                    err.get("code", "invalid_batch"),
                    err.get("message", "invalid batch file"),
                    err.get("field"),
                    errors=body["errors"],
                )
        return self._check(response).json()

    def batch(self, batch_id: str) -> dict[str, Any]:
        """``GET /v1/batches/{id}``: state, counts per state and every item with its job id."""
        return self._check(self._http.get(f"/v1/batches/{batch_id}")).json()

    def batches(self, limit: int = 50, offset: int = 0) -> builtins.list[dict[str, Any]]:
        """``GET /v1/batches``: the caller's batches, newest first."""
        params = {"limit": limit, "offset": offset}
        return self._check(self._http.get("/v1/batches", params=params)).json()

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """``DELETE /v1/batches/{id}``: cancel the batch's unfinished jobs."""
        return self._check(self._http.delete(f"/v1/batches/{batch_id}")).json()

    def batch_archive(self, batch_id: str) -> bytes:
        """``GET /v1/batches/{id}/archive``: a zip of the finished files, manifest.jsonl and summary.json."""
        return self._check(self._http.get(f"/v1/batches/{batch_id}/archive")).content

    def submit_scene(self, scene: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /v1/scenes``: queue a scene; the answer has its id and each component's job id.

        Raises:
            ApiError: 422 naming the item (``field`` like ``tracks[1].items[0].start_s``), 429, ...
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._check(self._http.post("/v1/scenes", json=scene, headers=headers)).json()

    def scene(self, scene_id: str) -> dict[str, Any]:
        """``GET /v1/scenes/{id}``: state, progress, each component's job and state, result, mix levels."""
        return self._check(self._http.get(f"/v1/scenes/{scene_id}")).json()

    def scene_export(self, scene_id: str, fmt: str = "zip") -> bytes:
        """``GET /v1/scenes/{id}/export``: the zip of a scene made with ``export: true`` (the mix, one stem
        per track, captions when it has speech, ``timeline.otio``, ``project.rpp``, ``manifest.json``).

        Raises:
            ApiError: 409 while the scene is not done or when it was made without ``export``; 404.
        """
        return self._check(self._http.get(f"/v1/scenes/{scene_id}/export", params={"format": fmt})).content

    def cancel_scene(self, scene_id: str) -> dict[str, Any]:
        """``DELETE /v1/scenes/{id}``: cancel the mix and every unfinished component."""
        return self._check(self._http.delete(f"/v1/scenes/{scene_id}")).json()

    def wait_scene(self, scene_id: str, timeout_s: float = 600.0, poll_s: float = 0.5) -> dict[str, Any]:
        """Poll until the scene ends (or ``timeout_s`` passes); returns its last view."""
        return _poll_until_ended(lambda: self.scene(scene_id), timeout_s, poll_s)


def _poll_until_ended(fetch: Callable[[], dict[str, Any]], timeout_s: float, poll_s: float) -> dict[str, Any]:
    """``fetch()`` every ``poll_s`` until its ``state`` is terminal or ``timeout_s`` passes; the last view."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = fetch()
        if view["state"] in TERMINAL_STATES or time.monotonic() > deadline:
            return view
        time.sleep(poll_s)


class BatchRejected(ApiError):
    """A batch file the server refused (422); ``errors`` holds ``{file, line, column, field, message}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        errors: builtins.list[dict[str, Any]],
    ) -> None:
        super().__init__(status, code, message, field)
        self.errors = errors
