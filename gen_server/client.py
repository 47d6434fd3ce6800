"""The one HTTP client for Soundry's API, used by the UI, the batch runner and other Python apps.

Answers come back as the contract's view models (:class:`JobView`, :class:`SceneView`,
:class:`BatchView`, :class:`ModelView`, :class:`UploadView`), validated, so a caller reads
``job.state``, not ``job["state"]``, and mypy checks it."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from gen_server.contract.batch import BatchSummaryView, BatchView
from gen_server.contract.catalog import ModelView
from gen_server.contract.result import JobView
from gen_server.contract.scene import SceneView
from gen_server.contract.upload import UploadView
from gen_server.contract.voice import CloningPolicyView, ConsentPhraseView, VoiceCreate, VoiceView

TERMINAL_STATES = ("succeeded", "failed", "cancelled")

View = TypeVar("View", bound=BaseModel)
_JOBS = TypeAdapter(list[JobView])
_BATCHES = TypeAdapter(list[BatchSummaryView])
_MODELS = TypeAdapter(list[ModelView])
_VOICES = TypeAdapter(list[VoiceView])
VOICE_CREATE_TIMEOUT_S = 180.0
"""How long :meth:`SoundryClient.create_voice` waits: the server waits up to its verification timeout."""


class ApiError(Exception):
    """A non-2xx answer, carrying the API's ``{"error": {...}}`` body."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class SoundryClient:
    """Thin synchronous client: every call returns a contract view (or bytes for audio)."""

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
    ) -> JobView:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        params = {"lane": lane} if lane != "interactive" else None
        answer = self._http.post("/v1/jobs", json=request, headers=headers, params=params)
        return self._view(JobView, answer)

    def get(self, job_id: str) -> JobView:
        return self._view(JobView, self._http.get(f"/v1/jobs/{job_id}"))

    def list(self, **filters: Any) -> builtins.list[JobView]:
        params = {k: v for k, v in filters.items() if v is not None}
        return _JOBS.validate_json(self._check(self._http.get("/v1/jobs", params=params)).content)

    def cancel(self, job_id: str) -> JobView:
        return self._view(JobView, self._http.delete(f"/v1/jobs/{job_id}"))

    def _view(self, model: type[View], response: httpx.Response) -> View:
        """``response``'s JSON body as ``model`` (after :meth:`_check`)."""
        return model.model_validate_json(self._check(response).content)

    def audio(self, job_id: str, fmt: str | None = None) -> bytes:
        params = {"format": fmt} if fmt else {}
        return self._check(self._http.get(f"/v1/jobs/{job_id}/audio", params=params)).content

    def captions(self, job_id: str, fmt: str = "srt") -> str:
        """A speech job's captions (``srt``, ``vtt`` or ``json``)."""
        return self._check(self._http.get(f"/v1/jobs/{job_id}/captions", params={"format": fmt})).text

    def models(self) -> builtins.list[ModelView]:
        return _MODELS.validate_python(self._check(self._http.get("/v1/models")).json()["data"])

    # ------------------------------------------------------------------------------- voice library

    def cloning_policy(self) -> CloningPolicyView:
        """``SOUNDRY_CLONING`` of the server: verified, open or off."""
        return self._view(CloningPolicyView, self._http.get("/v1/voices/policy"))

    def consent_phrase(self) -> ConsentPhraseView:
        """A phrase for the speaker to read in the consent clip, with its one-time code (15 minutes)."""
        return self._view(ConsentPhraseView, self._http.post("/v1/voices/consent-phrase"))

    def create_voice(
        self,
        name: str,
        references: builtins.list[bytes],
        consent: bytes,
        code: str,
        language: str = "en",
    ) -> VoiceView:
        """Upload the clips and create a voice; waits for the worker's consent verification.

        Raises:
            ApiError: 422 ``consent_refused`` naming the failed check, or naming the invalid field.
        """
        refs = [self.upload(data, f"reference-{i}.wav").id for i, data in enumerate(references)]
        body = VoiceCreate(
            name=name,
            language=language,
            reference_uploads=refs,
            consent_upload=self.upload(consent, "consent.wav").id,
            consent_code=code,
        )
        timeout = httpx.Timeout(self._http.timeout.connect or 30.0, read=VOICE_CREATE_TIMEOUT_S)
        answer = self._http.post("/v1/voices", json=body.model_dump(), timeout=timeout)
        return self._view(VoiceView, answer)

    def voices(self) -> builtins.list[VoiceView]:
        """The caller's library voices (an admin's: all), newest first."""
        answer = self._check(self._http.get("/v1/voices", params={"category": "cloned"})).json()
        return _VOICES.validate_python([v["library"] for v in answer["voices"]])

    def voice(self, voice_id: str) -> VoiceView:
        return self._view(VoiceView, self._http.get(f"/v1/voices/{voice_id}"))

    def delete_voice(self, voice_id: str) -> VoiceView:
        return self._view(VoiceView, self._http.delete(f"/v1/voices/{voice_id}"))

    def approve_voice(self, voice_id: str) -> VoiceView:
        """Admin keys: make a voice pending approval (a language the phrase check lacks) usable."""
        return self._view(VoiceView, self._http.post(f"/v1/voices/{voice_id}/approve"))

    def upload(self, data: bytes, filename: str = "reference.wav") -> UploadView:
        files = {"file": (filename, data, "application/octet-stream")}
        return self._view(UploadView, self._http.post("/v1/uploads", files=files))

    def events(
        self, job_id: str, *, poll_s: float = 0.25, read_timeout_s: float | None = 60.0
    ) -> Iterator[JobView]:
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
                    view = JobView.model_validate_json("\n".join(data))
                    yield view
                    if event == "end" or view.state in TERMINAL_STATES:
                        return
                    event, data = "message", []

    def progress(self, job_id: str, **kwargs: Any) -> Iterator[tuple[str, float]]:
        """``(state, progress 0..1)`` pairs from :meth:`events` until the job ends."""
        for view in self.events(job_id, **kwargs):
            yield view.state, view.progress

    def wait(self, job_id: str, timeout_s: float = 300.0, poll_s: float = 0.25) -> JobView:
        """Poll until the job ends (or ``timeout_s`` passes); returns its last view."""
        return _poll_until_ended(lambda: self.get(job_id), timeout_s, poll_s)

    def generate(self, request: dict[str, Any], timeout_s: float = 300.0) -> tuple[JobView, bytes]:
        """Submit, wait and download: the whole round trip (raises ApiError when the job fails)."""
        job = self.wait(self.submit(request).id, timeout_s=timeout_s)
        if job.state != "succeeded":
            if job.error is not None:
                raise ApiError(409, job.error.code, job.error.message, job.error.field)
            raise ApiError(409, job.state, f"job ended {job.state}")
        return job, self.audio(job.id)

    def close(self) -> None:
        self._http.close()

    def submit_batch(self, data: bytes, filename: str, *, fmt: str | None = None) -> BatchView:
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
        return self._view(BatchView, response)

    def batch(self, batch_id: str) -> BatchView:
        """``GET /v1/batches/{id}``: state, counts per state and every item with its job id."""
        return self._view(BatchView, self._http.get(f"/v1/batches/{batch_id}"))

    def batches(self, limit: int = 50, offset: int = 0) -> builtins.list[BatchSummaryView]:
        """``GET /v1/batches``: the caller's batches, newest first."""
        params = {"limit": limit, "offset": offset}
        return _BATCHES.validate_json(self._check(self._http.get("/v1/batches", params=params)).content)

    def cancel_batch(self, batch_id: str) -> BatchView:
        """``DELETE /v1/batches/{id}``: cancel the batch's unfinished jobs."""
        return self._view(BatchView, self._http.delete(f"/v1/batches/{batch_id}"))

    def batch_archive(self, batch_id: str) -> bytes:
        """``GET /v1/batches/{id}/archive``: a zip of the finished files, manifest.jsonl and summary.json."""
        return self._check(self._http.get(f"/v1/batches/{batch_id}/archive")).content

    def submit_scene(self, scene: dict[str, Any], *, idempotency_key: str | None = None) -> SceneView:
        """``POST /v1/scenes``: queue a scene; the answer has its id and each component's job id.

        Raises:
            ApiError: 422 naming the item (``field`` like ``tracks[1].items[0].start_s``), 429, ...
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._view(SceneView, self._http.post("/v1/scenes", json=scene, headers=headers))

    def scene(self, scene_id: str) -> SceneView:
        """``GET /v1/scenes/{id}``: state, progress, each component's job and state, result, mix levels."""
        return self._view(SceneView, self._http.get(f"/v1/scenes/{scene_id}"))

    def scene_export(self, scene_id: str, fmt: str = "zip") -> bytes:
        """``GET /v1/scenes/{id}/export``: the zip of a scene made with ``export: true`` (the mix, one stem
        per track, captions when it has speech, ``timeline.otio``, ``project.rpp``, ``manifest.json``).

        Raises:
            ApiError: 409 while the scene is not done or when it was made without ``export``; 404.
        """
        return self._check(self._http.get(f"/v1/scenes/{scene_id}/export", params={"format": fmt})).content

    def cancel_scene(self, scene_id: str) -> SceneView:
        """``DELETE /v1/scenes/{id}``: cancel the mix and every unfinished component."""
        return self._view(SceneView, self._http.delete(f"/v1/scenes/{scene_id}"))

    def wait_scene(self, scene_id: str, timeout_s: float = 600.0, poll_s: float = 0.5) -> SceneView:
        """Poll until the scene ends (or ``timeout_s`` passes); returns its last view."""
        return _poll_until_ended(lambda: self.scene(scene_id), timeout_s, poll_s)


Ended = TypeVar("Ended", JobView, SceneView)


def _poll_until_ended(fetch: Callable[[], Ended], timeout_s: float, poll_s: float) -> Ended:
    """``fetch()`` every ``poll_s`` until its ``state`` is terminal or ``timeout_s`` passes; the last view."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = fetch()
        if view.state in TERMINAL_STATES or time.monotonic() > deadline:
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
